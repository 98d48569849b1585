# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reader (and synthetic writer) of dattobd COW files.

Layout (dattobd 0.9.5 .. 0.12.1, little-endian on the x86_64 packages)::

    offset 0            header: <IIQQQ16sQQ (64 bytes), zero padding to 4096
    offset 4096         index: total_sects * 4096 entries of uint64
    offset data_offset  data area (snapshot mode only)

``nblocks = device_bytes // 4096`` (sectors // 8), ``total_sects = ceil(nblocks / 4096)``,
``data_offset = 4096 + total_sects * 32768``. Index entry ``i`` describes device block ``i``;
any non-zero value means "block changed since the snapshot with this file's seq_id". Version-0
files (written by drivers before 0.10.7) have zeros where ``version`` and
``nr_changed_blocks`` sit, and the driver does not maintain the count for them.

Integrity: the header is checked when a file is opened (magic, known flag bits, version, zero
padding, ``fpos`` and ``fsize`` consistent with the index, a version-0 file without a count), the
index while it is streamed (for a clean file): every entry is ``0``, the incremental filler ``1`` or
a data-area block number in ``[data_offset / 4096, fpos)`` used by one entry only, no entry is set
past the device's last block, and (version 1) the number of set entries equals the header's
``nr_changed_blocks`` (entries that went from 0 to non-zero). A file failing any of these is
damaged: :class:`CowError` with ``cow_damaged=True``, and the hint that the incremental chain is
broken (the next backup must be a full one).

:meth:`CowFile.runs` streams the index in chunks and yields coalesced runs of changed blocks,
so a multi-TiB device (whose index is several GiB) never sits in memory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import hashlib
import itertools
import os
import struct

from .constants import BLOCK_SIZE
from .errors import DattobdError

COW_MAGIC = 4776
HEADER = struct.Struct('<IIQQQ16sQQ')
HEADER_SIZE = 4096
SECTION_ENTRIES = 4096
ENTRY_SIZE = 8
SECTION_BYTES = SECTION_ENTRIES * ENTRY_SIZE

FLAG_CLEAN = 1
FLAG_INDEX_ONLY = 2
FLAG_VMALLOC_UPPER = 4
KNOWN_FLAGS = FLAG_CLEAN | FLAG_INDEX_ONLY | FLAG_VMALLOC_UPPER
# The incremental filler value of an index entry (a data-area block number is always larger).
FILLER = 1
# Above this many data-area blocks the check that no two entries share one is skipped (bitmap memory).
MAX_SLOT_BITMAP = 1 << 31

DAMAGED_HINT = ('A damaged COW file cannot say which blocks changed: the incremental chain is broken, and the next '
                'cycle must take a full backup (re-baseline: snapfleet.dattobd.backup with full=true). Only an '
                'intact copy of this very file could still be synced.')

# Index bytes read per system call while streaming (1 MiB = 131072 entries).
DEFAULT_CHUNK_BYTES = 1 << 20
_ZERO_PAGE = bytes(4096)
MEMO_MAX_RUNS = 1 << 17     # runs kept in memory across the files read (about 15 MB at most)
_RUNS_MEMO = None           # inside remembered_runs(): (file identity, limit, max_run, clean) -> (runs, ignored)


class remembered_runs(object):  # pylint: disable=invalid-name
    """``with cow.remembered_runs():`` the index of each COW file read to its end is parsed once.

    For a scope in which the COW files read do not change (a backup cycle reads the files of
    earlier snapshots, which the driver no longer writes): its copy, space check, verification and
    sample then share one parse per file. Outside such a scope every call reads the file again.
    """

    def __enter__(self):
        global _RUNS_MEMO  # pylint: disable=global-statement
        self.outer = _RUNS_MEMO
        if _RUNS_MEMO is None:
            _RUNS_MEMO = {}
        return self

    def __exit__(self, *exc):
        global _RUNS_MEMO  # pylint: disable=global-statement
        _RUNS_MEMO = self.outer
        return False


class CowError(DattobdError):
    """A COW file that cannot be used for a sync."""


def device_blocks(device_bytes):
    """Number of indexed 4 KiB blocks of a device of ``device_bytes`` (the driver's ``nblocks``)."""
    return device_bytes // BLOCK_SIZE


def sections_for(device_bytes):
    """Index sections (4096 entries each) the driver allocates for a device of that size."""
    nblocks = device_blocks(device_bytes)
    return (nblocks + SECTION_ENTRIES - 1) // SECTION_ENTRIES


def data_offset_for(device_bytes):
    return HEADER_SIZE + sections_for(device_bytes) * SECTION_BYTES


def flags_text(flags):
    names = []
    for bit, name in ((FLAG_CLEAN, 'clean'), (FLAG_INDEX_ONLY, 'index-only'),
                      (FLAG_VMALLOC_UPPER, 'vmalloc-upper')):
        if flags & bit:
            names.append(name)
    return ','.join(names) or 'none'


class CowFile(object):
    """Header and index of one COW file.

    ``device_size`` (bytes of the traced device / snapshot device) is needed to size the index of
    a file that still holds a data area (not index-only); for an index-only file it is taken from
    the file size and, when ``device_size`` is given too, both must agree.

    Raises :class:`CowError` for a file that cannot be read, has a bad magic, was not closed
    cleanly (unless ``require_clean=False``), has a truncated index or an index larger than the
    device.
    """

    def __init__(self, path, device_size=None, require_clean=True):
        self.path = path
        try:
            with open(path, 'rb') as f:
                st = os.fstat(f.fileno())
                raw = f.read(HEADER_SIZE)
        except (IOError, OSError) as exc:
            hint = None
            if exc.errno == errno.ENOENT:
                hint = ('After "dbdctl transition-to-snapshot <new cow> <minor>" the PREVIOUS COW file is '
                        'the one to sync from; check the path (it is the file the tracker used before).')
            elif exc.errno in (errno.EACCES, errno.EPERM):
                hint = 'Run as root (the driver creates COW files with mode 0000).'
            raise CowError('Cannot read COW file %s: %s.' % (path, os.strerror(exc.errno) if exc.errno else exc),
                           hint=hint, path=path)
        self.file_size = st.st_size
        if len(raw) < HEADER.size:
            raise CowError('COW file %s is too short (%d bytes) to hold a dattobd header.' % (path, len(raw)),
                           hint='It is not a dattobd COW file, or it was truncated. ' + DAMAGED_HINT, path=path,
                           cow_damaged=True)
        (self.magic, self.flags, self.fpos, self.fsize, self.seq_id, uuid_raw,
         self.version, self.nr_changed_blocks) = HEADER.unpack(raw[:HEADER.size])
        self.uuid = binascii.hexlify(uuid_raw).decode('ascii')
        if self.magic != COW_MAGIC:
            raise CowError('%s is not a dattobd COW file: bad magic %d (expected %d).' % (path, self.magic, COW_MAGIC),
                           hint=('Pass the previous COW file of the tracker (cow_file). If it is that file, it is '
                                 'damaged. ' + DAMAGED_HINT), path=path, magic=self.magic, cow_damaged=True)
        if self.version not in (0, 1):
            self.damaged('has unknown format version %d (this collection reads 0 and 1)' % self.version,
                         version=self.version)
        if self.flags & ~KNOWN_FLAGS:
            self.damaged('has unknown flag bits 0x%x set (flags 0x%x; dattobd defines clean 0x1, index-only 0x2 '
                         'and vmalloc-upper 0x4)' % (self.flags & ~KNOWN_FLAGS, self.flags), flags=self.flags)
        if len(raw) < HEADER_SIZE or raw[HEADER.size:].count(0) != HEADER_SIZE - HEADER.size:
            self.damaged('has non-zero bytes in its header padding (bytes %d..%d are always zero)'
                         % (HEADER.size, HEADER_SIZE - 1))
        if self.version == 0 and self.nr_changed_blocks:
            # Drivers before 0.10.7 leave both fields zero; a count without a version is a damaged field.
            self.damaged('says format version 0 but holds a changed-block count (%d); version-0 files have none'
                         % self.nr_changed_blocks, nr_changed_blocks=self.nr_changed_blocks)
        if require_clean and not self.clean:
            raise CowError('COW file %s was not closed cleanly (flags %s): its on-disk index may be stale.'
                           % (path, flags_text(self.flags)),
                           hint=('Only the previous COW file after "transition-to-snapshot", or a COW file of an '
                                 'unmounted volume, is consistent. A file left dirty by a crash cannot be trusted: '
                                 'take a new full backup.'), path=path, flags=self.flags, cow_damaged=True)
        self.index_sections = self._index_sections(device_size)
        self.entries = self.index_sections * SECTION_ENTRIES
        self.index_bytes = self.index_sections * SECTION_BYTES
        self.data_offset = HEADER_SIZE + self.index_bytes
        self.device_size = device_size
        self.nblocks = device_blocks(device_size) if device_size is not None else self.entries
        self._check_positions()

    def damaged(self, what, **details):
        """Raise the :class:`CowError` of a file the format shows to be damaged (``what`` it does wrong)."""
        raise CowError('COW file %s is damaged: it %s.' % (self.path, what), hint=DAMAGED_HINT, path=self.path,
                       cow_damaged=True, **details)

    def _check_positions(self):
        """``fsize`` and ``fpos`` agree with the index: the driver never writes them otherwise."""
        if self.fsize < self.data_offset:
            self.damaged('records a file size (fsize) of %d bytes, smaller than its own header and index (%d bytes)'
                         % (self.fsize, self.data_offset), fsize=self.fsize)
        # fpos: the next free data-area block. It starts at the first block after the index and
        # grows by one per block copied in snapshot mode, at most once per device block.
        lo = self.data_offset // BLOCK_SIZE
        if not lo <= self.fpos <= lo + self.nblocks:
            self.damaged('records its next data block (fpos) as %d, outside %d..%d (the data area starts after the '
                         'index and holds at most one copy of each of the %d device blocks)'
                         % (self.fpos, lo, lo + self.nblocks, self.nblocks), fpos=self.fpos)

    # --- header facts --------------------------------------------------------------------
    @property
    def clean(self):
        return bool(self.flags & FLAG_CLEAN)

    @property
    def index_only(self):
        return bool(self.flags & FLAG_INDEX_ONLY)

    def _index_sections(self, device_size):
        avail = self.file_size - HEADER_SIZE
        if device_size is None:
            if not self.index_only:
                raise CowError('COW file %s holds a data area; the device size is needed to find its index.'
                               % self.path, path=self.path)
            if avail <= 0 or avail % SECTION_BYTES:
                raise CowError('COW file %s has a truncated index: %d bytes after the header is not a whole '
                               'number of %d-byte sections.' % (self.path, max(avail, 0), SECTION_BYTES),
                               hint='The file was cut short (copy interrupted, disk full?). ' + DAMAGED_HINT,
                               path=self.path, cow_damaged=True)
            return avail // SECTION_BYTES
        if device_size < 0:
            raise CowError('Invalid device size %d.' % device_size)
        wanted = sections_for(device_size)
        need = HEADER_SIZE + wanted * SECTION_BYTES
        if self.file_size < need:
            raise CowError('COW file %s has a truncated index: %d bytes, but a %d-byte device needs %d '
                           '(header + %d index sections).' % (self.path, self.file_size, device_size, need, wanted),
                           hint=('It was cut short, or it belongs to a larger device? Check the COW file and '
                                 'the snapshot. If it is the right file: ' + DAMAGED_HINT),
                           path=self.path, file_size=self.file_size, needed=need, cow_damaged=True)
        if self.index_only and self.file_size > need:
            have = (self.file_size - HEADER_SIZE) // SECTION_BYTES
            raise CowError('COW file %s has an index larger than the device: %d sections for %d blocks (%d bytes) '
                           'where the device needs %d.' % (self.path, have, device_blocks(device_size),
                                                           device_size, wanted),
                           hint=('This COW file was written for another (larger) device, or it was extended; '
                                 'pass the COW file of this tracker. If it is that file: ' + DAMAGED_HINT),
                           path=self.path, file_size=self.file_size, needed=need, cow_damaged=True)
        return wanted

    def to_dict(self):
        return {
            'path': self.path,
            'magic': self.magic,
            'flags': self.flags,
            'flags_text': flags_text(self.flags),
            'clean': self.clean,
            'index_only': self.index_only,
            'fpos': self.fpos,
            'fsize': self.fsize,
            'seq_id': self.seq_id,
            'uuid': self.uuid,
            'version': self.version,
            'nr_changed_blocks': self.nr_changed_blocks if self.version >= 1 else None,
            'index_sections': self.index_sections,
            'file_size': self.file_size,
        }

    # --- index ---------------------------------------------------------------------------
    def iter_index_chunks(self, chunk_bytes=DEFAULT_CHUNK_BYTES):
        """Yield ``(first_entry, bytes)`` chunks of the index, reading from offset 4096."""
        chunk_bytes = max(ENTRY_SIZE, chunk_bytes - chunk_bytes % ENTRY_SIZE)
        with open(self.path, 'rb') as f:
            fd = f.fileno()
            pos = 0
            while pos < self.index_bytes:
                want = min(chunk_bytes, self.index_bytes - pos)
                data = os.pread(fd, want, HEADER_SIZE + pos)
                if len(data) != want:
                    raise CowError('COW file %s: short read of the index at byte %d (got %d of %d bytes); '
                                   'was it truncated while reading?' % (self.path, HEADER_SIZE + pos, len(data), want),
                                   path=self.path)
                yield pos // ENTRY_SIZE, data
                pos += want

    def changed_blocks(self, limit=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
        """Yield the block numbers with a non-zero index entry (below ``limit`` when given)."""
        for start, n in self.runs(limit=limit, chunk_bytes=chunk_bytes):
            yield from range(start, start + n)

    def runs(self, limit=None, chunk_bytes=DEFAULT_CHUNK_BYTES, max_run=None):
        """Yield coalesced ``(start_block, n_blocks)`` runs of changed blocks, in order.

        ``limit``: ignore blocks >= limit (by default the device's block count when known, else
        every entry). Non-zero entries at or past the limit are counted in
        :attr:`ignored_blocks`. ``max_run`` splits runs longer than that many blocks.

        The index of a clean file is checked as it streams (see the module docstring): a damaged
        entry raises :class:`CowError` where it is met, a count that differs from the header's
        ``nr_changed_blocks`` after the last entry. Read the whole index once (:meth:`summary`)
        before acting on any run.

        Inside :class:`remembered_runs`, a file read to its end is remembered (:data:`MEMO_MAX_RUNS`
        runs at most, keyed by its device, inode, size, mtime and ctime) and not parsed again.
        """
        if _RUNS_MEMO is None:
            return self._runs(self.iter_index_chunks(chunk_bytes), limit, max_run)
        key = self._memo_key(limit, max_run)
        hit = _RUNS_MEMO.get(key) if key is not None else None
        if hit is not None:
            self.ignored_blocks = hit[1]
            return iter(hit[0])
        return self._remembered(key, self._runs(self.iter_index_chunks(chunk_bytes), limit, max_run))

    def _memo_key(self, limit, max_run):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (self.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                self.nblocks if limit is None else limit, max_run, self.clean)

    def _remembered(self, key, runs):
        """Yield ``runs``; remember them under ``key`` (None: do not) once read to the end unchanged."""
        kept = [] if key is not None else None
        for run in runs:
            if kept is not None:
                kept.append(run)
                if len(kept) > MEMO_MAX_RUNS:
                    kept = None
            yield run
        if kept is not None and _RUNS_MEMO is not None and self._memo_key(key[6], key[7]) == key:
            held = sum(len(v[0]) for v in _RUNS_MEMO.values())
            if held + len(kept) > MEMO_MAX_RUNS:
                _RUNS_MEMO.clear()
            _RUNS_MEMO[key] = (tuple(kept), self.ignored_blocks)

    def _runs(self, chunks, limit, max_run):
        if limit is None:
            limit = self.nblocks
        check = IndexCheck(self) if self.clean else None
        self.ignored_blocks = 0
        run_start = None
        run_len = 0
        for first, data in chunks:
            view = memoryview(data)
            nbytes = len(data)
            # Walk 4 KiB pages (512 entries): all-zero pages are skipped in C.
            for off in range(0, nbytes, 4096):
                page = view[off:off + 4096]
                if page == _ZERO_PAGE[:len(page)]:
                    if run_start is not None:
                        yield run_start, run_len
                        run_start = None
                    continue
                base = first + off // ENTRY_SIZE
                entries = page.cast('Q') if _LITTLE else struct.unpack('<%dQ' % (len(page) // 8), page)
                # Block numbers of the non-zero entries, selected in C.
                blocks = list(itertools.compress(range(base, base + len(entries)), entries))
                if check is not None:
                    check.page(base, entries, blocks)
                for block in blocks:
                    if block >= limit:
                        self.ignored_blocks += 1
                        continue
                    if run_start is not None and run_start + run_len == block and (
                            max_run is None or run_len < max_run):
                        run_len += 1
                    else:
                        if run_start is not None:
                            yield run_start, run_len
                        run_start, run_len = block, 1
                if run_start is not None and entries[-1] == 0:
                    yield run_start, run_len
                    run_start = None
        if check is not None:
            check.done()
        if run_start is not None:
            yield run_start, run_len

    def summary(self, limit=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
        """One pass over the index: ``dict(blocks, runs, ignored_blocks, sha256)``.

        ``sha256`` covers the header and the index (what identifies this sync in the journal).
        Inside :class:`remembered_runs` the pass also remembers the runs for :meth:`runs`.
        """
        digest = hashlib.sha256()
        with open(self.path, 'rb') as f:
            digest.update(f.read(HEADER_SIZE))
        blocks = runs = 0

        def hashed():
            for item in self.iter_index_chunks(chunk_bytes):
                digest.update(item[1])
                yield item

        key = self._memo_key(limit, None) if _RUNS_MEMO is not None else None
        for dummy, n in self._remembered(key, self._runs(hashed(), limit, None)):
            blocks += n
            runs += 1
        return {'blocks': blocks, 'runs': runs, 'ignored_blocks': self.ignored_blocks,
                'sha256': digest.hexdigest()}


_LITTLE = struct.pack('=H', 1) == struct.pack('<H', 1)


class IndexCheck(object):
    """What the format proves about the index of a clean COW file, checked page by page.

    Every entry is 0, the incremental filler 1, or a data-area block number in
    ``[data_offset / 4096, fpos)`` that no other entry holds (snapshot mode copies a block once);
    no entry is set past the device's last block; a version-1 file has as many set entries as its
    header's ``nr_changed_blocks`` (the driver counts each entry that goes from 0 to non-zero).
    """

    def __init__(self, cow):
        self.cow = cow
        self.lo = cow.data_offset // BLOCK_SIZE
        self.hi = cow.fpos
        self.limit = cow.nblocks
        self.count = 0
        self.slots = None

    def page(self, base, entries, blocks):
        self.count += len(blocks)
        if blocks[-1] >= self.limit:
            past = [b for b in blocks if b >= self.limit]
            plural = 'y' if len(past) == 1 else 'ies'
            self.cow.damaged('has %d index entr%s set past the last block of the %d-block device (first: %d); '
                             'the driver never sets them' % (len(past), plural, self.limit, past[0]), block=past[0])
        if sum(entries) == len(blocks) * FILLER:
            return  # every set entry is the filler (each is >= 1, so the sum says it): the common page
        for i, value in enumerate(entries):
            if value in (0, FILLER):
                continue
            if not self.lo <= value < self.hi:
                self.cow.damaged('has index entry %d (block %d) out of range: value %d is neither the incremental '
                                 'filler 1 nor a data block in %d..%d (before fpos)'
                                 % (base + i, base + i, value, self.lo, self.hi - 1), block=base + i, value=value)
            self._slot(base + i, value)

    def _slot(self, block, value):
        if self.hi - self.lo > MAX_SLOT_BITMAP:
            return
        if self.slots is None:
            self.slots = bytearray((self.hi - self.lo + 7) // 8)
        bit = value - self.lo
        if self.slots[bit >> 3] & (1 << (bit & 7)):
            self.cow.damaged('gives data block %d to two index entries (the second: block %d); the driver copies '
                             'each block once, so it uses each data block once' % (value, block),
                             block=block, value=value)
        self.slots[bit >> 3] |= 1 << (bit & 7)

    def done(self):
        cow = self.cow
        if cow.version >= 1 and self.count != cow.nr_changed_blocks:
            cow.damaged('lists %d changed blocks but its header counts %d (nr_changed_blocks): entries were '
                        'cleared or set after the driver closed it' % (self.count, cow.nr_changed_blocks),
                        listed=self.count, nr_changed_blocks=cow.nr_changed_blocks)
