# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reads in flight (copy.copy_runs read_depth): the same image, writes in order, every error counted,
threads joined, memory bounded; depth 1 is the single-threaded engine."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import random
import threading
import time

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as cp
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import readpool
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from .test_copy import B, blocks_of, expected, make_file

# Scattered single blocks and short runs (pooled), plus one run above POOL_SPAN (not pooled).
SCATTERED = [(1, 1), (5, 2), (20, 1), (33, 3), (50, 1), (70, 1), (90, 4), (120, 1), (121 + 10, 1), (200, 1)]


@pytest.fixture(autouse=True)
def threads_read_every_span(monkeypatch):
    """The pool's mechanics are tested with its threads reading every scattered span (no adaptive choice:
    copy_runs gets no DepthProbe); the adaptive choice has its own tests (``_adaptive``) at the end."""
    monkeypatch.setattr(cp, 'DepthProbe', lambda: None)


def _pool_threads():
    return [t for t in threading.enumerate() if t is not threading.main_thread()]


def _runs_with_big(nblocks):
    big = cp.POOL_SPAN // B + 8
    return SCATTERED + [(300, big)] + [(300 + big + 20, 1)], 300 + big + 40


class Recorder(object):
    """Wraps os.pread/os.preadv/os.pwrite: which thread read, the order of writes, reads in flight."""

    def __init__(self, monkeypatch, delay=None, fail_reads=(), fail_writes=(), worker_only=False):
        self.lock = threading.Lock()
        self.read_threads = set()
        self.writes = []
        self.write_threads = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.failed_in = []
        real_pread, real_preadv, real_pwrite = os.pread, os.preadv, os.pwrite

        def bad(offset, length, blocks):
            return any(offset // B <= b < (offset + length + B - 1) // B for b in blocks)

        def pread(fd, n, offset):
            with self.lock:
                self.read_threads.add(threading.current_thread().name)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if delay:
                    time.sleep(delay())
                worker = threading.current_thread() is not threading.main_thread()
                if bad(offset, n, fail_reads) and (worker or not worker_only):
                    self.failed_in.append(threading.current_thread().name)
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                return real_pread(fd, n, offset)
            finally:
                with self.lock:
                    self.in_flight -= 1

        def preadv(fd, bufs, offset):
            if not worker_only and bad(offset, sum(len(b) for b in bufs), fail_reads):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_preadv(fd, bufs, offset)

        def pwrite(fd, data, offset):
            self.write_threads.add(threading.current_thread().name)
            if bad(offset, len(data), fail_writes):
                raise OSError(errno.ENOSPC, 'No space left on device')
            self.writes.append(offset)
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, 'pread', pread)
        monkeypatch.setattr(os, 'preadv', preadv)
        monkeypatch.setattr(os, 'pwrite', pwrite)


@pytest.mark.parametrize('value', [1, 2, 16, 64, '1', '64', '08', b'8'])
def test_check_read_depth_accepts(value):
    assert cp.check_read_depth(value) == int(value)


@pytest.mark.parametrize('value', [0, 65, -1, '0', '65', '', None, True, False, 3.0, '3.0', '1e1', u'\u0663',
                                   u'\uff18', '1_0', '+4', '-4', ' 8 ', '9' * 5000, [4], b'x'])
def test_check_read_depth_refuses(value, tmp_path):
    src = make_file(str(tmp_path / 'src'), 8, 1)
    dst = make_file(str(tmp_path / 'dst'), 8, 2)
    before = blocks_of(dst)
    with pytest.raises(DattobdError, match='read_depth must be an integer 1..64'):
        cp.check_read_depth(value)
    with pytest.raises(DattobdError, match='read_depth'):
        cp.copy_runs(src, dst, [(0, 8)], read_depth=value)
    assert blocks_of(dst) == before  # refused before a byte is read or written


@pytest.mark.parametrize('depth', [1, 2, 4, 16, 64])
@pytest.mark.parametrize('merge_gap', [0, cp.DEFAULT_MERGE_GAP])
def test_every_depth_gives_the_same_image_and_counters(tmp_path, depth, merge_gap):
    runs, nblocks = _runs_with_big(0)
    src = make_file(str(tmp_path / 'src'), nblocks, 1)
    dst = make_file(str(tmp_path / 'dst'), nblocks, 2)
    before = blocks_of(dst)
    calls = []
    stats = cp.copy_runs(src, dst, runs, read_depth=depth, merge_gap=merge_gap, progress=lambda s: calls.append(s.runs))
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    n = sum(c for dummy, c in runs)
    assert (stats.blocks, stats.bytes, stats.runs, stats.errors) == (n, n * B, len(runs), 0)
    assert calls == list(range(1, len(runs) + 1))
    assert not _pool_threads()


def test_depth_1_reads_in_the_calling_thread_only(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)
    rec = Recorder(monkeypatch)
    cp.copy_runs(src, dst, SCATTERED, read_depth=1)
    assert rec.read_threads == {threading.main_thread().name}
    rec2 = Recorder(monkeypatch)
    cp.copy_runs(src, dst, SCATTERED, read_depth=8)
    assert threading.main_thread().name not in rec2.read_threads and rec2.read_threads
    # writes always come from the calling thread, in the change list's order
    assert rec2.write_threads == {threading.main_thread().name}


def test_reads_are_really_in_flight_together(tmp_path, monkeypatch):
    """Four reads must be blocked at once for any of them to return (a barrier); one at a time would fail."""
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)
    barrier = threading.Barrier(4, timeout=10)
    real = os.pread
    state = {'n': 0}

    def pread(fd, n, offset):
        state['n'] += 1
        if state['n'] <= 4:
            barrier.wait()  # BrokenBarrierError (a failed copy) unless 4 reads are waiting together
        return real(fd, n, offset)

    monkeypatch.setattr(os, 'pread', pread)
    monkeypatch.setattr(readpool, 'BATCH_SPANS', 1)  # one span per task: four tasks must run at once
    runs = [(i * 10, 1) for i in range(20)]
    before = blocks_of(dst)
    cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0)
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)


def test_writes_keep_the_change_list_order_when_reads_finish_out_of_order(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 512, 1)
    dst = make_file(str(tmp_path / 'dst'), 512, 2)
    rnd = random.Random(7)
    runs = sorted((b, 1) for b in rnd.sample(range(512), 120))
    rec = Recorder(monkeypatch, delay=lambda: rnd.random() * 0.003)
    before = blocks_of(dst)
    cp.copy_runs(src, dst, runs, read_depth=16, merge_gap=0)
    assert rec.writes == [b * B for b, dummy in runs]
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert 1 < rec.max_in_flight <= 16


def test_reads_ahead_of_the_writes_are_bounded(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 1024, 1)
    dst = make_file(str(tmp_path / 'dst'), 1024, 2)
    runs = [(i * 3, 1) for i in range(300)]
    events = []
    real_pread, real_pwrite = os.pread, os.pwrite
    lock = threading.Lock()

    def pread(fd, n, offset):
        with lock:
            events.append('r')
        return real_pread(fd, n, offset)

    def pwrite(fd, data, offset):
        with lock:
            events.append('w')
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, 'pread', pread)
    monkeypatch.setattr(os, 'pwrite', pwrite)
    cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0)
    ahead = peak = 0
    for e in events:
        ahead += 1 if e == 'r' else -1
        peak = max(peak, ahead)
    assert events.count('r') == events.count('w') == 300
    # at most 2 * depth batches read and not yet written (plus the one being written)
    assert peak <= (2 * 4 + 1) * readpool.BATCH_SPANS
    # and by bytes: INFLIGHT_BYTES caps big spans
    monkeypatch.setattr(readpool, 'INFLIGHT_BYTES', 2 * B)  # then at most one batch waits to be written
    del events[:]
    cp.copy_runs(src, dst, runs, read_depth=16, merge_gap=0)
    ahead = peak = 0
    for e in events:
        ahead += 1 if e == 'r' else -1
        peak = max(peak, ahead)
    assert peak <= 2 * readpool.BATCH_SPANS and events.count('w') == 300


def test_read_error_in_a_worker_fails_the_copy_with_every_block_counted(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)
    before = blocks_of(dst)
    rec = Recorder(monkeypatch, fail_reads=[20, 34, 200])
    with pytest.raises(cp.CopyError, match=r'3 block\(s\) could not be copied') as info:
        cp.copy_runs(src, dst, SCATTERED, read_depth=8, merge_gap=0)
    assert info.value.details['error_blocks'] == [20, 34, 200]
    assert rec.failed_in[0] != threading.main_thread().name  # the first failure was in a read thread
    # every good block is still copied, the bad ones keep their old content
    want = expected(blocks_of(src), before, SCATTERED)
    for b in (20, 34, 200):
        want[b] = before[b]
    assert blocks_of(dst) == want
    assert not _pool_threads()


def test_transient_worker_read_error_is_redone_by_the_careful_path(tmp_path, monkeypatch):
    """A read that fails only in the worker is redone in order by the careful path: same result as depth 1."""
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)
    before = blocks_of(dst)
    rec = Recorder(monkeypatch, fail_reads=[5, 90], worker_only=True)
    stats = cp.copy_runs(src, dst, SCATTERED, read_depth=8)
    assert rec.failed_in and stats.errors == 0
    assert blocks_of(dst) == expected(blocks_of(src), before, SCATTERED)
    assert rec.writes == sorted(rec.writes)


def test_write_error_fails_the_copy_and_later_writes_stay_in_order(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)
    rec = Recorder(monkeypatch, fail_writes=[34])
    with pytest.raises(cp.CopyError, match='No space left') as info:
        cp.copy_runs(src, dst, SCATTERED, read_depth=8, merge_gap=0)
    assert info.value.details['error_blocks'] == [34]
    # the writes that landed are in the change list's order (the failed block retried in its place)
    assert rec.writes == sorted(rec.writes)
    assert 35 * B in rec.writes and 120 * B in rec.writes  # the copy went on and counted, as at depth 1
    assert not _pool_threads()


def test_fsync_error_with_threads(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)

    def failing_fsync(fd):
        raise OSError(errno.EIO, 'Input/output error')
    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(cp.CopyError, match='fsync'):
        cp.copy_runs(src, dst, SCATTERED, read_depth=8)
    assert not _pool_threads()


@pytest.mark.parametrize('where', ['worker', 'progress'])
def test_unexpected_exception_joins_the_threads_before_closing_the_files(tmp_path, monkeypatch, where):
    src = make_file(str(tmp_path / 'src'), 512, 1)
    dst = make_file(str(tmp_path / 'dst'), 512, 2)
    runs = [(i * 4, 1) for i in range(100)]
    closed = []
    real_close, real_pread = os.close, os.pread
    started = threading.Event()

    def pread(fd, n, offset):
        started.set()
        if where == 'worker' and offset == 40 * B:
            raise MemoryError('injected')
        time.sleep(0.001)
        return real_pread(fd, n, offset)

    def close(fd):
        closed.append((fd, len(_pool_threads())))
        return real_close(fd)

    def progress(stats):
        if where == 'progress' and stats.runs == 5:
            raise KeyboardInterrupt()

    monkeypatch.setattr(os, 'pread', pread)
    monkeypatch.setattr(os, 'close', close)
    exc = MemoryError if where == 'worker' else KeyboardInterrupt
    with pytest.raises(exc):
        cp.copy_runs(src, dst, runs, read_depth=8, merge_gap=0, progress=progress)
    assert started.is_set()
    assert len(closed) == 2 and all(alive == 0 for dummy, alive in closed)
    assert not _pool_threads()


def test_large_pieces_keep_sendfile_with_threads(tmp_path, monkeypatch):
    runs, nblocks = _runs_with_big(0)
    src = make_file(str(tmp_path / 'src'), nblocks, 1)
    dst = make_file(str(tmp_path / 'dst'), nblocks, 2)
    calls = []
    real = os.sendfile

    def sendfile(*a):
        calls.append((threading.current_thread().name, a[2], a[3]))
        return real(*a)
    monkeypatch.setattr(os, 'sendfile', sendfile)
    before = blocks_of(dst)
    cp.copy_runs(src, dst, runs, read_depth=16)
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert [c[1] for c in calls] == [300 * B]
    assert calls[0][0] == threading.main_thread().name


def test_with_threads_every_span_is_still_announced_ahead_of_its_read(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 256, 1)
    dst = make_file(str(tmp_path / 'dst'), 256, 2)
    events = []
    real_fadvise, real_pread = os.posix_fadvise, os.pread
    lock = threading.Lock()

    def fadvise(fd, off, n, advice):
        if advice == os.POSIX_FADV_WILLNEED:
            with lock:
                events.append(('advise', off))
        return real_fadvise(fd, off, n, advice)

    def pread(fd, n, off):
        with lock:
            events.append(('read', off))
        return real_pread(fd, n, off)

    monkeypatch.setattr(os, 'posix_fadvise', fadvise)
    monkeypatch.setattr(os, 'pread', pread)
    runs = [(i * 12, 1) for i in range(8)]
    cp.copy_runs(src, dst, runs, read_depth=2, merge_gap=0)
    for i in range(8):
        assert events.index(('advise', i * 12 * B)) < events.index(('read', i * 12 * B))
    del events[:]
    cp.copy_runs(src, dst, runs, read_depth=2, merge_gap=0, readahead=0)
    assert sorted(events) == sorted(('read', i * 12 * B) for i in range(8))


def test_writeback_overlaps_the_reads_with_threads_only(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 512, 1)
    dst = make_file(str(tmp_path / 'dst'), 512, 2)
    monkeypatch.setattr(readpool, 'FLUSH_BYTES', 8 * B)
    syncs = []
    real = os.fdatasync

    def fdatasync(fd):
        syncs.append(threading.current_thread() is threading.main_thread())
        return real(fd)
    monkeypatch.setattr(os, 'fdatasync', fdatasync)
    runs = [(i * 4, 1) for i in range(100)]
    before = blocks_of(dst)
    cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0)
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert syncs and not any(syncs)  # in the flush thread, during the copy
    del syncs[:]
    cp.copy_runs(src, dst, runs, read_depth=1, merge_gap=0)
    cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0, fsync=False)
    assert syncs == []  # depth 1 is the engine as it was; fsync=False syncs nothing


def test_a_failed_writeback_in_the_flush_thread_fails_the_copy(tmp_path, monkeypatch):
    """Linux reports a writeback error to one fsync per file description: the final fsync may not see
    it again, so the flush thread's error must fail the copy itself."""
    src = make_file(str(tmp_path / 'src'), 512, 1)
    dst = make_file(str(tmp_path / 'dst'), 512, 2)
    monkeypatch.setattr(readpool, 'FLUSH_BYTES', 8 * B)
    calls = []

    def fdatasync(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, 'Input/output error')
    monkeypatch.setattr(os, 'fdatasync', fdatasync)
    with pytest.raises(cp.CopyError, match='fsync of .* failed: Input/output error') as info:
        cp.copy_runs(src, dst, [(i * 4, 1) for i in range(100)], read_depth=4, merge_gap=0)
    assert info.value.details['errors'] == 1 and calls
    assert not _pool_threads()


class FakePool(object):
    def __init__(self):
        self.drains = 0

    def drain(self):
        self.drains += 1


def _probe(costs, window=2, keep=3):
    """A DepthProbe on a clock that advances ``costs[pooled]`` per span; returns it and the arm of each span."""
    now = [0.0]
    probe = readpool.DepthProbe(window=window, keep=keep, clock=lambda: now[0])
    pool = FakePool()
    arms = []
    for dummy in range(window * (1 + (len(readpool.PROBE_ORDER) + keep) * 2)):
        arm = probe.pooled
        arms.append(arm)
        now[0] += costs[arm]
        probe.counted(pool)
    return probe, arms, pool


@pytest.mark.parametrize('pool_cost, alone_cost, chosen', [(1.0, 2.0, True), (2.0, 1.0, False), (1.0, 1.0, False)])
def test_depth_probe_times_both_ways_and_keeps_the_faster(pool_cost, alone_cost, chosen):
    probe, arms, pool = _probe({True: pool_cost, False: alone_cost})
    measure = [False, False, True, True, True, True, False, False]  # windows of 2 spans: alone, pool, pool, alone
    kept = [chosen] * 6  # 3 windows of the faster (a tie goes to the caller alone)
    assert arms == [False] * 2 + (measure + kept) * 2  # an untimed first window alone; then measured again
    assert probe.probes == [(4 * pool_cost, 4 * alone_cost, chosen)] * 2
    assert pool.drains >= 2  # every pooled window ends with the pool drained


def test_depth_probe_does_not_time_the_slow_start():
    """The guest case: the first spans waited for the readahead of the whole window (0.2 s against 0.02-0.06 s
    later), which made the caller alone look slower than the threads; the first window is not timed."""
    now = [0.0]
    probe = readpool.DepthProbe(window=2, keep=3, clock=lambda: now[0])
    arms = []
    for i in range(2 + 8):
        arm = probe.pooled
        arms.append(arm)
        now[0] += 50.0 if i < 2 else (2.0 if arm else 1.0)  # the cold start, then the caller alone is faster
        probe.counted(FakePool())
    assert arms[:2] == [False, False] and probe.probes == [(8.0, 4.0, False)]


def _adaptive(monkeypatch, window=4, keep=2):
    monkeypatch.setattr(cp, 'DepthProbe', lambda: readpool.DepthProbe(window=window, keep=keep))


@pytest.mark.parametrize('slow', ['threads', 'caller'])
def test_adaptive_depth_reads_with_the_faster_way_and_the_same_image(tmp_path, monkeypatch, slow):
    """Reads made slow in the pool's threads (an emulated guest) or in the calling thread (a device with reads to
    spare, emulated): after the first measurement the faster way reads; image, write order and counters unchanged."""
    nblocks = 1200
    src = make_file(str(tmp_path / 'src'), nblocks, 1)
    dst = make_file(str(tmp_path / 'dst'), nblocks, 2)
    runs = [(i * 12, 1) for i in range(nblocks // 12)]  # 100 spans: 4 untimed, 16 measured, then 80 kept
    before = blocks_of(dst)
    main = threading.main_thread()

    def delay():
        in_main = threading.current_thread() is main
        return 0.004 if in_main == (slow == 'caller') else 0.0

    rec = Recorder(monkeypatch, delay=delay)
    _adaptive(monkeypatch, window=4, keep=100)
    stats = cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0)
    assert blocks_of(dst) == expected(blocks_of(src), before, runs)
    assert rec.writes == [b * B for b, dummy in runs] and rec.write_threads == {main.name}
    assert (stats.blocks, stats.runs, stats.errors) == (len(runs), len(runs), 0)
    assert len(stats.probes) == 1 and stats.probes[0][2] == (slow == 'caller')
    # 4 alone untimed; measured: 8 spans pooled, 8 alone; then all 80 the faster way
    assert stats.pooled_spans == (8 + 80 if slow == 'caller' else 8)
    assert not _pool_threads()


def test_without_adapt_the_threads_read_every_scattered_span(tmp_path, monkeypatch):
    src = make_file(str(tmp_path / 'src'), 1200, 1)
    dst = make_file(str(tmp_path / 'dst'), 1200, 2)
    runs = [(i * 12, 1) for i in range(100)]
    rec = Recorder(monkeypatch, delay=lambda: 0.002 if threading.current_thread() is not threading.main_thread() else 0)
    _adaptive(monkeypatch)
    stats = cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0, adapt=False)
    assert stats.pooled_spans == 100 and stats.probes == []
    assert threading.main_thread().name not in rec.read_threads


def test_adaptive_depth_keeps_counting_every_failed_block(tmp_path, monkeypatch):
    """Bad blocks read by the threads and by the calling thread alone are all counted; the copy fails after."""
    src = make_file(str(tmp_path / 'src'), 1200, 1)
    dst = make_file(str(tmp_path / 'dst'), 1200, 2)
    runs = [(i * 12, 1) for i in range(100)]
    bad = [0, 60, 600, 1188]  # spans 0 and 5 (pooled), 50 and 99 (after the measurement, either way)
    Recorder(monkeypatch, fail_reads=bad)
    _adaptive(monkeypatch)
    with pytest.raises(cp.CopyError) as info:
        cp.copy_runs(src, dst, runs, read_depth=4, merge_gap=0)
    assert info.value.details['error_blocks'] == bad
    assert not _pool_threads()
