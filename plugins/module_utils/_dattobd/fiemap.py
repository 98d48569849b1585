# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a file lives on its block device (FS_IOC_FIEMAP); masks are built from it with ``runs.py``.

Used to tell apart, when an image is verified against ``/dev/datto<N>``, the blocks of the
snapshot's own live COW file: dattobd does not copy-on-write its own COW file writes, so the
snapshot device shows those blocks as they are *now*, and they legitimately differ from the image.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os
import struct

from . import runs

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2
FIEMAP_EXTENT_DATA_INLINE = 0x200
_MAX_OFFSET = 0xFFFFFFFFFFFFFFFF
_HEADER = struct.Struct('=QQIIII')       # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, reserved
_EXTENT = struct.Struct('=QQQQQIIII')    # fe_logical, fe_physical, fe_length, reserved64[2], fe_flags, reserved[3]


def extents(path, batch=256, ioctl=None, logical_end=None):
    """Return ``[(physical_byte_offset, length)]`` of the file's extents on its device.

    With ``logical_end``, only the part of the file before that byte offset.

    Raises OSError when the file cannot be opened or the filesystem does not support FIEMAP, and
    ValueError for an extent whose physical location is unknown or inline (never for ext4/XFS
    after the FIEMAP_FLAG_SYNC flush).
    """
    ioctl = ioctl or fcntl.ioctl
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        start = 0
        while True:
            buf = bytearray(_HEADER.size + batch * _EXTENT.size)
            _HEADER.pack_into(buf, 0, start, _MAX_OFFSET - start, FIEMAP_FLAG_SYNC, 0, batch, 0)
            ioctl(fd, FS_IOC_FIEMAP, buf, True)
            mapped = _HEADER.unpack_from(buf, 0)[3]
            if mapped == 0:
                return out
            last = False
            for i in range(mapped):
                logical, physical, length, dummy1, dummy2, flags, dummy3, dummy4, dummy5 = _EXTENT.unpack_from(
                    buf, _HEADER.size + i * _EXTENT.size)
                if flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DATA_INLINE):
                    raise ValueError('%s has an extent without a known location on the device (flags 0x%x).'
                                     % (path, flags))
                if logical_end is not None:
                    if logical >= logical_end:
                        return out
                    length = min(length, logical_end - logical)
                out.append((physical, length))
                start = logical + length
                last = last or bool(flags & FIEMAP_EXTENT_LAST)
            if last:
                return out
    finally:
        os.close(fd)


def file_ranges(path):
    """Block ranges ``[(first, end_exclusive)]`` of the device blocks holding file ``path``."""
    return runs.block_ranges(extents(path))
