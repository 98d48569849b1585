# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Free-block maps of ext2/3/4 and XFS (fsmap.py), and the full copy that skips those blocks.

The parser tests use outputs in the exact format of dumpe2fs 1.47, xfs_db 6.1 and xfs_logprint 6.1.
The filesystem tests build real filesystems in image files with mkfs (no root needed for ext4),
overwrite every block the map calls free with garbage, and check the filesystem and its files are
intact: the proof that a full backup may leave those blocks as holes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as copy_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as verify_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

BS = 4096

DUMPE2FS = '''Filesystem volume name:   <none>
Filesystem magic number:  0xEF53
Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super
Free blocks:              12754
Block count:              65536
Block size:               1024

Group 0: (Blocks 1-8192) csum 0x2ef5 [ITABLE_ZEROED]
  Primary superblock at 1, Group descriptors at 2-2
  780 free blocks, 2035 free inodes, 2 directories, 2035 unused inodes
  Free blocks: 7413-8192
  Free inodes: 14-2048
Group 1: (Blocks 8193-16384) csum 0x937e [INODE_UNINIT, BLOCK_UNINIT, ITABLE_ZEROED]
  7934 free blocks, 2048 free inodes, 0 directories, 2048 unused inodes
  Free blocks: 8451-16384
  Free inodes: 2049-4096
Group 2: (Blocks 16385-24576) csum 0x303b [INODE_UNINIT, ITABLE_ZEROED]
  0 free blocks, 2048 free inodes, 0 directories, 2048 unused inodes
  Free blocks:
  Free inodes: 4097-6144
Group 3: (Blocks 24577-32768) csum 0x303b [INODE_UNINIT, ITABLE_ZEROED]
  Free blocks: 24600, 24602-24603
'''

XFS_DB = '''blocksize = 4096
agblocks = 20480
agcount = 2
dblocks = 40960
    agno    agbno      len
       0        6        1
       0       10        6
       0       24    20456
       1       10    20470
   from      to extents  blocks    pct
      1       1       1       1   0.00
  16384   20480       3   40932  99.99
'''

LOG_HEAD = '''xfs_logprint:
    data device: 0xffffffffffffffff
    log device: 0xffffffffffffffff daddr: 327728 length: 131072

'''
LOG_CLEAN = LOG_HEAD + '    log tail: 16 head: 16 state: <CLEAN>\n'
LOG_COVERED = LOG_HEAD + '''    log tail: 8 head: 12 state: <DIRTY>


LOG REC AT LSN cycle 1 block 8 (0x1, 0x8)
============================================================================
TRANS: tid:0xf0a0d770  #items:2  trans:0xf0a0d770  q:0x5646a7265c40
BUF: cnt:2 total:2 a:0x5646a725bfe0 len:24 a:0x5646a725ae60 len:384
\tBUF:  #regs:2   start blkno:0x0   len:1   bmap size:1   flags:0x9000
\tSUPER Block Buffer:
'''
LOG_DIRTY = LOG_HEAD + '''    log tail: 2 head: 8 state: <DIRTY>


LOG REC AT LSN cycle 1 block 2 (0x1, 0x2)
============================================================================
TRANS: tid:0x5d26e7c5  #items:20  trans:0x5d26e7c5  q:0x55ac0a5d1e30
INO: cnt:3 total:3 a:0x55ac0a5bfd90 len:56 a:0x55ac0a5d1ec0 len:176 a:0x55ac0a5d3fe0 len:16
\tINODE: #regs:3   ino:0x80  flags:0x3   dsize:15
'''
LOG_AGF = LOG_COVERED + '''BUF: cnt:2 total:2 a:0x1 len:24 a:0x2 len:128
\tBUF:  #regs:2   start blkno:0x1   len:1   bmap size:1   flags:0x9000
\tAGF Buffer: XAGF
'''


def test_parse_dumpe2fs_group_ranges_only():
    bsize, ranges = fsmap.parse_dumpe2fs(DUMPE2FS)
    assert bsize == 1024
    # The header's "Free blocks: 12754" is a count and must not become block 12754.
    assert ranges == [(7413, 8192), (8451, 16384), (24600, 24600), (24602, 24603)]


@pytest.mark.parametrize('text, why', [
    (DUMPE2FS.replace('filetype extent', 'filetype needs_recovery extent'), 'journal needs recovery'),
    (DUMPE2FS.replace('Block size:               1024', 'Block size: 1000'), 'power of two'),
    (DUMPE2FS.replace('Block size:', 'Blocksize:'), 'Block size'),
    (DUMPE2FS.replace('Filesystem features:', 'Features:'), 'features'),
    (DUMPE2FS.split('\nGroup 0', maxsplit=1)[0], 'no block group'),
    (DUMPE2FS.replace('Free blocks: 7413-8192', 'Free blocks: 7413-x'), 'unexpected free block range'),
    (DUMPE2FS.replace('Free blocks: 7413-8192', 'Free blocks: 8192-7413'), 'reversed'),
])
def test_parse_dumpe2fs_refuses(text, why):
    with pytest.raises(ValueError, match=why):
        fsmap.parse_dumpe2fs(text)


def test_to_blocks_keeps_only_whole_4k_units():
    # 1 KiB filesystem blocks 7413-8192: bytes 7590912-8389632 -> 4 KiB units 1854..2047 whole.
    assert fsmap.to_blocks([(7413 * 1024, 8193 * 1024)]) == [(1854, 194)]
    assert fsmap.to_blocks([(0, 4095)]) == []
    assert fsmap.to_blocks([(4096, 8192), (8192, 16384), (0, 100)]) == [(1, 3)]   # adjacent merge
    assert fsmap.to_blocks([(0, 40960)], limit_blocks=4) == [(0, 4)]
    assert fsmap.to_blocks([(0, 8192), (4096, 12288)]) == [(0, 3)]               # overlap merges


def test_parse_xfs_db():
    bsize, extents = fsmap.parse_xfs_db(XFS_DB)
    assert bsize == 4096
    assert extents == [(6, 1), (10, 6), (24, 20456), (20480 + 10, 20470)]


@pytest.mark.parametrize('text, why', [
    (XFS_DB.replace('agblocks = 20480\n', ''), 'agblocks'),
    (XFS_DB.split('    agno', maxsplit=1)[0], 'no free extent listing'),
    (XFS_DB.replace('       1       10    20470', '       1       10    20471'), 'outside the allocation groups'),
    (XFS_DB.replace('       1       10    20470', '       2       10    1'), 'outside the allocation groups'),
    (XFS_DB.replace('       0       10        6', '       0       ten       6'), 'unexpected free extent line'),
])
def test_parse_xfs_db_refuses(text, why):
    with pytest.raises(ValueError, match=why):
        fsmap.parse_xfs_db(text)


def test_xfs_log_safety():
    assert fsmap.xfs_log_safe(LOG_CLEAN) is None
    assert fsmap.xfs_log_safe(LOG_COVERED) is None       # what a freeze leaves
    assert 'other than superblock' in fsmap.xfs_log_safe(LOG_DIRTY)
    assert 'start blkno:0x1' in fsmap.xfs_log_safe(LOG_AGF)   # an AGF buffer, not the superblock
    assert 'no log state' in fsmap.xfs_log_safe('garbage')


def _ext_image(path, size=64 << 20):
    with open(path, 'wb') as f:
        f.truncate(size)
        f.seek(1080)
        f.write(b'\x53\xef')


def test_free_map_with_fake_tools(tmp_path):
    img = str(tmp_path / 'ext.img')
    _ext_image(img)
    seen = []

    def run(argv, timeout):
        seen.append(argv)
        return DUMPE2FS

    m = fsmap.free_map(img, size=32 << 20, run=run)
    assert seen == [['dumpe2fs', img]]
    assert m.known and m.fstype == 'ext' and m.fs_block_size == 1024
    assert m.runs[0] == (1854, 194) and m.free_blocks == sum(n for dummy, n in m.runs)
    assert m.to_dict()['known'] is True

    xfs = str(tmp_path / 'xfs.img')
    with open(xfs, 'wb') as f:
        f.write(b'XFSB' + bytes(8188))
    logs = {'log': LOG_DIRTY}

    def run_xfs(argv, timeout):
        seen.append(argv)
        return logs['log'] if argv[0] == 'xfs_logprint' else XFS_DB

    m = fsmap.free_map(xfs, run=run_xfs)
    assert not m.known and m.fstype == 'xfs' and 'other than superblock updates' in m.note
    logs['log'] = LOG_COVERED
    m = fsmap.free_map(xfs, run=run_xfs)
    assert m.known and m.runs == [(6, 1), (10, 6), (24, 20456), (20490, 20470)]
    assert seen[-1][:2] == ['xfs_db', '-r'] and seen[-1][-1] == xfs


def test_free_map_never_raises(tmp_path):
    plain = tmp_path / 'plain'
    plain.write_bytes(os.urandom(8192))
    assert 'no ext2/3/4 or XFS superblock' in fsmap.free_map(str(plain)).note
    assert 'cannot read the superblock' in fsmap.free_map(str(tmp_path / 'missing')).note
    img = str(tmp_path / 'ext.img')
    _ext_image(img)

    def missing(argv, timeout):
        raise DattobdError('Cannot run dumpe2fs: No such file or directory.')

    m = fsmap.free_map(img, run=missing)
    assert not m.known and m.fstype == 'ext' and 'Cannot run dumpe2fs' in m.note and m.free_blocks == 0

    def failing(argv, timeout):
        raise ValueError('dumpe2fs exited 1: Bad magic number in super-block')

    assert 'Bad magic number' in fsmap.free_map(img, run=failing).note


def test_tool_runner_reports_exit_status(tmp_path):
    with pytest.raises(ValueError, match='exited 3: boom'):
        fsmap._tool(['sh', '-c', 'echo boom >&2; exit 3'], 10)
    assert fsmap._tool(['echo', 'hi'], 10) == 'hi\n'


# -- full copy skipping blocks -------------------------------------------------------------------

def test_full_copy_skips_runs_without_reading_them(tmp_path):
    src = tmp_path / 'src'
    data = bytearray(os.urandom(64 * BS))
    data[10 * BS:12 * BS] = bytes(2 * BS)     # zero blocks (not skipped): holes all the same
    src.write_bytes(bytes(data))
    dst = str(tmp_path / 'dst')
    stats = copy_mod.full_copy(str(src), dst, skip_runs=[(0, 2), (20, 5), (60, 10)], buffer_size=4 * BS)
    out = open(dst, 'rb').read()
    assert len(out) == len(data)
    for b in range(64):
        piece = out[b * BS:(b + 1) * BS]
        if b < 2 or 20 <= b < 25 or b >= 60:
            assert piece == bytes(BS), b            # skipped: a hole
        else:
            assert piece == bytes(data[b * BS:(b + 1) * BS]), b
    assert stats.skipped_blocks == 2 + 5 + 4       # clipped at the end of the source
    assert stats.blocks == 64 - 11 and stats.read_bytes == 53 * BS
    assert stats.zero_blocks == 2
    assert stats.to_dict()['skipped_blocks'] == 11


def test_full_copy_without_sparse_ignores_skip_runs(tmp_path):
    src = tmp_path / 'src'
    data = os.urandom(8 * BS)
    src.write_bytes(data)
    dst = str(tmp_path / 'dst')
    stats = copy_mod.full_copy(str(src), dst, sparse=False, skip_runs=[(0, 4)])
    assert open(dst, 'rb').read() == data and stats.skipped_blocks == 0


# -- real filesystems ----------------------------------------------------------------------------

def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists('/sbin/' + t)]
    if missing:
        pytest.skip('needs %s (e2fsprogs / xfsprogs)' % ', '.join(missing))


def _tree(tmp_path):
    src = tmp_path / 'tree'
    src.mkdir()
    files = {}
    for i, size in enumerate((3 << 20, 100000, 4096, 1, 777777)):
        body = os.urandom(size)
        (src / ('f%d' % i)).write_bytes(body)
        files['f%d' % i] = hashlib.sha256(body).hexdigest()
    return src, files


def _garble_free(img, fmap):
    """Overwrite every block the map calls free with 0xA5 bytes (what old data would look like)."""
    junk = b'\xa5' * BS
    with open(img, 'r+b') as f:
        for start, n in fmap.runs:
            for b in range(start, start + n):
                f.seek(b * BS)
                f.write(junk)


@pytest.mark.parametrize('block_size', [1024, 4096])
def test_ext4_free_map_is_truly_free(tmp_path, block_size):
    _need('mkfs.ext4', 'dumpe2fs', 'e2fsck', 'debugfs')
    src, files = _tree(tmp_path)
    img = str(tmp_path / 'ext4.img')
    with open(img, 'wb') as f:
        f.truncate(48 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-b', str(block_size), '-d', str(src), img], check=True)
    fmap = fsmap.free_map(img, size=48 << 20)
    assert fmap.known and fmap.fstype == 'ext' and fmap.fs_block_size == block_size, fmap.note
    total = (48 << 20) // BS
    # Most of a mostly empty volume is free; the 4 MiB of files and the metadata are not.
    assert total * 0.6 < fmap.free_blocks < total - (4 << 20) // BS
    _garble_free(img, fmap)
    fsck = subprocess.run(['e2fsck', '-fn', img], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    for name, digest in files.items():
        out = tmp_path / ('out-' + name)
        subprocess.run(['debugfs', '-R', 'dump /%s %s' % (name, out), img], capture_output=True, check=True)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest, name


def test_ext4_full_copy_leaves_free_blocks_as_holes(tmp_path):
    _need('mkfs.ext4', 'dumpe2fs', 'e2fsck')
    src, dummy = _tree(tmp_path)
    img = str(tmp_path / 'ext4.img')
    with open(img, 'wb') as f:
        f.truncate(32 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', str(src), img], check=True)
    fmap = fsmap.free_map(img, size=32 << 20)
    _garble_free(img, fmap)                 # old data in the free blocks
    dst = str(tmp_path / 'copy.img')
    stats = copy_mod.full_copy(img, dst, skip_runs=fmap.runs)
    assert stats.skipped_blocks == fmap.free_blocks
    assert os.stat(dst).st_blocks * 512 < 8 << 20       # the copy holds the data, not the junk
    fsck = subprocess.run(['e2fsck', '-fn', dst], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout
    # A verification of the copy against the source ignores exactly those blocks.
    bad = verify_mod.compare_runs(img, dst, [(0, (32 << 20) // BS)])
    assert bad and len(bad) == fmap.free_blocks
    others, free = verify_mod.mask_unallocated(bad, img)
    assert others == [] and len(free) == len(bad)
    others, free = verify_mod.mask_unallocated(bad + [0], img)     # block 0 (boot area) is not free
    assert others == [0]


def test_ext4_journal_needing_recovery_gives_no_map(tmp_path):
    _need('mkfs.ext4', 'dumpe2fs', 'debugfs')
    img = str(tmp_path / 'ext4.img')
    with open(img, 'wb') as f:
        f.truncate(16 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', img], check=True)
    subprocess.run(['debugfs', '-w', '-R', 'feature needs_recovery', img], capture_output=True, check=True)
    fmap = fsmap.free_map(img)
    assert not fmap.known and 'journal needs recovery' in fmap.note


def test_xfs_free_map_is_truly_free(tmp_path):
    _need('mkfs.xfs', 'xfs_db', 'xfs_logprint', 'xfs_repair')
    src, files = _tree(tmp_path)
    proto = tmp_path / 'proto'
    lines = ['/dev/null', '0 0', 'd--755 0 0']
    lines += ['%s ---644 0 0 %s' % (name, src / name) for name in sorted(files)]
    proto.write_text('\n'.join(lines + ['$', '']))
    img = str(tmp_path / 'xfs.img')
    with open(img, 'wb') as f:
        f.truncate(320 << 20)
    subprocess.run(['mkfs.xfs', '-q', '-f', '-p', str(proto), img], check=True)
    fmap = fsmap.free_map(img, size=320 << 20)
    assert fmap.known and fmap.fstype == 'xfs', fmap.note
    total = (320 << 20) // BS
    assert total * 0.6 < fmap.free_blocks < total - (4 << 20) // BS
    _garble_free(img, fmap)
    rep = subprocess.run(['xfs_repair', '-n', '-f', img], capture_output=True, text=True, check=False)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    if os.geteuid() != 0:
        return
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    if subprocess.run(['mount', '-o', 'loop,ro,norecovery', img, str(mnt)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip('cannot loop-mount here; the metadata check above passed')
    try:
        for name, digest in files.items():
            assert hashlib.sha256((mnt / name).read_bytes()).hexdigest() == digest, name
    finally:
        subprocess.run(['umount', str(mnt)], check=False)


# -- what a filesystem writes while it is mounted (mount_map) --------------------------------------

DEBUGFS_EXTENTS = '''Inode: 8   Type: regular    Mode:  0600   Flags: 0x80000
Size of extra inode fields: 32
EXTENTS:
(ETB0):39354367, (0-32767):39354368-39387135, (32768-65535):39387136-39419903, (65536):40000000
'''
DEBUGFS_BLOCKS = '''Inode: 8   Type: regular    Mode:  0600   Flags: 0x0
BLOCKS:
(0-11):1030-1041, (IND):1042, (12-1035):1043-2066, (DIND):2067, (IND):2068, (1036-1099):2069-2132
TOTAL: 1103
'''
DUMPE2FS_HEAD = '''Filesystem magic number:  0xEF53
Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super
Block size:               1024
Journal inode:            8
Journal backup:           inode blocks
'''
XFS_SB = '''blocksize = 4096
agblocks = 20000
agblklog = 15
agcount = 4
logstart = 65542
logblocks = 2560
'''


def test_parse_debugfs_blocks():
    assert fsmap.parse_debugfs_blocks(DEBUGFS_EXTENTS) == [
        (39354368, 39387135), (39387136, 39419903), (40000000, 40000000)]
    # Block-mapped (ext3): the indirect blocks are metadata, not journal data.
    assert fsmap.parse_debugfs_blocks(DEBUGFS_BLOCKS) == [(1030, 1041), (1043, 2066), (2069, 2132)]


@pytest.mark.parametrize('text, why', [
    ('Inode: 8\nSize: 0\n', 'no EXTENTS or BLOCKS'),
    ('EXTENTS:\n(ETB0):1234\n', 'no data blocks'),
    ('EXTENTS:\n(0-9):100-105\n', 'maps 10 logical blocks to 6'),
])
def test_parse_debugfs_blocks_refuses(text, why):
    with pytest.raises(ValueError, match=why):
        fsmap.parse_debugfs_blocks(text)


def test_parse_xfs_log():
    # logstart 65542 = AG 2 (65542 >> 15), block 6 of it; AGs are 20000 blocks, not 2^15.
    assert fsmap.parse_xfs_log(XFS_SB) == (4096, 40006, 2560, 20000, 4)
    with pytest.raises(ValueError, match='external device'):
        fsmap.parse_xfs_log(XFS_SB.replace('logstart = 65542', 'logstart = 0'))
    with pytest.raises(ValueError, match='no agblklog'):
        fsmap.parse_xfs_log(XFS_SB.replace('agblklog = 15\n', ''))
    with pytest.raises(ValueError, match='outside the allocation groups'):
        fsmap.parse_xfs_log(XFS_SB.replace('logblocks = 2560', 'logblocks = 19999'))


def test_mount_map_with_fake_tools(tmp_path):
    img = str(tmp_path / 'ext.img')
    _ext_image(img)
    seen = []
    outputs = {'dumpe2fs': DUMPE2FS_HEAD, 'debugfs': DEBUGFS_BLOCKS}

    def run(argv, timeout):
        seen.append(argv)
        return outputs[argv[0]]

    m = fsmap.mount_map(img, size=64 << 20, run=run)
    assert seen == [['dumpe2fs', '-h', img], ['debugfs', '-c', '-R', 'stat <8>', img]]
    # 1 KiB blocks: the superblock (bytes 1024-2047) is 4 KiB block 0; journal blocks 1030-2132 touch
    # 4 KiB blocks 257-533 (a partly covered 4 KiB block counts: the filesystem writes into it).
    assert m.known and m.fstype == 'ext' and m.note is None
    assert m.runs == [(0, 1), (257, 277)] and m.parts == {'superblock': 1, 'journal': 277}
    assert m.to_dict() == {'fstype': 'ext', 'known': True, 'blocks': 278,
                           'parts': {'superblock': 1, 'journal': 277}, 'note': None}

    outputs['dumpe2fs'] = DUMPE2FS_HEAD.replace('Journal inode:            8\n', 'Journal device:           0x0803\n')
    m = fsmap.mount_map(img, run=run)
    assert m.known and m.runs == [(0, 1)] and 'on another device' in m.note

    xfs = str(tmp_path / 'xfs.img')
    with open(xfs, 'wb') as f:
        f.write(b'XFSB' + bytes(8188))
    m = fsmap.mount_map(xfs, run=lambda argv, timeout: XFS_SB)
    # The first block of each AG (superblock copy, AGF, AGI, AGFL) and the log.
    assert m.runs == [(0, 1), (20000, 1), (40000, 1), (40006, 2560), (60000, 1)]
    assert m.parts == {'superblock': 4, 'log': 2560}


def test_mount_map_adds_the_cow_files_inode_and_extent_tree(tmp_path):
    img = str(tmp_path / 'ext.img')
    _ext_image(img)
    stat15 = ('Inode: 15   Type: regular\nEXTENTS:\n(ETB0):32833, (0-8):2384-2392, (9-64[u]):2393-2448\n')
    outputs = {('dumpe2fs',): DUMPE2FS_HEAD.replace('Block size:               1024', 'Block size:               4096'),
               ('debugfs', 'stat <8>'): 'EXTENTS:\n(0-4095):65536-69631\n',
               ('debugfs', 'imap <15>'): 'Inode 15 is part of block group 0\n\tlocated at block 1062, offset 0x0e00\n',
               ('debugfs', 'stat <15>'): stat15}

    def run(argv, timeout):
        return outputs[(argv[0],) if argv[0] == 'dumpe2fs' else (argv[0], argv[3])]

    m = fsmap.mount_map(img, run=run, inodes=[15])
    assert m.runs == [(0, 1), (1062, 1), (32833, 1), (65536, 4096)]
    assert m.parts == {'superblock': 1, 'journal': 4096, 'cow file': 2}
    outputs[('debugfs', 'imap <15>')] = 'imap: Illegal inode number'
    assert 'does not locate inode 15' in fsmap.mount_map(img, run=run, inodes=[15]).note

    xfs = str(tmp_path / 'xfs.img')
    with open(xfs, 'wb') as f:
        f.write(b'XFSB' + bytes(8188))

    def run_xfs(argv, timeout):
        return '0x20083 (131203)\n' if 'convert inode 131203 daddr' in argv else XFS_SB

    m = fsmap.mount_map(xfs, run=run_xfs, inodes=[131203])
    # Sector 131203 lies in 4 KiB block 16400.
    assert (16400, 1) in m.runs and m.parts['cow file'] == 1


def test_mount_map_never_raises(tmp_path):
    plain = tmp_path / 'plain'
    plain.write_bytes(os.urandom(8192))
    assert 'no ext2/3/4 or XFS superblock' in fsmap.mount_map(str(plain)).note
    assert 'cannot read the superblock' in fsmap.mount_map(str(tmp_path / 'missing')).note
    img = str(tmp_path / 'ext.img')
    _ext_image(img)

    def missing(argv, timeout):
        raise DattobdError('Cannot run debugfs: No such file or directory.')

    m = fsmap.mount_map(img, run=lambda argv, timeout: DUMPE2FS_HEAD if argv[0] == 'dumpe2fs' else missing(argv, 1))
    assert not m.known and m.blocks == 0 and 'Cannot run debugfs' in m.note
    assert 'no "Block size:"' in fsmap.mount_map(img, run=lambda argv, timeout: 'garbage').note


def _blocks_of(path):
    with open(path, 'rb') as f:
        data = f.read()
    return [data[i:i + BS] for i in range(0, len(data), BS)]


@pytest.mark.parametrize('fstype', ['ext4', 'xfs'])
def test_mount_writes_stay_inside_the_mount_map(tmp_path, fstype):
    """A real clean mount: every block it changes is in the map (the writes dattobd cannot track at boot).

    The filesystem is used first (files written, so the journal or log moved on) and unmounted
    cleanly, as a shutdown leaves it; then it is mounted again, as at boot, and compared.
    """
    _need('mkfs.' + fstype, 'dumpe2fs' if fstype == 'ext4' else 'xfs_db', 'debugfs' if fstype == 'ext4' else 'xfs_db')
    if os.geteuid() != 0:
        pytest.skip('mounting a loop device needs root')
    img = str(tmp_path / 'fs.img')
    with open(img, 'wb') as f:
        f.truncate(320 << 20)
    subprocess.run(['mkfs.' + fstype, '-q', '-F' if fstype == 'ext4' else '-f', img], check=True)
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    if subprocess.run(['mount', '-o', 'loop', img, str(mnt)], capture_output=True, check=False).returncode != 0:
        pytest.skip('cannot loop-mount here')
    try:
        for i in range(40):
            (mnt / ('f%d' % i)).write_bytes(os.urandom(20000))
            os.sync()
    finally:
        subprocess.run(['umount', str(mnt)], check=True)
    found = fsmap.mount_map(img, size=320 << 20)
    assert found.known and found.fstype == ('ext' if fstype == 'ext4' else 'xfs'), found.note
    inside = set()
    for start, n in found.runs:
        inside.update(range(start, start + n))
    assert found.blocks < (320 << 20) // BS // 4         # a small part of the volume
    before = _blocks_of(img)
    subprocess.run(['mount', '-o', 'loop', img, str(mnt)], check=True)
    try:
        mounted = _blocks_of(img)         # the loop device writes through to the file
    finally:
        subprocess.run(['umount', str(mnt)], check=True)
    changed = [i for i, (a, b) in enumerate(zip(before, mounted)) if a != b]
    assert changed, 'the mount wrote nothing (the test would prove nothing)'
    assert [i for i in changed if i not in inside] == []


def test_a_third_filesystem_is_one_class(tmp_path, monkeypatch):
    """Detection, the free map, the mount map and the 'no superblock' note all come from FILESYSTEMS."""
    class Toy(fsmap.Filesystem):
        name, label = 'toy', 'ToyFS'

        @classmethod
        def matches(cls, head):
            return head[:4] == b'TOY!'

        def free_ranges(self):
            return 4096, [(8192, 8192 * 2)]

        def mount_parts(self):
            return 4096, {'superblock': [(0, 100)]}, None

        def inode_ranges(self, ino, bsize):
            return [(ino * bsize, (ino + 1) * bsize)]
    img = tmp_path / 'toy.img'
    img.write_bytes(b'TOY!' + bytes(16 * 4096 - 4))
    monkeypatch.setattr(fsmap, 'FILESYSTEMS', fsmap.FILESYSTEMS + (Toy,))
    assert fsmap.detect(str(img)) == 'toy'
    free = fsmap.free_map(str(img), size=16 * 4096)
    assert (free.fstype, free.runs, free.fs_block_size) == ('toy', [(2, 2)], 4096)
    mounted = fsmap.mount_map(str(img), size=16 * 4096, inodes=(5,))
    assert mounted.runs == [(0, 1), (5, 1)] and mounted.parts == {'superblock': 1, 'cow file': 1}
    other = tmp_path / 'other.img'
    other.write_bytes(bytes(4096))
    assert fsmap.free_map(str(other)).note == 'no ext2/3/4 or ToyFS or XFS superblock on %s' % other
