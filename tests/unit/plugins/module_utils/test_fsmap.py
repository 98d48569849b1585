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
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_mod
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


@pytest.mark.parametrize('runs, n, expected', [
    ([], 10, [(0, 10)]),
    ([(0, 10)], 10, []),
    ([(2, 3)], 10, [(0, 2), (5, 5)]),
    ([(0, 1), (9, 5)], 10, [(1, 8)]),
    ([(12, 2)], 10, [(0, 10)]),
])
def test_complement(runs, n, expected):
    assert list(copy_mod.complement(runs, n)) == expected


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
    bad = copy_mod.compare_runs(img, dst, [(0, (32 << 20) // BS)])
    assert bad and len(bad) == fmap.free_blocks
    others, free = sync_mod.mask_unallocated(bad, img)
    assert others == [] and len(free) == len(bad)
    others, free = sync_mod.mask_unallocated(bad + [0], img)     # block 0 (boot area) is not free
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
