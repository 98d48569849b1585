# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A writer of synthetic dattobd COW files, for tests and benchmarks only (never shipped to hosts)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import os
import struct

try:
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cow
except ImportError:  # benchmarks put plugins/module_utils on sys.path
    from _dattobd import cow  # pylint: disable=import-error


def write_cow(path, device_size, blocks, seq_id=1, uuid=None, version=1, flags=cow.FLAG_CLEAN | cow.FLAG_INDEX_ONLY,
              values=None, magic=cow.COW_MAGIC, data_blocks=0, mode=0o600):
    """Write a synthetic COW file with exactly the driver's layout (for tests and benchmarks).

    ``blocks``: iterable of changed block numbers. The entry value is ``1`` (the incremental
    filler) unless ``values`` maps a block to another value. ``uuid``: 16 bytes or 32 hex chars.
    ``data_blocks``: length of a data area appended after the index (a snapshot-mode file).
    Returns the number of distinct changed blocks written.
    """
    if uuid is None:
        uuid = b'\x00' * 16
    elif not isinstance(uuid, bytes):
        uuid = binascii.unhexlify(uuid)
    if len(uuid) != 16:
        raise ValueError('uuid must be 16 bytes')
    nsect = cow.sections_for(device_size)
    nentries = nsect * cow.SECTION_ENTRIES
    doff = cow.HEADER_SIZE + nsect * cow.SECTION_BYTES
    fsize = doff + data_blocks * cow.BLOCK_SIZE
    values = values or {}
    changed = sorted(set(blocks))
    header = cow.HEADER.pack(magic, flags, doff // cow.BLOCK_SIZE + data_blocks, fsize, seq_id, uuid, version,
                             len(changed) if version >= 1 else 0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, header + bytes(cow.HEADER_SIZE - len(header)))
        os.ftruncate(fd, fsize)
        # Group the entries per 4 KiB page of the index so that big sets stay fast.
        pages = {}
        for b in changed:
            if b < 0 or b >= nentries:
                raise ValueError('block %d outside the index (%d entries)' % (b, nentries))
            pages.setdefault(b // 512, []).append(b)
        for page, members in pages.items():
            buf = bytearray(4096)
            for b in members:
                struct.pack_into('<Q', buf, (b % 512) * 8, values.get(b, 1))
            os.pwrite(fd, bytes(buf), cow.HEADER_SIZE + page * 4096)
    finally:
        os.close(fd)
    return len(changed)
