# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which blocks of a snapshot its filesystem reports unallocated (ext2/3/4, XFS).

A full backup leaves those blocks as holes of the sparse image and does not even read them; a
verification ignores them (their content means nothing to the filesystem, and the snapshot device
shows whatever was last written there). The map comes from the filesystem's own tools, run
read-only on the snapshot device:

* ext2/3/4: ``dumpe2fs`` (every group's "Free blocks:" ranges, block bitmaps of uninitialised
  groups included). Trusted only when the superblock does not say ``needs_recovery``: the journal
  would still hold allocations the bitmaps lack.
* XFS: ``xfs_db -r`` (``freesp -d``: the free extents of every allocation group, and the blocks on
  the free lists, reserved for btree growth). Trusted only when ``xfs_logprint -t`` shows a clean
  log, or a covered one (only superblock updates, as a freeze leaves it): a log with other
  transactions may hold allocations the free space btrees lack.

dattobd freezes a mounted filesystem while it takes a snapshot, which flushes the ext4 journal
(``needs_recovery`` cleared) and quiesces the XFS log, so a snapshot of a mounted ext4 or XFS
volume passes these checks. Any other filesystem, a missing tool, an error or an unexpected output
gives no map: the caller falls back to all-zero blocks only, and ``note`` says why.

Block numbers are 4 KiB units of the device (``BLOCK_SIZE``); a unit is free only when every
filesystem block in it is free.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import struct

from .constants import BLOCK_SIZE
from .errors import DattobdError
from .runner import c_env, run_timed

DEFAULT_TIMEOUT = 600
EXT_MAGIC = 0xEF53
XFS_MAGIC = b'XFSB'

_EXT_FEATURES = re.compile(r'^Filesystem features:\s*(.*)$', re.M)
_EXT_BLOCK_SIZE = re.compile(r'^Block size:\s*([0-9]+)\s*$', re.M)
_EXT_GROUP = re.compile(r'^Group [0-9]+:')
_EXT_FREE = re.compile(r'^\s+Free blocks:\s*(.*)$')
_RANGE = re.compile(r'^([0-9]+)(?:-([0-9]+))?$')
_XFS_FIELD = re.compile(r'^(blocksize|agblocks|agblklog|agcount|dblocks|logstart|logblocks) = ([0-9]+)\s*$')
_XFS_EXTENT = re.compile(r'^\s*([0-9]+)\s+([0-9]+)\s+([0-9]+)\s*$')
_XFS_LOG_STATE = re.compile(r'log tail: [0-9]+ head: [0-9]+ state: <(\w+)>')
_EXT_JOURNAL_INODE = re.compile(r'^Journal inode:\s*([0-9]+)\s*$', re.M)
_EXT_JOURNAL_DEVICE = re.compile(r'^Journal (?:device|UUID):', re.M)
_DEBUGFS_SECTION = re.compile(r'^(EXTENTS|BLOCKS):\s*$', re.M)
_DEBUGFS_RUN = re.compile(r'\(([0-9]+)(?:-([0-9]+))?\):([0-9]+)(?:-([0-9]+))?')
_DEBUGFS_TREE = re.compile(r'\((?:ETB[0-9]+|IND|DIND|TIND)\):([0-9]+)')
_DEBUGFS_IMAP = re.compile(r'located at block ([0-9]+)')
_XFS_DADDR = re.compile(r'^0x[0-9a-fA-F]+ \(([0-9]+)\)\s*$', re.M)
_XFS_BUF_DETAIL = re.compile(r'^\s+BUF:.*start blkno:\s*(0x[0-9a-fA-F]+|[0-9]+)')


class _BlockMap(object):
    """Some 4 KiB blocks of a filesystem: ``runs`` (ordered ``(start, n)``) or None with a ``note``."""

    __slots__ = ('fstype', 'runs', 'note')

    def __init__(self, fstype, runs=None, note=None):
        self.fstype = fstype
        self.runs = runs
        self.note = note

    @property
    def known(self):
        return self.runs is not None

    @property
    def count(self):
        return sum(n for dummy, n in self.runs) if self.runs is not None else 0


class FreeMap(_BlockMap):
    """Free 4 KiB blocks of a filesystem (``free_map``)."""

    __slots__ = ('fs_block_size',)

    def __init__(self, fstype, runs=None, note=None, fs_block_size=None):
        super(FreeMap, self).__init__(fstype, runs, note)
        self.fs_block_size = fs_block_size

    @property
    def free_blocks(self):
        return self.count

    def to_dict(self):
        return {'fstype': self.fstype, 'known': self.known, 'free_blocks': self.free_blocks, 'note': self.note}


def detect(path):
    """The ``name`` of the :class:`Filesystem` whose superblock magic ``path`` (a device or an image) holds, or None."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.pread(fd, 2048, 0)
    finally:
        os.close(fd)
    for fs in FILESYSTEMS:
        if fs.matches(head):
            return fs.name
    return None


def to_blocks(byte_ranges, limit_blocks=None):
    """4 KiB blocks wholly inside the ``[(start_byte, end_byte_exclusive)]`` ranges, as ordered merged runs."""
    out = []
    for start, end in sorted(byte_ranges):
        first = (start + BLOCK_SIZE - 1) // BLOCK_SIZE
        last = end // BLOCK_SIZE
        if limit_blocks is not None:
            last = min(last, limit_blocks)
        if last <= first:
            continue
        if out and first <= out[-1][0] + out[-1][1]:
            prev_start, prev_n = out[-1]
            out[-1] = (prev_start, max(prev_start + prev_n, last) - prev_start)
        else:
            out.append((first, last - first))
    return out


def parse_dumpe2fs(text):
    """``(fs_block_size, [(first_fs_block, last_fs_block_inclusive)])`` from ``dumpe2fs`` output.

    Raises ValueError for output this parser does not understand, or a journal that needs recovery.
    """
    m = _EXT_BLOCK_SIZE.search(text)
    if not m:
        raise ValueError('no "Block size:" line')
    bsize = int(m.group(1))
    if bsize <= 0 or bsize & (bsize - 1):
        raise ValueError('block size %d is not a power of two' % bsize)
    feat = _EXT_FEATURES.search(text)
    if not feat:
        raise ValueError('no "Filesystem features:" line')
    if 'needs_recovery' in feat.group(1).split():
        raise ValueError('the journal needs recovery (the bitmaps may lack allocations it holds)')
    ranges, groups = [], 0
    for line in text.splitlines():
        if _EXT_GROUP.match(line):
            groups += 1
            continue
        m = _EXT_FREE.match(line)
        if not m or not groups:
            continue  # the header's "Free blocks:" is a count, not a list
        for item in m.group(1).split(','):
            item = item.strip()
            if not item:
                continue
            r = _RANGE.match(item)
            if not r:
                raise ValueError('unexpected free block range %r' % item)
            first = int(r.group(1))
            last = int(r.group(2)) if r.group(2) else first
            if last < first:
                raise ValueError('free block range %r is reversed' % item)
            ranges.append((first, last))
    if not groups:
        raise ValueError('no block group in the output')
    return bsize, ranges


def xfs_log_safe(text):
    """None when ``xfs_logprint -t`` output shows a clean or only covered log, else the reason."""
    m = _XFS_LOG_STATE.search(text)
    if not m:
        return 'xfs_logprint shows no log state'
    if m.group(1) == 'CLEAN':
        return None
    # A covered log (what a freeze leaves): transactions that only log the superblock buffer.
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(('xfs_logprint', 'data device', 'log device', 'log tail',
                                                'LOG REC', '====', 'TRANS:', 'SUPER Block Buffer')):
            continue
        if line.startswith('BUF:'):
            continue  # the item header; its detail line follows
        d = _XFS_BUF_DETAIL.match(line)
        if d and int(d.group(1), 0) == 0:
            continue
        return 'the XFS log holds transactions other than superblock updates (%s)' % stripped[:80]
    return None


def parse_xfs_db(text):
    """``(fs_block_size, [(first_fs_block, n_fs_blocks)])`` from ``xfs_db -c 'sb 0' -c 'p ...' -c 'freesp -d'``."""
    fields = {}
    extents = []
    header = histogram = False
    for line in text.splitlines():
        m = _XFS_FIELD.match(line.strip())
        if m:
            fields[m.group(1)] = int(m.group(2))
            continue
        words = line.split()
        if words[:3] == ['agno', 'agbno', 'len']:
            header = True
            continue
        if words[:2] == ['from', 'to']:
            histogram = True
            continue
        if header and not histogram:
            e = _XFS_EXTENT.match(line)
            if not e:
                raise ValueError('unexpected free extent line %r' % line)
            extents.append(tuple(int(x) for x in e.groups()))
    for name in ('blocksize', 'agblocks', 'agcount'):
        if not fields.get(name):
            raise ValueError('no %s in the superblock output' % name)
    if not header:
        raise ValueError('no free extent listing (freesp -d)')
    agblocks, agcount = fields['agblocks'], fields['agcount']
    out = []
    for agno, agbno, n in extents:
        if agno >= agcount or agbno + n > agblocks:
            raise ValueError('free extent %d/%d+%d lies outside the allocation groups' % (agno, agbno, n))
        out.append((agno * agblocks + agbno, n))
    return fields['blocksize'], out


def _detect(device):
    """``(fstype, None)``, or ``(None, note)`` when the superblock of ``device`` cannot be read."""
    try:
        return detect(device), None
    except OSError as exc:
        return None, 'cannot read the superblock of %s: %s' % (device, os.strerror(exc.errno or 0))


def _error_text(exc):
    """The message of a tool or parser failure (DattobdError.msg, OSError.strerror, or str)."""
    return getattr(exc, 'msg', None) or getattr(exc, 'strerror', None) or str(exc)


def _tool(argv, timeout):
    rc, out, err = run_timed(argv, timeout=timeout, env=c_env())
    if rc != 0:
        raise ValueError('%s exited %s: %s' % (argv[0], rc, (err or out).strip()[-300:] or 'no output'))
    return out


def free_map(device, timeout=DEFAULT_TIMEOUT, size=None, run=None):
    """The :class:`FreeMap` of the filesystem on ``device`` (read-only; never raises for a bad filesystem).

    ``size``: the device size in bytes (blocks beyond it are dropped). ``run``: replaces the tool
    runner (tests): ``run(argv, timeout) -> stdout``, raising ValueError or OSError on failure.
    """
    fs, fstype, note = _open_filesystem(device, run, timeout)
    if fs is None:
        return FreeMap(fstype, note=note)
    limit = None if size is None else size // BLOCK_SIZE
    try:
        bsize, byte_ranges = fs.free_ranges()
    except (OSError, ValueError, DattobdError) as exc:
        return FreeMap(fstype, note='free blocks of %s unknown: %s' % (device, _error_text(exc)))
    return FreeMap(fstype, runs=to_blocks(byte_ranges, limit), fs_block_size=bsize)


class MountMap(_BlockMap):
    """Blocks a filesystem writes while it is being mounted (``mount_map``), with ``parts``
    (``{region name: blocks}``); a ``note`` may come with known ``runs`` (an external journal)."""

    __slots__ = ('parts',)

    def __init__(self, fstype, runs=None, note=None, parts=None):
        super(MountMap, self).__init__(fstype, runs, note)
        self.parts = parts or {}

    @property
    def blocks(self):
        return self.count

    def to_dict(self):
        return {'fstype': self.fstype, 'known': self.known, 'blocks': self.blocks, 'parts': dict(self.parts),
                'note': self.note}


def parse_debugfs_blocks(text):
    """``[(first_fs_block, last_fs_block_inclusive)]`` of the data of an inode, from ``debugfs -R 'stat <N>'``.

    Reads the ``EXTENTS:`` (extent-mapped) or ``BLOCKS:`` (block-mapped) listing; the extent tree's own
    blocks (``(ETB0)``) and indirect blocks (``(IND)``) are not data and not listed. Raises ValueError
    when there is no listing.
    """
    m = _DEBUGFS_SECTION.search(text)
    if not m:
        raise ValueError('no EXTENTS or BLOCKS listing in the debugfs output')
    out = []
    for r in _DEBUGFS_RUN.finditer(text[m.end():]):
        lfirst, llast, first, last = r.groups()
        count = int(llast) - int(lfirst) + 1 if llast else 1
        first = int(first)
        last = int(last) if last else first
        if last - first + 1 != count:
            raise ValueError('extent %r maps %d logical blocks to %d' % (r.group(0), count, last - first + 1))
        out.append((first, last))
    if not out:
        raise ValueError('the inode has no data blocks')
    return out


def parse_debugfs_tree(text):
    """The extent tree blocks (``(ETBn)``) or indirect blocks (``(IND)``...) of an inode, from ``debugfs -R 'stat <N>'``."""
    m = _DEBUGFS_SECTION.search(text)
    return [int(b) for b in _DEBUGFS_TREE.findall(text[m.end():])] if m else []


def parse_xfs_log(text):
    """``(fs_block_size, first_fs_block, n_fs_blocks, agblocks, agcount)`` of the internal log of an XFS
    filesystem, from ``xfs_db -r -c 'sb 0' -c 'p blocksize agblocks agblklog agcount logstart logblocks'``.

    Raises ValueError for an external log (``logstart = 0``) or output this parser does not understand.
    """
    fields = {}
    for line in text.splitlines():
        m = _XFS_FIELD.match(line.strip())
        if m:
            fields[m.group(1)] = int(m.group(2))
    for name in ('blocksize', 'agblocks', 'agblklog', 'agcount', 'logstart', 'logblocks'):
        if name not in fields:
            raise ValueError('no %s in the superblock output' % name)
    if not fields['logstart']:
        raise ValueError('the log is on an external device')
    agno = fields['logstart'] >> fields['agblklog']
    agbno = fields['logstart'] & ((1 << fields['agblklog']) - 1)
    if agno >= fields['agcount'] or agbno + fields['logblocks'] > fields['agblocks']:
        raise ValueError('the log (%d+%d) lies outside the allocation groups' % (fields['logstart'], fields['logblocks']))
    return (fields['blocksize'], agno * fields['agblocks'] + agbno, fields['logblocks'], fields['agblocks'],
            fields['agcount'])


def mount_map(device, timeout=DEFAULT_TIMEOUT, size=None, run=None, inodes=()):
    """The :class:`MountMap` of the filesystem on ``device`` (read-only; never raises for a bad filesystem).

    dattobd turns a tracker reloaded at boot (unverified) active only after the mount call of its
    filesystem returned, so what the filesystem writes while it mounts is in no change list. A
    clean ext4 writes its superblock and its journal there, XFS its superblock (allocation group
    0's header block) and its log. Those regions, read here from the filesystem's own tools:

    * ext2/3/4: the 4 KiB block holding the primary superblock and, with an internal journal, the
      journal inode's data blocks (``dumpe2fs -h``, ``debugfs -c -R 'stat <N>'``);
    * XFS: block 0 and the first block of every allocation group (the superblock copies and the
      AG headers) and the internal log (``xfs_db -r``).

    ``inodes``: inode numbers whose inode block and block map are added (``cow file``): the COW
    files the driver closed at shutdown and reopened at boot (see :meth:`Filesystem.inode_ranges`).
    An external journal or log is on another device: not listed, ``note`` says so (it still maps).
    ``size`` and ``run`` as for :func:`free_map`.
    """
    fs, fstype, note = _open_filesystem(device, run, timeout)
    if fs is None:
        return MountMap(fstype, note=note)
    limit = None if size is None else size // BLOCK_SIZE
    try:
        bsize, parts, note = fs.mount_parts()
        if inodes:
            parts['cow file'] = [r for ino in inodes for r in fs.inode_ranges(ino, bsize)]
    except (OSError, ValueError, DattobdError) as exc:
        return MountMap(fstype, note='the blocks %s writes at mount are unknown: %s' % (device, _error_text(exc)))
    blocks = {}
    for name, byte_ranges in parts.items():
        # Any 4 KiB block touched by a range (not only those wholly inside it): round outwards.
        blocks[name] = [((a // BLOCK_SIZE) * BLOCK_SIZE, -(-b // BLOCK_SIZE) * BLOCK_SIZE) for a, b in byte_ranges]
    runs = to_blocks([r for ranges in blocks.values() for r in ranges], limit)
    counts = dict((name, sum(n for dummy, n in to_blocks(ranges, limit))) for name, ranges in blocks.items())
    return MountMap(fstype, runs=runs, note=note, parts=counts)


# --- one class per filesystem ----------------------------------------------------------------------
# A filesystem is one subclass of Filesystem listed in FILESYSTEMS: its superblock magic, where its
# free blocks are, what it writes while it mounts and where an inode and its block map live.

class Filesystem(object):
    """What the block maps need to know of one filesystem type, read with its own tools on ``device``.

    ``run(argv, timeout) -> stdout`` runs a tool (raising ValueError or OSError on failure).
    """

    name = None    # the ``fstype`` of the maps
    label = None   # how messages name it

    def __init__(self, device, run, timeout):
        self.device = device
        self.run = run
        self.timeout = timeout

    @classmethod
    def matches(cls, head):
        """Whether the first 2 KiB ``head`` of a device hold this filesystem's superblock."""
        raise NotImplementedError

    def free_ranges(self):
        """``(fs_block_size, [(start_byte, end_byte_exclusive)])`` of the free space (ValueError when not trusted)."""
        raise NotImplementedError

    def mount_parts(self):
        """``(fs_block_size, {region name: [(start_byte, end_byte)]}, note)``: what a mount writes."""
        raise NotImplementedError

    def inode_ranges(self, ino, bsize):
        """Byte ranges of the blocks holding inode ``ino`` and its block map (extent tree, indirect blocks).

        The COW file's own metadata: the driver writes into its preallocated (unwritten) extents, and
        closes and reopens it, in the untracked windows of shutdown and boot, so the filesystem updates
        its inode and extent tree there.
        """
        raise NotImplementedError

    def tool(self, *argv):
        return self.run(list(argv) + [self.device], self.timeout)


class Ext(Filesystem):
    """ext2/3/4: ``dumpe2fs`` and ``debugfs``."""

    name = 'ext'
    label = 'ext2/3/4'

    @classmethod
    def matches(cls, head):
        return len(head) >= 1082 and struct.unpack_from('<H', head, 1080)[0] == EXT_MAGIC

    def free_ranges(self):
        bsize, ranges = parse_dumpe2fs(self.tool('dumpe2fs'))
        return bsize, [(first * bsize, (last + 1) * bsize) for first, last in ranges]

    def mount_parts(self):
        head = self.tool('dumpe2fs', '-h')
        m = _EXT_BLOCK_SIZE.search(head)
        if not m:
            raise ValueError('no "Block size:" line')
        bsize = int(m.group(1))
        parts, note = {'superblock': [(0, 2048)]}, None
        inode = _EXT_JOURNAL_INODE.search(head)
        if inode:
            runs = parse_debugfs_blocks(self.tool('debugfs', '-c', '-R', 'stat <%s>' % inode.group(1)))
            parts['journal'] = [(first * bsize, (last + 1) * bsize) for first, last in runs]
        elif _EXT_JOURNAL_DEVICE.search(head):
            note = 'the journal of %s is on another device, which is not tracked with it' % self.device
        return bsize, parts, note

    def inode_ranges(self, ino, bsize):
        m = _DEBUGFS_IMAP.search(self.tool('debugfs', '-c', '-R', 'imap <%d>' % ino))
        if not m:
            raise ValueError('debugfs does not locate inode %d' % ino)
        blocks = [int(m.group(1))] + parse_debugfs_tree(self.tool('debugfs', '-c', '-R', 'stat <%d>' % ino))
        return [(b * bsize, (b + 1) * bsize) for b in blocks]


class Xfs(Filesystem):
    """XFS: ``xfs_logprint`` and ``xfs_db -r``. XFS keeps a few extents in the inode; its bmbt blocks are not listed."""

    name = 'xfs'
    label = 'XFS'

    @classmethod
    def matches(cls, head):
        return head[:4] == XFS_MAGIC

    def free_ranges(self):
        reason = xfs_log_safe(self.tool('xfs_logprint', '-t'))
        if reason:
            raise ValueError(reason)
        bsize, ranges = parse_xfs_db(self.tool('xfs_db', '-r', '-c', 'sb 0', '-c', 'p blocksize agblocks agcount dblocks',
                                               '-c', 'freesp -d'))
        return bsize, [(first * bsize, (first + n) * bsize) for first, n in ranges]

    def mount_parts(self):
        bsize, first, n, agblocks, agcount = parse_xfs_log(self.tool(
            'xfs_db', '-r', '-c', 'sb 0', '-c', 'p blocksize agblocks agblklog agcount logstart logblocks'))
        parts = {'superblock': [(ag * agblocks * bsize, ag * agblocks * bsize + bsize) for ag in range(agcount)],
                 'log': [(first * bsize, (first + n) * bsize)]}
        return bsize, parts, None

    def inode_ranges(self, ino, bsize):
        m = _XFS_DADDR.search(self.tool('xfs_db', '-r', '-c', 'convert inode %d daddr' % ino))
        if not m:
            raise ValueError('xfs_db does not locate inode %d' % ino)
        return [(int(m.group(1)) * 512, int(m.group(1)) * 512 + 512)]


# Detection order: the first whose magic matches (XFS's is at offset 0, ext's at 1080).
FILESYSTEMS = (Xfs, Ext)


def _filesystem(name):
    """The :class:`Filesystem` class called ``name`` (a :func:`detect` result), or None."""
    for fs in FILESYSTEMS:
        if fs.name == name:
            return fs
    return None


def _open_filesystem(device, run, timeout):
    """``(Filesystem, fstype, None)`` for ``device``, or ``(None, None, note)`` when its superblock is
    unreadable or of no known filesystem. ``run``: the tool runner (None: the real tools)."""
    fstype, unreadable = _detect(device)
    if unreadable:
        return None, None, unreadable
    fs = _filesystem(fstype)
    if fs is None:
        return None, None, _no_superblock(device)
    return fs(device, run or _tool, timeout), fstype, None


def _no_superblock(device):
    return 'no %s superblock on %s' % (' or '.join(sorted((fs.label for fs in FILESYSTEMS), key=str.lower)), device)
