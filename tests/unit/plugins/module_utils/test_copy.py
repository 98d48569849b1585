# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of module_utils/_dattobd/copy.py: every method, clipping, error accounting, sparse full copy."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os

import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as cp
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as verify_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

B = 4096


def make_file(path, nblocks, seed, tail=0):
    """A file of ``nblocks`` distinct blocks (block i starts with its number and the seed)."""
    with open(path, 'wb') as f:
        for i in range(nblocks):
            f.write(hashlib.sha256(b'%d-%d' % (seed, i)).digest() * (B // 32))
        if tail:
            f.write(b'T' * tail)
    return path


def blocks_of(path):
    with open(path, 'rb') as f:
        data = f.read()
    return [data[i:i + B] for i in range(0, len(data), B)]


def expected(src, dst_before, runs):
    out = list(dst_before)
    for s, n in runs:
        for b in range(s, min(s + n, len(src))):
            out[b] = src[b]
    return out


@pytest.mark.parametrize('method', ['auto', 'pread', 'sendfile', 'copy_file_range'])
@pytest.mark.parametrize('buffer_size', [B, 3 * B, 1 << 20])
def test_copy_runs_every_method(tmp_path, method, buffer_size):
    src = make_file(str(tmp_path / 'src'), 300, 1)
    dst = make_file(str(tmp_path / 'dst'), 300, 2)
    before = blocks_of(dst)
    runs = [(0, 1), (5, 7), (100, 150), (299, 1)]
    calls = []
    stats = cp.copy_runs(src, dst, runs, method=method, buffer_size=buffer_size, progress=lambda s: calls.append(s.runs))
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert (stats.blocks, stats.runs, stats.bytes, stats.errors) == (159, 4, 159 * B, 0)
    assert calls == [1, 2, 3, 4]
    # without readahead the result is the same
    cp.copy_runs(src, dst, runs, method=method, buffer_size=buffer_size, readahead=0)
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    d = stats.to_dict()
    assert d['method'] == method and d['error_blocks'] == []


def test_copy_runs_clips_past_end_and_partial_tail(tmp_path):
    src = make_file(str(tmp_path / 'src'), 10, 1, tail=100)  # 10 blocks + 100 bytes
    dst = make_file(str(tmp_path / 'dst'), 10, 2, tail=100)
    stats = cp.copy_runs(src, dst, [(9, 5), (20, 3), (3, 0)])
    with open(src, 'rb') as a, open(dst, 'rb') as b:
        assert a.read()[9 * B:] == b.read()[9 * B:]
    assert (stats.blocks, stats.bytes, stats.runs) == (2, B + 100, 1)


def test_copy_runs_with_fds_and_validation(tmp_path):
    src = make_file(str(tmp_path / 'src'), 4, 1)
    dst = make_file(str(tmp_path / 'dst'), 4, 2)
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_WRONLY)
    try:
        cp.copy_runs(sfd, dfd, [(1, 2)], fsync=False)
        os.fstat(sfd)  # fds we passed stay open
        os.fstat(dfd)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert blocks_of(dst)[1:3] == blocks_of(src)[1:3]
    with pytest.raises(DattobdError, match='Unknown copy method'):
        cp.copy_runs(src, dst, [], method='mmap')
    with pytest.raises(DattobdError, match='multiple of 4096'):
        cp.copy_runs(src, dst, [], buffer_size=1000)
    with pytest.raises(OSError):
        cp.copy_runs(src, str(tmp_path / 'nodir' / 'x'), [])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changed=st.sets(st.integers(min_value=0, max_value=199), max_size=120),
       buffer_blocks=st.sampled_from([1, 2, 5, 64]))
def test_property_random_change_sets(tmp_path, changed, buffer_blocks):
    src = make_file(str(tmp_path / 'src'), 200, 7)
    dst = make_file(str(tmp_path / 'dst'), 200, 8)
    before = blocks_of(dst)
    runs = []
    for b in sorted(changed):
        if runs and runs[-1][0] + runs[-1][1] == b:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    stats = cp.copy_runs(src, dst, runs, buffer_size=buffer_blocks * B)
    after = blocks_of(dst)
    s = blocks_of(src)
    assert [i for i in range(200) if after[i] != before[i]] == sorted(changed)
    assert all(after[i] == s[i] for i in changed)
    assert stats.blocks == len(changed)


class FailingReads(object):
    """Make reads of the given blocks fail with EIO (as a failed dattobd snapshot does)."""

    def __init__(self, monkeypatch, bad, err=errno.EIO):
        self.bad = set(bad)
        real_preadv, real_sendfile, real_pread = os.preadv, os.sendfile, os.pread

        def pread(fd, n, offset):
            if any(offset // B <= b < (offset + n + B - 1) // B for b in self.bad):
                raise OSError(err, os.strerror(err))
            return real_pread(fd, n, offset)

        def preadv(fd, bufs, offset):
            length = sum(len(b) for b in bufs)
            if any(offset // B <= b < (offset + length + B - 1) // B for b in self.bad):
                raise OSError(err, os.strerror(err))
            return real_preadv(fd, bufs, offset)

        def sendfile(out_fd, in_fd, offset, count):
            if any(offset // B <= b < (offset + count + B - 1) // B for b in self.bad):
                raise OSError(err, os.strerror(err))
            return real_sendfile(out_fd, in_fd, offset, count)

        monkeypatch.setattr(os, 'preadv', preadv)
        monkeypatch.setattr(os, 'sendfile', sendfile)
        monkeypatch.setattr(os, 'pread', pread)


@pytest.mark.parametrize('method', ['pread', 'sendfile'])
def test_read_errors_are_counted_and_fail(tmp_path, monkeypatch, method):
    src = make_file(str(tmp_path / 'src'), 64, 1)
    dst = make_file(str(tmp_path / 'dst'), 64, 2)
    FailingReads(monkeypatch, [10, 40, 41])
    with pytest.raises(cp.CopyError, match=r'3 block\(s\) could not be copied .*block 10: Input/output error') as info:
        cp.copy_runs(src, dst, [(0, 64)], method=method, buffer_size=16 * B)
    res = info.value.to_result()
    assert res['errors'] == 3 and res['error_blocks'] == [10, 40, 41] and res['blocks'] == 64
    # the good blocks were still copied
    after, s = blocks_of(dst), blocks_of(src)
    assert [i for i in range(64) if after[i] != s[i]] == [10, 40, 41]


def test_short_read_inside_device_is_an_error(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 8, 1)
    dst = make_file(str(tmp_path / 'dst'), 8, 2)
    monkeypatch.setattr(os, 'preadv', lambda fd, bufs, off: 0)
    monkeypatch.setattr(os, 'pread', lambda fd, n, off: b'x' * (n - 1))
    with pytest.raises(cp.CopyError, match='short read'):
        cp.copy_runs(src, dst, [(0, 1)], src_size=8 * B)
    with pytest.raises(cp.CopyError, match='short read'):
        cp.copy_runs(src, dst, [(0, 32)], src_size=8 * B)


def test_write_error_and_fsync_error(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 8, 1)
    dst = make_file(str(tmp_path / 'dst'), 8, 2)

    def failing_fsync(fd):
        raise OSError(errno.EIO, 'boom')
    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(cp.CopyError, match='fsync of .* failed'):
        cp.copy_runs(src, dst, [(0, 1)])
    with pytest.raises(cp.CopyError, match='fsync of'):
        cp.full_copy(src, str(tmp_path / 'full'))
    monkeypatch.undo()
    monkeypatch.setattr(os, 'pwrite', lambda fd, data, off: 0)
    with pytest.raises(cp.CopyError, match='short write'):
        cp.copy_runs(src, dst, [(0, 2)])
    with pytest.raises(cp.CopyError, match='short write'):
        cp.full_copy(src, str(tmp_path / 'full2'), sparse=False)


def test_error_list_is_capped_but_count_exact(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 64, 1)
    dst = make_file(str(tmp_path / 'dst'), 64, 2)
    FailingReads(monkeypatch, range(64))
    with pytest.raises(cp.CopyError) as info:
        cp.copy_runs(src, dst, [(0, 64)])
    assert info.value.details['errors'] == 64 and len(info.value.details['error_blocks']) == cp.MAX_LISTED_ERRORS


# --- full_copy ----------------------------------------------------------------------------------

def test_full_copy_sparse_writes_holes(tmp_path):
    src = str(tmp_path / 'src')
    data = bytearray(64 * B + 123)
    for b in (0, 1, 9, 30, 31, 32, 63):
        data[b * B:b * B + 5] = b'data%d' % (b % 10)
    data[-3:] = b'end'
    with open(src, 'wb') as f:
        f.write(data)
    dst = str(tmp_path / 'dst')
    make_file(dst, 100, 3)  # an old, larger file is replaced entirely
    stats = cp.full_copy(src, dst, buffer_size=8 * B)
    with open(dst, 'rb') as f:
        assert f.read() == bytes(data)
    assert stats.zero_blocks == 57 and stats.blocks == 65 and stats.bytes == 7 * B + 123
    assert stats.read_bytes == len(data)  # the whole source is read, holes included
    assert os.stat(dst).st_blocks * 512 <= 16 * B  # holes: only ~8 blocks allocated
    dense = str(tmp_path / 'dense')
    s2 = cp.full_copy(src, dense, sparse=False)
    assert s2.zero_blocks == 0 and s2.bytes == len(data)
    assert os.stat(dense).st_mode & 0o777 == 0o600
    with open(dense, 'rb') as f:
        assert f.read() == bytes(data)


def test_full_copy_counts_read_errors(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 40, 1)
    FailingReads(monkeypatch, [3, 33])
    dst = str(tmp_path / 'dst')
    with pytest.raises(cp.CopyError, match=r'2 block\(s\)') as info:
        cp.full_copy(src, dst, buffer_size=8 * B, progress=lambda s: None)
    assert info.value.details['error_blocks'] == [3, 33]


def test_full_copy_validation(tmp_path):
    src = make_file(str(tmp_path / 'src'), 2, 1)
    with pytest.raises(DattobdError, match='multiple of 4096'):
        cp.full_copy(src, str(tmp_path / 'd'), buffer_size=100)
    with pytest.raises(OSError):
        cp.full_copy(src, str(tmp_path / 'nodir' / 'd'))
    with pytest.raises(OSError):
        cp.full_copy(str(tmp_path / 'missing'), str(tmp_path / 'd'))


def test_compare_runs(tmp_path):
    a = make_file(str(tmp_path / 'a'), 20, 1)
    b = str(tmp_path / 'b')
    with open(a, 'rb') as f, open(b, 'wb') as g:
        data = bytearray(f.read())
        data[5 * B] ^= 1
        data[17 * B + 7] ^= 1
        g.write(data)
    assert verify_mod.compare_runs(a, b, [(0, 20)], buffer_size=8 * B) == [5, 17]
    assert verify_mod.compare_runs(a, b, [(6, 10)]) == []
    with pytest.raises(OSError):
        verify_mod.compare_runs(a, str(tmp_path / 'missing'), [])
    assert cp.size_of(a) == 20 * B
    assert cp.CopyStats('pread').mb_per_s is None


# --- gap merging: one read for nearby runs, only changed blocks written ----------------------------

SCATTER = [(1, 1), (3, 2), (9, 1), (30, 1), (31 + 9, 3)]


def test_nearby_runs_are_read_together_but_gaps_not_written(tmp_path):
    src = make_file(str(tmp_path / 'src'), 64, 1)
    dst = make_file(str(tmp_path / 'dst'), 64, 2)
    before = blocks_of(dst)
    merged = cp.copy_runs(src, dst, SCATTER, merge_gap=8)
    assert blocks_of(dst) == expected(blocks_of(src), before, SCATTER)
    # spans: [1..9] (read 9 blocks), [30] alone (gap 20 > 8 from 9), [40..42] (gap 9 > 8)
    assert merged.read_bytes == (9 + 1 + 3) * B and (merged.blocks, merged.runs) == (8, 5)
    dst2 = make_file(str(tmp_path / 'dst2'), 64, 2)
    plain = cp.copy_runs(src, dst2, SCATTER, merge_gap=0)
    assert plain.read_bytes == 8 * B and blocks_of(dst2) == blocks_of(dst)
    assert cp.copy_runs(src, dst2, SCATTER, merge_gap=100, buffer_size=4 * B).read_bytes == (4 + 1 + 1 + 3) * B


def test_unreadable_gap_block_is_not_an_error(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 64, 1)
    dst = make_file(str(tmp_path / 'dst'), 64, 2)
    before = blocks_of(dst)
    FailingReads(monkeypatch, [2, 6])  # inside the first span, but not changed blocks
    stats = cp.copy_runs(src, dst, SCATTER)
    assert stats.errors == 0 and blocks_of(dst) == expected(blocks_of(src), before, SCATTER)


def test_unreadable_member_of_a_span_is_counted(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 64, 1)
    dst = make_file(str(tmp_path / 'dst'), 64, 2)
    FailingReads(monkeypatch, [2, 4])
    with pytest.raises(cp.CopyError) as info:
        cp.copy_runs(src, dst, SCATTER)
    assert info.value.details['error_blocks'] == [4]
    after, s = blocks_of(dst), blocks_of(src)
    assert [b for b in (1, 3, 4, 9) if after[b] == s[b]] == [1, 3, 9]


def test_write_error_in_a_span_is_counted(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 64, 1)
    dst = make_file(str(tmp_path / 'dst'), 64, 2)
    real = os.pwrite

    def pwrite(fd, data, off):
        if off == 3 * B:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(fd, data, off)

    monkeypatch.setattr(os, 'pwrite', pwrite)
    with pytest.raises(cp.CopyError, match='No space left') as info:
        cp.copy_runs(src, dst, SCATTER)
    assert info.value.details['error_blocks'] == [3]


# --- auto: sendfile for large single pieces, pread otherwise ---------------------------------------

def _count_calls(monkeypatch, name, fail_errno=None):
    calls = []
    real = getattr(os, name)

    def wrapper(*a):
        calls.append(a)
        if fail_errno is not None:
            raise OSError(fail_errno, os.strerror(fail_errno))
        return real(*a)
    monkeypatch.setattr(os, name, wrapper)
    return calls


def test_auto_uses_sendfile_for_large_pieces_only(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 200, 1)
    dst = make_file(str(tmp_path / 'dst'), 200, 2)
    before = blocks_of(dst)
    calls = _count_calls(monkeypatch, 'sendfile')
    runs = [(0, 1), (50, 40), (150, 2)]
    cp.copy_runs(src, dst, runs, read_depth=1)  # with reads in flight, pieces up to POOL_SPAN go to the threads
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert [c[2] for c in calls] == [50 * B]  # only the 160 KiB run went through sendfile


@pytest.mark.parametrize('err', [errno.EINVAL, errno.ENOSYS])
def test_auto_falls_back_to_pread_when_sendfile_is_refused(tmp_path, monkeypatch, err):
    src = make_file(str(tmp_path / 'src'), 200, 1)
    dst = make_file(str(tmp_path / 'dst'), 200, 2)
    before = blocks_of(dst)
    calls = _count_calls(monkeypatch, 'sendfile', fail_errno=err)
    runs = [(0, 20), (50, 40), (120, 30)]
    stats = cp.copy_runs(src, dst, runs, read_depth=1)
    assert stats.errors == 0 and blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert len(calls) == 1  # refused once, never tried again


def test_auto_sendfile_io_error_is_counted_per_block(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 100, 1)
    dst = make_file(str(tmp_path / 'dst'), 100, 2)
    FailingReads(monkeypatch, [60])
    with pytest.raises(cp.CopyError) as info:
        cp.copy_runs(src, dst, [(40, 40)], read_depth=1)
    assert info.value.details['error_blocks'] == [60] and info.value.details['method'] == 'auto'


def test_hole_bytes_counts_only_blocks_in_holes(tmp_path):
    path = str(tmp_path / 'sparse.img')
    bs = cp.BLOCK_SIZE
    with open(path, 'wb') as handle:
        handle.truncate(64 * bs)
        handle.seek(16 * bs)
        handle.write(b'x' * (16 * bs))  # blocks 16-31 allocated
    holes = sync_mod.hole_bytes(path, [(0, 4), (14, 4), (20, 2), (62, 4)])
    if holes is None:
        pytest.skip('no SEEK_DATA on this filesystem')
    # (0,4) all hole; (14,4) = 14,15 hole + 16,17 data; (20,2) data; (62,4) = 62,63 hole, 64,65 past the end
    assert holes == (4 + 2 + 2) * bs or holes == 0  # 0 where the filesystem reports no holes at all
    assert sync_mod.hole_bytes(path, []) == 0


def test_free_bytes(tmp_path):
    assert sync_mod.free_bytes(str(tmp_path)) > 0
