# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Re-baseline by comparison (issue 23, item 6): the comparing copy engine (compare_copy.py) on real files.

Every test counts what reaches ``os.pwrite``: the point of the engine is that unchanged blocks are
never written (restore points sharing them through reflink keep sharing them, a network destination
receives only the difference).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import compare_copy as cc
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.copy import CopyError

B = 4096


def block(seed, i):
    return hashlib.sha256(b'%d-%d' % (seed, i)).digest() * (B // 32)


def make(path, blocks, tail=b''):
    with open(str(path), 'wb') as f:
        for data in blocks:
            f.write(data)
        f.write(tail)
    return str(path)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture
def writes(monkeypatch):
    """Every ``os.pwrite`` as ``(offset, length)``, in order."""
    seen = []
    real = os.pwrite

    def pwrite(fd, data, offset):
        seen.append((offset, len(data)))
        return real(fd, data, offset)

    monkeypatch.setattr(os, 'pwrite', pwrite)
    return seen


def written_blocks(seen):
    return sorted(set(b for off, n in seen for b in range(off // B, (off + n + B - 1) // B)))


@pytest.mark.parametrize('depth', [1, 8])
@pytest.mark.parametrize('buffer_size', [4 * B, 1 << 20])
def test_only_the_scattered_blocks_that_differ_are_written(tmp_path, writes, depth, buffer_size):
    n = 64
    changed = [3, 17, 18, 40, 63]
    src = make(tmp_path / 'snap', [block(2, i) if i in changed else block(1, i) for i in range(n)])
    img = make(tmp_path / 'img', [block(1, i) for i in range(n)])
    stats = cc.compare_copy(src, img, buffer_size=buffer_size, read_depth=depth)
    assert read(img) == read(src)
    assert written_blocks(writes) == changed
    assert sum(length for dummy, length in writes) == len(changed) * B
    assert (stats.blocks, stats.differing_blocks, stats.bytes, stats.errors) == (n, len(changed), len(changed) * B, 0)
    assert stats.to_dict()['blocks_read'] == n and stats.to_dict()['blocks_differing'] == len(changed)
    assert stats.to_dict()['bytes_written'] == len(changed) * B and stats.read_bytes == n * B
    # adjacent differing blocks (17, 18) go out with one write, in order
    assert [off for off, dummy in writes] == sorted(off for off, dummy in writes)
    if buffer_size > 4 * B:
        assert (17 * B, 2 * B) in writes


def test_an_identical_image_gets_no_write_at_all(tmp_path, writes):
    src = make(tmp_path / 'snap', [block(1, i) for i in range(32)])
    img = make(tmp_path / 'img', [block(1, i) for i in range(32)])
    stats = cc.compare_copy(src, img)
    assert writes == [] and stats.bytes == 0 and stats.differing_blocks == 0 and stats.blocks == 32


def test_zero_blocks_of_the_source_are_written_over_data_and_holes_stay_holes(tmp_path, writes):
    zero = bytes(B)
    src = make(tmp_path / 'snap', [zero, block(1, 1), zero, zero])
    img = make(tmp_path / 'img', [block(9, 0), block(1, 1), zero, zero])
    os.truncate(img, 0)
    with open(img, 'r+b') as f:  # blocks 2-3 a hole of the sparse image: equal to the zero blocks
        f.write(block(9, 0) + block(1, 1))
    os.truncate(img, 4 * B)
    stats = cc.compare_copy(src, img)
    assert read(img) == read(src)
    assert written_blocks(writes) == [0] and stats.differing_blocks == 1


def test_a_partial_last_block_is_compared_and_written_short(tmp_path, writes):
    src = make(tmp_path / 'snap', [block(1, 0), block(1, 1)], tail=b'new tail')
    img = make(tmp_path / 'img', [block(1, 0), block(1, 1)], tail=b'old tail')
    stats = cc.compare_copy(src, img)
    assert read(img) == read(src)
    assert writes == [(2 * B, 8)] and stats.bytes == 8 and stats.blocks == 3


@pytest.mark.parametrize('img_blocks', [15, 17])
def test_an_image_of_another_size_is_refused_with_nothing_written(tmp_path, writes, img_blocks):
    src = make(tmp_path / 'snap', [block(1, i) for i in range(16)])
    img = make(tmp_path / 'img', [block(2, i) for i in range(img_blocks)])
    before = read(img)
    with pytest.raises(CopyError, match='only an image of the same size can be compared'):
        cc.compare_copy(src, img)
    assert writes == [] and read(img) == before


def test_skipped_runs_are_neither_read_nor_written(tmp_path, writes, monkeypatch):
    src = make(tmp_path / 'snap', [block(2, i) for i in range(16)])
    img = make(tmp_path / 'img', [block(1, i) for i in range(16)])
    reads = []
    real = os.pread

    def pread(fd, n, offset):
        reads.append((offset, n))
        return real(fd, n, offset)

    monkeypatch.setattr(os, 'pread', pread)
    stats = cc.compare_copy(src, img, skip_runs=[(0, 4), (10, 6)], read_depth=1)
    assert written_blocks(writes) == list(range(4, 10))
    assert all(4 * B <= off and off + n <= 10 * B for off, n in reads)
    assert stats.skipped_blocks == 10 and stats.blocks == 6


def test_a_source_block_that_cannot_be_read_is_counted_and_the_others_still_written(tmp_path, writes, monkeypatch):
    src = make(tmp_path / 'snap', [block(2, i) if i in (1, 6) else block(1, i) for i in range(8)])
    img = make(tmp_path / 'img', [block(1, i) for i in range(8)])
    real = os.pread
    src_ino = os.stat(src).st_ino

    def pread(fd, n, offset):
        if os.fstat(fd).st_ino == src_ino and offset <= 4 * B < offset + n:
            raise OSError(errno.EIO, 'Input/output error')
        return real(fd, n, offset)

    monkeypatch.setattr(os, 'pread', pread)
    with pytest.raises(CopyError) as info:
        cc.compare_copy(src, img, read_depth=1)
    assert info.value.details['errors'] == 1 and info.value.details['error_blocks'] == [4]
    assert 'block 4: Input/output error (EIO)' in info.value.msg
    assert written_blocks(writes) == [1, 6]


def test_an_image_block_that_cannot_be_read_is_written_from_the_source(tmp_path, writes, monkeypatch):
    src = make(tmp_path / 'snap', [block(1, i) for i in range(8)])
    img = make(tmp_path / 'img', [block(1, i) for i in range(8)])
    real = os.pread
    img_ino = os.stat(img).st_ino

    def pread(fd, n, offset):
        if os.fstat(fd).st_ino == img_ino and offset <= 5 * B < offset + n:
            raise OSError(errno.EIO, 'Input/output error')
        return real(fd, n, offset)

    monkeypatch.setattr(os, 'pread', pread)
    stats = cc.compare_copy(src, img, read_depth=1)
    assert written_blocks(writes) == [5] and stats.errors == 0 and read(img) == read(src)


@pytest.mark.parametrize('depth', [1, 8])
def test_an_interruption_leaves_an_image_a_second_comparison_completes(tmp_path, writes, depth):
    n = 64
    changed = list(range(0, n, 5))
    src = make(tmp_path / 'snap', [block(2, i) if i in changed else block(1, i) for i in range(n)])
    img = make(tmp_path / 'img', [block(1, i) for i in range(n)])

    def stop(stats):
        if stats.blocks >= 16:
            raise KeyboardInterrupt('stop')

    with pytest.raises(KeyboardInterrupt):
        cc.compare_copy(src, img, buffer_size=8 * B, progress=stop, read_depth=depth)
    first = written_blocks(writes)
    assert first and first == [b for b in changed if b < 16] and read(img) != read(src)
    del writes[:]
    stats = cc.compare_copy(src, img, buffer_size=8 * B, read_depth=depth)
    assert read(img) == read(src)
    assert written_blocks(writes) == [b for b in changed if b >= 16]
    assert stats.differing_blocks == len(changed) - len(first)
