# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Re-baseline by comparison: make an existing image equal to a snapshot, writing only what differs.

A re-baseline (a full backup: backup_plan.py says why, and :func:`backup_plan.rebaseline_method`
whether a good earlier image allows a comparison) would rewrite the whole image. Here the snapshot
and the image are read side by side in equal pieces of ``buffer_size`` bytes, every ``BLOCK_SIZE``
block of the snapshot is compared with the image's, and only the blocks that differ are written,
in order (adjacent ones with one ``pwrite``), then the image is fsynced. The blocks the image
shares with restore points through reflink stay shared, and a network-mounted destination
receives only the difference.

Reads in flight (``read_depth``, copy.py's option): above 1, the pieces of both files are read by
``read_depth`` threads (``os.pread`` releases the GIL), at most ``readpool.INFLIGHT_BYTES`` ahead
of the comparison; 1 reads in the calling thread. Errors are copy.py's: a snapshot block that
cannot be read is counted, never written, and the copy raises :class:`copy.CopyError` once it
ends (the image is then partial: the caller journals it); an image block that cannot be read is
written from the snapshot. ``skip_runs`` (blocks the snapshot's filesystem reports unallocated,
fsmap.py) are neither read nor written: the image keeps what it had there, as a full copy keeps
holes there, and verification masks them the same way. An all-zero snapshot block where the image
holds data is written as zeros (not punched), so the image equals the snapshot block for block.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor

from .constants import BLOCK_SIZE, blocks_of
from .copy import (DEFAULT_BUFFER, DEFAULT_READ_DEPTH, CopyError, CopyStats, _finish, _full_pieces,
                   _raise_if_errors, check_read_depth, oserror_text, size_of_fd, write_all)
from .errors import DattobdError
from .readpool import INFLIGHT_BYTES
from .runs import complement

METHOD = 'compare'


class CompareStats(CopyStats):
    """Counters of one comparing copy: ``blocks`` compared (read), ``differing_blocks``, ``bytes`` written."""

    __slots__ = ('differing_blocks',)

    def __init__(self):
        CopyStats.__init__(self, METHOD)
        self.differing_blocks = 0

    def to_dict(self):
        out = CopyStats.to_dict(self)
        out.update(blocks_read=self.blocks, blocks_differing=self.differing_blocks, bytes_written=self.bytes)
        return out


def _read(fd, pos, n):
    """The ``n`` bytes of ``fd`` at ``pos``, or the OSError of the read (a short read is EIO)."""
    try:
        data = os.pread(fd, n, pos)
    except OSError as exc:
        return exc
    if len(data) != n:
        return OSError(errno.EIO, 'short read: %d of %d bytes at offset %d' % (len(data), n, pos))
    return data


def _pairs(sfd, dfd, pieces, depth, ahead):
    """``(pos, n, snapshot bytes or OSError, image bytes or OSError)`` of each piece, in order.

    ``depth`` 1 reads in the calling thread; above, ``depth`` threads read both files, ``ahead``
    pieces in flight. Closing the generator cancels what was not started and joins the threads.
    """
    if depth <= 1:
        for pos, n in pieces:
            yield pos, n, _read(sfd, pos, n), _read(dfd, pos, n)
        return
    window = collections.deque()
    pool = ThreadPoolExecutor(max_workers=depth)
    try:
        for pos, n in pieces:
            window.append((pos, n, pool.submit(_read, sfd, pos, n), pool.submit(_read, dfd, pos, n)))
            while len(window) > ahead:
                pos0, n0, new, old = window.popleft()
                yield pos0, n0, new.result(), old.result()
        while window:
            pos0, n0, new, old = window.popleft()
            yield pos0, n0, new.result(), old.result()
    finally:
        for dummy, dummy2, new, old in window:
            new.cancel()
            old.cancel()
        pool.shutdown(wait=True)


def _blocks(fd, pos, n, data):
    """The blocks of a piece: slices of ``data``, or (``data`` an OSError) each read again on its own."""
    out = []
    for off in range(0, n, BLOCK_SIZE):
        length = min(BLOCK_SIZE, n - off)
        out.append(data[off:off + length] if isinstance(data, bytes) else _read(fd, pos + off, length))
    return out


def _compare_piece(sfd, dfd, pos, n, data, old, stats):
    """Write the blocks of one piece that differ from the image (adjacent ones at once), counting them."""
    stats.blocks += blocks_of(n)
    if isinstance(data, bytes) and isinstance(old, bytes) and data == old:
        stats.read_bytes += n
        return
    new = _blocks(sfd, pos, n, data)
    have = _blocks(dfd, pos, n, old)
    run, run_at = [], None
    for i, block in enumerate(new):
        at = pos + i * BLOCK_SIZE
        if isinstance(block, OSError):
            stats._error(at // BLOCK_SIZE, 'block %d: %s' % (at // BLOCK_SIZE, oserror_text(block)))
        else:
            stats.read_bytes += len(block)
            if isinstance(have[i], OSError) or have[i] != block:
                stats.differing_blocks += 1
                run_at = at if not run else run_at
                run.append(block)
                continue
        _flush(dfd, run, run_at, stats)
        run = []
    _flush(dfd, run, run_at, stats)


def _flush(dfd, run, at, stats):
    if run:
        data = b''.join(run)
        write_all(dfd, data, at, stats)
        stats.bytes += len(data)


def compare_copy(src, dst, skip_runs=None, buffer_size=DEFAULT_BUFFER, fsync=True, progress=None,
                 read_depth=DEFAULT_READ_DEPTH):
    """Make the existing image ``dst`` equal to ``src`` by writing only the blocks that differ.

    ``skip_runs``: ordered ``(start, n)`` block runs neither read nor written (unallocated);
    ``progress(stats)`` after each piece; ``read_depth`` as copy.py's. The image must have the
    size of ``src`` (else :class:`CopyError`, nothing written: a full copy is needed). Returns
    :class:`CompareStats`; raises :class:`CopyError` after the comparison when any block could
    not be read from ``src`` or written (and when the fsync fails).
    """
    read_depth = check_read_depth(read_depth)
    if buffer_size < BLOCK_SIZE or buffer_size % BLOCK_SIZE:
        raise DattobdError('buffer_size must be a positive multiple of %d.' % BLOCK_SIZE)
    stats = CompareStats()
    sfd = os.open(src, os.O_RDONLY)
    try:
        dfd = os.open(dst, os.O_RDWR)
    except OSError:
        os.close(sfd)
        raise
    started = time.monotonic()
    pairs = None
    try:
        size, have = size_of_fd(sfd), size_of_fd(dfd)
        if size != have:
            raise CopyError('The image %s is %d bytes but %s is %d bytes: only an image of the same size can be '
                            'compared; nothing was written.' % (dst, have, src, size),
                            hint='Take a full copy (rebaseline: full).', **stats.to_dict())
        for fd in (sfd, dfd):
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except (OSError, AttributeError):
                pass
        nblocks = blocks_of(size)
        wanted = list(complement(skip_runs, nblocks)) if skip_runs else [(0, nblocks)]
        stats.skipped_blocks = nblocks - sum(n for dummy, n in wanted)
        ahead = max(1, min(read_depth, INFLIGHT_BYTES // (2 * buffer_size)))
        pairs = _pairs(sfd, dfd, _full_pieces(wanted, size, buffer_size), read_depth, ahead)
        for pos, n, data, old in pairs:
            _compare_piece(sfd, dfd, pos, n, data, old, stats)
            if progress is not None:
                progress(stats)
        stats.runs = 1
        _finish(dfd, stats, dst, fsync)
    finally:
        if pairs is not None:
            pairs.close()  # joins the read threads before their file descriptors are closed
        stats.seconds = time.monotonic() - started
        os.close(sfd)
        os.close(dfd)
    _raise_if_errors(stats, src, dst)
    return stats
