# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Block copy engine: coalesced runs, large aligned I/O, fsync, strict error accounting.

Upstream ``update-img`` issues one 4 KiB ``pread`` + ``pwrite`` pair per changed block and exits
0 even when blocks failed to copy. Here every run of contiguous changed blocks is copied with
reads of up to ``buffer_size`` bytes (default 4 MiB) into one reused page-aligned buffer, the
destination is fsynced, and any read or write error (including a short read inside the device)
is counted and raised as :class:`CopyError` once the copy ends: a copy never "succeeds" with
errors.

Methods (``method=``): ``pread`` (``os.preadv`` into an aligned buffer, ``os.pwrite``; the
default: fastest and correct on block devices in benchmarks/sync.py), ``sendfile`` (in-kernel
copy from a block device to a regular file), ``copy_file_range`` (regular files only; the kernel
refuses block devices). ``auto`` (the default) uses ``pread`` for small pieces and merged
spans and ``sendfile`` for large single pieces (one in-kernel copy instead of two), falling back
to ``pread`` when the kernel refuses ``sendfile`` for the pair of files.

Reads in flight (``read_depth``, readpool.py): with a depth above 1, spans of up to ``POOL_SPAN``
bytes are read by a pool of threads (``os.pread`` releases the GIL), written by the calling thread in
the order of the change list, through the same careful path on any error, with the reads ahead of the
writes bounded; the image is ``fdatasync``ed in another thread as it goes, so its writeback overlaps
the reads. Larger pieces are copied as at depth 1, after every earlier span is written; the readahead
requests are made as at depth 1. With ``adapt`` (the default) the depth is the most the copy uses: it
times the pool against the calling thread alone as it goes and keeps the faster
(``readpool.DepthProbe``). Depth 1 is the single-threaded engine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import mmap
import os
import stat
import time

from . import validation
from .constants import BLOCK_SIZE, blocks_of
from .errors import DattobdError
from .readpool import DepthProbe, ReadPool
from .runs import complement

DEFAULT_BUFFER = 4 << 20
DEFAULT_READAHEAD = 32 << 20
# Pieces up to this size are copied with plain pread/pwrite (no aligned-buffer bookkeeping).
SMALL_PIECE = 64 << 10
# Runs at most this many blocks apart are read with one call (the gap is read, not written).
DEFAULT_MERGE_GAP = 8
DEFAULT_READAHEAD_PIECES = 1024
# Reads kept in flight for scattered spans (threads doing os.pread); 1 is the single-threaded engine.
DEFAULT_READ_DEPTH = 8
MAX_READ_DEPTH = 64
# Spans up to this size go to the read threads; larger pieces keep their large aligned I/O (and
# sendfile), exactly as at depth 1.
POOL_SPAN = SMALL_PIECE
METHODS = ('auto', 'pread', 'sendfile', 'copy_file_range')
# Error blocks listed in the failure details (the count is always exact).
MAX_LISTED_ERRORS = 20


class CopyError(DattobdError):
    """Some blocks could not be copied (the count and the first block numbers are in details)."""


class CopyStats(object):
    """Counters of one copy."""

    __slots__ = ('blocks', 'bytes', 'runs', 'errors', 'error_blocks', 'seconds', 'zero_blocks', 'method',
                 'first_error', 'read_bytes', 'skipped_blocks', 'pooled_spans', 'probes')

    def __init__(self, method):
        self.blocks = 0
        self.bytes = 0
        self.runs = 0
        self.errors = 0
        self.error_blocks = []
        self.seconds = 0.0
        self.zero_blocks = 0
        self.method = method
        self.first_error = None
        self.read_bytes = 0
        self.skipped_blocks = 0
        self.pooled_spans = 0  # scattered spans read by the pool's threads (read_depth > 1)
        self.probes = []  # the adaptive depth's measurements (readpool.DepthProbe.probes)

    @property
    def mb_per_s(self):
        if self.seconds <= 0:
            return None
        return round(self.bytes / 1048576.0 / self.seconds, 2)

    def to_dict(self):
        return {'blocks': self.blocks, 'bytes': self.bytes, 'runs': self.runs, 'errors': self.errors,
                'error_blocks': list(self.error_blocks), 'seconds': round(self.seconds, 3),
                'mb_per_s': self.mb_per_s, 'zero_blocks': self.zero_blocks, 'method': self.method,
                'read_bytes': self.read_bytes, 'skipped_blocks': self.skipped_blocks}

    def _error(self, block, what):
        self.errors += 1
        if len(self.error_blocks) < MAX_LISTED_ERRORS:
            self.error_blocks.append(block)
        if self.first_error is None:
            self.first_error = what


def size_of_fd(fd):
    """Size in bytes of a regular file or block device open as ``fd``."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)


def size_of(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return size_of_fd(fd)
    finally:
        os.close(fd)


def aligned_buffer(size):
    """A page-aligned writable buffer (anonymous mmap) usable for ``O_DIRECT`` too."""
    size = max(BLOCK_SIZE, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
    return mmap.mmap(-1, size)


def _open(path_or_fd, flags):
    if isinstance(path_or_fd, int):
        return path_or_fd, False
    return os.open(path_or_fd, flags), True


def oserror_text(exc):
    if not exc.errno:
        return str(exc)
    return '%s (%s)' % (exc.strerror or os.strerror(exc.errno), errno.errorcode.get(exc.errno, exc.errno))


def check_read_depth(value, name='read_depth'):
    """``value`` (an int, or a string of ASCII digits) as an int in 1..MAX_READ_DEPTH; DattobdError otherwise."""
    return validation.check_int(value, name, 1, MAX_READ_DEPTH)


def _check_method(method):
    if method not in METHODS:
        raise DattobdError('Unknown copy method %r; use one of %s.' % (method, ', '.join(METHODS)))
    return method


class _Copier(object):
    """Copies byte ranges between two fds with one method, falling back to 4 KiB pieces on error."""

    def __init__(self, sfd, dfd, method, buffer_size, stats, src_size):
        self.sfd = sfd
        self.dfd = dfd
        self.method = method
        self.stats = stats
        self.src_size = src_size
        self.buf = aligned_buffer(buffer_size) if method == 'pread' else None
        self.view = memoryview(self.buf) if self.buf is not None else None
        self.buffer_size = buffer_size

    def close(self):
        if self.view is not None:
            self.view.release()
        if self.buf is not None:
            self.buf.close()

    def _pread_range(self, offset, length):
        """Copy [offset, offset+length) once; raises OSError (or EIO-like for short counts)."""
        view = self.view[:length]
        try:
            got = os.preadv(self.sfd, [view], offset)
            if got != length:
                raise OSError(errno.EIO, 'short read: %d of %d bytes at offset %d' % (got, length, offset))
            done = 0
            while done < length:
                n = os.pwrite(self.dfd, view[done:], offset + done)
                if n <= 0:
                    raise OSError(errno.EIO, 'short write at offset %d' % (offset + done))
                done += n
        finally:
            view.release()

    def _sendfile_range(self, offset, length):
        os.lseek(self.dfd, offset, os.SEEK_SET)
        done = 0
        while done < length:
            n = os.sendfile(self.dfd, self.sfd, offset + done, length - done)
            if n <= 0:
                raise OSError(errno.EIO, 'short read: %d of %d bytes at offset %d' % (done, length, offset))
            done += n

    def sendfile_range(self, offset, length):
        """In-kernel copy of one range (raises OSError; the caller falls back to copy_range)."""
        self._sendfile_range(offset, length)

    def _cfr_range(self, offset, length):
        done = 0
        while done < length:
            n = os.copy_file_range(self.sfd, self.dfd, length - done, offset + done, offset + done)
            if n <= 0:
                raise OSError(errno.EIO, 'short read: %d of %d bytes at offset %d' % (done, length, offset))
            done += n

    def copy_span(self, offset, length, members):
        """Read ``[offset, offset+length)`` once, write only the ``members`` pieces."""
        view = self.view[:length]
        try:
            try:
                got = os.preadv(self.sfd, [view], offset)
            except OSError:
                got = -1
            if got != length:
                # Let the careful path find and count the bad blocks, piece by piece.
                for p_off, p_len, dummy in members:
                    self.copy_range(p_off, p_len)
                return
            for p_off, p_len, dummy in members:
                rel = p_off - offset
                write_all(self.dfd, view[rel:rel + p_len], p_off, self.stats)
        finally:
            view.release()

    def copy_range(self, offset, length):
        fn = {'pread': self._pread_range, 'sendfile': self._sendfile_range,
              'copy_file_range': self._cfr_range}[self.method]
        step = self.buffer_size
        pos = offset
        end = offset + length
        while pos < end:
            n = min(step, end - pos)
            try:
                fn(pos, n)
            except OSError as exc:
                if n <= BLOCK_SIZE:
                    self.stats._error(pos // BLOCK_SIZE, 'block %d: %s' % (pos // BLOCK_SIZE, oserror_text(exc)))
                else:
                    # Find the bad blocks precisely; the good ones are still copied.
                    sub = pos
                    while sub < pos + n:
                        m = min(BLOCK_SIZE - sub % BLOCK_SIZE, pos + n - sub)
                        try:
                            fn(sub, m)
                        except OSError as exc2:
                            self.stats._error(sub // BLOCK_SIZE,
                                              'block %d: %s' % (sub // BLOCK_SIZE, oserror_text(exc2)))
                        sub += m
            pos += n


def _finish(dfd, stats, dst_name, fsync, error=None):
    """fsync ``dfd`` (``error``: the OSError of an earlier fdatasync of it, reported the same way)."""
    if fsync or error is not None:
        try:
            if error is not None:
                raise error
            os.fsync(dfd)
        except OSError as exc:
            stats._error(-1, 'fsync: %s' % oserror_text(exc))
            raise CopyError('fsync of %s failed: %s; the written data may not be on disk.'
                            % (dst_name, oserror_text(exc)),
                            hint='Check the destination storage (dmesg) and run the copy again.',
                            **stats.to_dict())


def _raise_if_errors(stats, src_name, dst_name):
    if stats.errors:
        raise CopyError('%d block(s) could not be copied from %s to %s (first: %s); the destination is '
                        'incomplete.' % (stats.errors, src_name, dst_name, stats.first_error),
                        hint=('Check dmesg for I/O errors on both devices. A failed dattobd snapshot returns '
                              'EIO for every read: check /proc/datto-info. Run the copy again once fixed.'),
                        **stats.to_dict())


def _pieces(runs, block_size, src_size, buffer_size):
    """``(offset, length, last_piece_of_run)`` of at most ``buffer_size`` bytes, clipped to the source."""
    for start, n in runs:
        if n <= 0:
            continue
        offset = start * block_size
        if offset >= src_size:
            continue
        end = min(offset + n * block_size, src_size)
        while offset < end:
            length = min(buffer_size, end - offset)
            yield offset, length, offset + length >= end
            offset += length


def _spans(pieces, merge_gap, buffer_size):
    """Group pieces into ``(offset, length, [pieces])`` spans read with one call.

    Pieces separated by at most ``merge_gap`` bytes are read together (the unchanged blocks in
    between are read, never written) as long as the span fits in ``buffer_size``: one large
    read is much cheaper than many 4 KiB ones, for the CPU (syscalls, bios through the
    snapshot driver) and for the device.
    """
    span = None
    for piece in pieces:
        if span is not None:
            end = span[0] + span[1]
            if piece[0] - end <= merge_gap and piece[0] + piece[1] - span[0] <= buffer_size:
                span[2].append(piece)
                span[1] = piece[0] + piece[1] - span[0]
                continue
            yield span
        span = [piece[0], piece[1], [piece]]
    if span is not None:
        yield span


def _readahead(fd, pieces, max_bytes, max_pieces):
    """Yield ``pieces`` after asking the kernel to read them ahead (``POSIX_FADV_WILLNEED``).

    Up to ``max_bytes`` / ``max_pieces`` are requested ahead of the one being copied, so the
    device has many reads in flight while we copy: scattered 4 KiB blocks go 2-3x faster than
    one synchronous read at a time, and big runs overlap reading with writing.
    """
    if not max_bytes or not hasattr(os, 'posix_fadvise'):
        yield from pieces
        return
    window = collections.deque()
    ahead_bytes = 0
    exhausted = False
    while True:
        while not exhausted and (not window or (ahead_bytes < max_bytes and len(window) < max_pieces)):
            try:
                piece = next(pieces)
            except StopIteration:
                exhausted = True
                break
            try:
                os.posix_fadvise(fd, piece[0], piece[1], os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            window.append(piece)
            ahead_bytes += piece[1]
        if not window:
            return
        piece = window.popleft()
        ahead_bytes -= piece[1]
        yield piece


def copy_runs(src, dst, runs, block_size=BLOCK_SIZE, buffer_size=DEFAULT_BUFFER, method='auto',
              fsync=True, progress=None, src_size=None, readahead=DEFAULT_READAHEAD,
              readahead_pieces=DEFAULT_READAHEAD_PIECES, merge_gap=DEFAULT_MERGE_GAP,
              read_depth=DEFAULT_READ_DEPTH, adapt=True):
    """Copy each ``(start_block, n_blocks)`` run from ``src`` to the same offsets of ``dst``.

    Parameters: the tuning knobs of the engine (benchmarks/sync.py measures each); sync and backup set few.
    Long: the hot loop keeps its locals (pread, pwrite, the copier, the pool) in one frame.

    ``src``/``dst``: paths or open fds. Runs past the end of ``src`` are clipped (a trailing
    partial block is copied short, as upstream does). ``readahead`` bytes (in at most
    ``readahead_pieces`` pieces) are requested from the kernel ahead of the copy (0 disables it).
    Runs separated by at most ``merge_gap`` blocks are read with one call (``pread`` method;
    only the changed blocks are written). ``read_depth`` (1..64; ``pread`` and ``auto``) spans of
    up to ``POOL_SPAN`` bytes are read at once by threads, written in order by the caller; 1 reads
    one at a time. ``adapt``: the threads read only while they are measured faster than the
    calling thread alone (``readpool.DepthProbe``); False keeps them reading. Returns
    :class:`CopyStats`; raises :class:`CopyError` after the copy when any block failed (and when
    fsync fails). ``progress(stats)`` is called after each run.
    """
    method = _check_method(method)
    read_depth = check_read_depth(read_depth)
    if buffer_size < block_size or buffer_size % block_size:
        raise DattobdError('buffer_size must be a positive multiple of %d.' % block_size)
    stats = CopyStats(method)
    # auto: pread/pwrite for small pieces and merged spans, sendfile (one in-kernel copy instead
    # of two) for large single pieces while the kernel accepts it; pread is the careful path.
    use_sendfile = method == 'auto'
    if method == 'auto':
        method = 'pread'
    sfd, close_s = _open(src, os.O_RDONLY)
    try:
        dfd, close_d = _open(dst, os.O_WRONLY)
    except OSError:
        if close_s:
            os.close(sfd)
        raise
    src_name = src if not isinstance(src, int) else 'fd %d' % src
    dst_name = dst if not isinstance(dst, int) else 'fd %d' % dst
    started = time.monotonic()
    copier = pool = probe = None
    try:
        if src_size is None:
            src_size = size_of_fd(sfd)
        copier = _Copier(sfd, dfd, method, buffer_size, stats, src_size)
        try:
            os.posix_fadvise(sfd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (OSError, AttributeError):
            pass
        fast = method == 'pread'
        pread, pwrite = os.pread, os.pwrite

        def done(length, members):
            stats.read_bytes += length
            for p_off, p_len, last in members:
                stats.blocks += (p_len + block_size - 1) // block_size
                stats.bytes += p_len
                if last:
                    stats.runs += 1
                    if progress is not None:
                        progress(stats)

        if fast and read_depth > 1:
            pool = ReadPool(sfd, dfd, read_depth, copier, done, fsync)
            probe = DepthProbe() if adapt else None
        pieces = _pieces(runs, block_size, src_size, buffer_size)
        gap = merge_gap * block_size if fast and merge_gap > 0 else -1
        for offset, length, members in _readahead(sfd, _spans(pieces, gap, buffer_size), readahead,
                                                  readahead_pieces):
            if pool is not None:
                if length <= POOL_SPAN and (probe is None or probe.pooled):
                    pool.add(offset, length, members)
                    stats.pooled_spans += 1
                    if probe is not None:
                        probe.counted(pool)
                    continue
                pool.drain()  # every earlier span is written before this piece
            if len(members) > 1:
                copier.copy_span(offset, length, members)
            elif use_sendfile and length > SMALL_PIECE:
                try:
                    copier.sendfile_range(offset, length)
                except OSError as exc:
                    if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        use_sendfile = False  # not supported for these files: pread from now on
                    copier.copy_range(offset, length)
            elif fast and length <= SMALL_PIECE:
                # Scattered blocks: one pread + one pwrite, no buffer bookkeeping. Any
                # error or short count is redone by the careful path, which accounts for it.
                try:
                    data = pread(sfd, length, offset)
                    ok = len(data) == length and pwrite(dfd, data, offset) == length
                except OSError:
                    ok = False
                if not ok:
                    copier.copy_range(offset, length)
            else:
                copier.copy_range(offset, length)
            done(length, members)
            if probe is not None and length <= POOL_SPAN:
                probe.counted(pool)
        flush_error = None
        if pool is not None:
            pool.drain()
            pool._flushed()
            flush_error = pool.flush_error
        _finish(dfd, stats, dst_name, fsync, flush_error)
    finally:
        stats.seconds = time.monotonic() - started
        if probe is not None:
            stats.probes = list(probe.probes)
        if pool is not None:
            pool.close()  # joins the threads before their file descriptors are closed
        if copier is not None:
            copier.close()
        if close_s:
            os.close(sfd)
        if close_d:
            os.close(dfd)
    _raise_if_errors(stats, src_name, dst_name)
    return stats


def _full_pieces(wanted, size, buffer_size):
    """Byte ``(offset, length)`` pieces of at most ``buffer_size`` covering the block runs ``wanted``."""
    for start, n in wanted:
        pos, end = start * BLOCK_SIZE, min((start + n) * BLOCK_SIZE, size)
        while pos < end:
            length = min(buffer_size, end - pos)
            yield pos, length
            pos += length


def full_copy(src, dst, sparse=True, buffer_size=DEFAULT_BUFFER, fsync=True, progress=None, mode=0o600,
              skip_runs=None):
    """Copy the whole of ``src`` into ``dst`` (created with ``mode`` when missing).

    Parameters: as copy_runs, for a whole device (the backup cycle's full copy). Long: one loop over the pieces,
    with the read-error salvage beside it, and the buffer's lifetime around both.

    A regular-file ``dst`` is truncated to the source size first; with ``sparse=True`` all-zero
    4 KiB blocks are not written, so they stay holes (``stats.zero_blocks`` counts them), and the
    blocks of ``skip_runs`` (ordered ``(start, n)``: those the filesystem reports unallocated,
    fsmap.py) are neither read nor written (``stats.skipped_blocks``). A block-device ``dst`` is
    written in full (holes are impossible there; ``skip_runs`` is ignored). Returns
    :class:`CopyStats`; raises :class:`CopyError` on any read or write error.
    """
    if buffer_size < BLOCK_SIZE or buffer_size % BLOCK_SIZE:
        raise DattobdError('buffer_size must be a positive multiple of %d.' % BLOCK_SIZE)
    stats = CopyStats('pread')
    sfd = os.open(src, os.O_RDONLY)
    started = time.monotonic()
    buf = view = None
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT, mode)
    except OSError:
        os.close(sfd)
        raise
    try:
        size = size_of_fd(sfd)
        sparse = _prepare_destination(dfd, size, src, dst) and sparse
        try:
            os.posix_fadvise(sfd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (OSError, AttributeError):
            pass
        buf = aligned_buffer(buffer_size)
        view = memoryview(buf)
        zero = bytes(BLOCK_SIZE)
        nblocks = blocks_of(size)
        wanted = list(complement(skip_runs, nblocks)) if sparse and skip_runs else [(0, nblocks)]
        stats.skipped_blocks = nblocks - sum(n for dummy, n in wanted)
        for pos, n in _full_pieces(wanted, size, buffer_size):
            chunk = view[:n]
            try:
                got = os.preadv(sfd, [chunk], pos)
                if got != n:
                    raise OSError(errno.EIO, 'short read: %d of %d bytes at offset %d' % (got, n, pos))
            except OSError:
                chunk.release()
                # Retry block by block to count the bad ones; copy the good ones.
                copier = _Copier(sfd, dfd, 'pread', BLOCK_SIZE, stats, size)
                try:
                    copier.copy_range(pos, n)
                finally:
                    copier.close()
                stats.blocks += blocks_of(n)
                stats.bytes += n
                continue
            try:
                if not sparse:
                    write_all(dfd, chunk, pos, stats)
                    stats.bytes += n
                else:
                    _write_sparse(dfd, chunk, pos, stats, zero)
            finally:
                chunk.release()
            stats.blocks += blocks_of(n)
            stats.read_bytes += n
            if progress is not None:
                progress(stats)
        stats.runs = 1
        _finish(dfd, stats, dst, fsync)
    finally:
        stats.seconds = time.monotonic() - started
        if view is not None:
            view.release()
        if buf is not None:
            buf.close()
        os.close(sfd)
        os.close(dfd)
    _raise_if_errors(stats, src, dst)
    return stats


def _prepare_destination(dfd, size, src, dst):
    """A regular file is cut to ``size`` (True: it may hold holes); a block device must be large enough (False)."""
    if stat.S_ISREG(os.fstat(dfd).st_mode):
        os.ftruncate(dfd, 0)
        os.ftruncate(dfd, size)
        return True
    if size_of_fd(dfd) < size:
        raise CopyError('Destination %s (%d bytes) is smaller than %s (%d bytes).' % (dst, size_of_fd(dfd), src, size))
    return False


def _write_sparse(dfd, chunk, pos, stats, zero):
    """Write the maximal non-zero stretches of 4 KiB blocks of ``chunk`` (at ``pos``); zero blocks stay holes."""
    n = len(chunk)
    off = 0
    while off < n:
        b_end = min(off + BLOCK_SIZE, n)
        if chunk[off:b_end] == zero[:b_end - off]:
            stats.zero_blocks += 1
            off = b_end
            continue
        w_end = b_end
        while w_end < n and chunk[w_end:min(w_end + BLOCK_SIZE, n)] != zero[:min(BLOCK_SIZE, n - w_end)]:
            w_end = min(w_end + BLOCK_SIZE, n)
        write_all(dfd, chunk[off:w_end], pos + off, stats)
        stats.bytes += w_end - off
        off = w_end


def write_all(fd, data, offset, stats):
    """``os.pwrite`` all of ``data`` at ``offset``; an error or a short write is counted in ``stats``, not raised."""
    done = 0
    total = len(data)
    while done < total:
        try:
            n = os.pwrite(fd, data[done:], offset + done)
        except OSError as exc:
            stats._error((offset + done) // BLOCK_SIZE, 'write at %d: %s' % (offset + done, oserror_text(exc)))
            return
        if n <= 0:
            stats._error((offset + done) // BLOCK_SIZE, 'short write at %d' % (offset + done))
            return
        done += n
