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

from .errors import DattobdError

COW_MAGIC = 4776
HEADER = struct.Struct('<IIQQQ16sQQ')
HEADER_SIZE = 4096
BLOCK_SIZE = 4096
SECTION_ENTRIES = 4096
ENTRY_SIZE = 8
SECTION_BYTES = SECTION_ENTRIES * ENTRY_SIZE

FLAG_CLEAN = 1
FLAG_INDEX_ONLY = 2
FLAG_VMALLOC_UPPER = 4

# Index bytes read per system call while streaming (1 MiB = 131072 entries).
DEFAULT_CHUNK_BYTES = 1 << 20
_ZERO_PAGE = bytes(4096)


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


def _flags_text(flags):
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
                raw = f.read(HEADER.size)
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
                           hint='It is not a dattobd COW file, or it was truncated.', path=path)
        (self.magic, self.flags, self.fpos, self.fsize, self.seq_id, uuid_raw,
         self.version, self.nr_changed_blocks) = HEADER.unpack(raw)
        self.uuid = binascii.hexlify(uuid_raw).decode('ascii')
        if self.magic != COW_MAGIC:
            raise CowError('%s is not a dattobd COW file: bad magic %d (expected %d).' % (path, self.magic, COW_MAGIC),
                           hint='Pass the previous COW file of the tracker (cow_file).', path=path, magic=self.magic)
        if self.version not in (0, 1):
            raise CowError('COW file %s has unknown format version %d (this collection reads 0 and 1).'
                           % (path, self.version), path=path, version=self.version)
        if require_clean and not self.clean:
            raise CowError('COW file %s was not closed cleanly (flags %s): its on-disk index may be stale.'
                           % (path, _flags_text(self.flags)),
                           hint=('Only the previous COW file after "transition-to-snapshot", or a COW file of an '
                                 'unmounted volume, is consistent. A file left dirty by a crash cannot be trusted: '
                                 'take a new full backup.'), path=path, flags=self.flags)
        self.index_sections = self._index_sections(device_size)
        self.entries = self.index_sections * SECTION_ENTRIES
        self.index_bytes = self.index_sections * SECTION_BYTES
        self.data_offset = HEADER_SIZE + self.index_bytes
        self.device_size = device_size

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
                               hint='The file was cut short (copy interrupted, disk full?); take a new full backup.',
                               path=self.path)
            return avail // SECTION_BYTES
        if device_size < 0:
            raise CowError('Invalid device size %d.' % device_size)
        wanted = sections_for(device_size)
        need = HEADER_SIZE + wanted * SECTION_BYTES
        if self.file_size < need:
            raise CowError('COW file %s has a truncated index: %d bytes, but a %d-byte device needs %d '
                           '(header + %d index sections).' % (self.path, self.file_size, device_size, need, wanted),
                           hint=('It was cut short, or it belongs to a larger device? Check the COW file and '
                                 'the snapshot; if the file is damaged take a new full backup.'),
                           path=self.path, file_size=self.file_size, needed=need)
        if self.index_only and self.file_size > need:
            have = (self.file_size - HEADER_SIZE) // SECTION_BYTES
            raise CowError('COW file %s has an index larger than the device: %d sections for %d blocks (%d bytes) '
                           'where the device needs %d.' % (self.path, have, device_blocks(device_size),
                                                           device_size, wanted),
                           hint='This COW file was written for another (larger) device; pass the COW file of '
                                'this tracker.', path=self.path, file_size=self.file_size, needed=need)
        return wanted

    def to_dict(self):
        return {
            'path': self.path,
            'magic': self.magic,
            'flags': self.flags,
            'flags_text': _flags_text(self.flags),
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
        """
        return self._runs(self.iter_index_chunks(chunk_bytes), limit, max_run)

    def _runs(self, chunks, limit, max_run):
        if limit is None:
            limit = device_blocks(self.device_size) if self.device_size is not None else self.entries
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
                for block in itertools.compress(range(base, base + len(entries)), entries):
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
        if run_start is not None:
            yield run_start, run_len

    def summary(self, limit=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
        """One pass over the index: ``dict(blocks, runs, ignored_blocks, sha256)``.

        ``sha256`` covers the header and the index (what identifies this sync in the journal).
        """
        digest = hashlib.sha256()
        with open(self.path, 'rb') as f:
            digest.update(f.read(HEADER_SIZE))
        blocks = runs = 0

        def hashed():
            for item in self.iter_index_chunks(chunk_bytes):
                digest.update(item[1])
                yield item

        for dummy, n in self._runs(hashed(), limit, None):
            blocks += n
            runs += 1
        return {'blocks': blocks, 'runs': runs, 'ignored_blocks': self.ignored_blocks,
                'sha256': digest.hexdigest()}


_LITTLE = struct.pack('=H', 1) == struct.pack('<H', 1)


def write_cow(path, device_size, blocks, seq_id=1, uuid=None, version=1, flags=FLAG_CLEAN | FLAG_INDEX_ONLY,
              values=None, magic=COW_MAGIC, data_blocks=0, mode=0o600):
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
    nsect = sections_for(device_size)
    nentries = nsect * SECTION_ENTRIES
    doff = HEADER_SIZE + nsect * SECTION_BYTES
    fsize = doff + data_blocks * BLOCK_SIZE
    values = values or {}
    changed = sorted(set(blocks))
    header = HEADER.pack(magic, flags, doff // BLOCK_SIZE + data_blocks, fsize, seq_id, uuid, version,
                         len(changed) if version >= 1 else 0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, header + bytes(HEADER_SIZE - len(header)))
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
            os.pwrite(fd, bytes(buf), HEADER_SIZE + page * 4096)
    finally:
        os.close(fd)
    return len(changed)
