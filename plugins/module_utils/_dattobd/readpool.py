# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parallel reads of the copy engine (copy.py): ``read_depth`` threads read, the caller writes in order.

Whether the threads pay off is measured as the copy goes (:class:`DepthProbe`): they do where the
device has reads to spare (1.6x on a loop device of the development host, benchmarks/results), and
cost where the CPU is the limit (0.6x in a guest under software emulation, where every I/O is
CPU time and the threads contend for the interpreter).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import time
from concurrent.futures import ThreadPoolExecutor

# Bytes read by the threads and not yet written, at most (plus one batch).
INFLIGHT_BYTES = 32 << 20
# Spans handed to a read thread at once (per-span hand-offs cost more than a 4 KiB read).
BATCH_SPANS = 16
BATCH_BYTES = 1 << 20
# With reads in flight, the image is fdatasynced in another thread every so many bytes written, so
# its writeback overlaps the reads instead of all waiting for the final fsync.
FLUSH_BYTES = 4 << 20
# Adaptive depth: after one window read by the calling thread alone and not timed (the start is slow
# whatever reads: the readahead requests of the first spans are all still pending), scattered spans
# are read in windows of PROBE_SPANS spans, by the pool and by the calling thread alone in the order
# of PROBE_ORDER; the faster way reads the next KEEP_WINDOWS windows, then both are measured again
# (the density of a change list varies along the device).
PROBE_SPANS = 64
PROBE_ORDER = (False, True, True, False)
KEEP_WINDOWS = 16


def _read_batch(fd, spans):
    """``os.pread`` of each ``(offset, length, members)`` span: its bytes, or the OSError it raised."""
    out = []
    for offset, length, dummy in spans:
        try:
            out.append(os.pread(fd, length, offset))
        except OSError as exc:
            out.append(exc)
    return out


class ReadPool(object):
    """Spans read by ``depth`` threads, written by the caller in submission order.

    Spans are handed to the threads in batches of up to ``BATCH_SPANS`` spans / ``BATCH_BYTES``
    bytes (one task per span costs more in thread hand-offs than a 4 KiB read). ``drain(keep)``
    writes (in order) the oldest batches until at most ``keep`` batches and ``INFLIGHT_BYTES``
    bytes are left in flight. A read that failed or came back short, and a write that fails, go
    through the careful path (``copier.copy_range``, block by block, counting every bad block)
    right there, so the writes keep the change list's order. ``close`` cancels what was not
    started and joins the threads: always called before the file descriptors are closed.
    """

    def __init__(self, sfd, dfd, depth, copier, done, sync):
        self.sync = sync
        self.sfd = sfd
        self.dfd = dfd
        self.depth = depth
        self.copier = copier
        self.done = done
        self.window = collections.deque()
        self.batch = []
        self.batch_bytes = 0
        self.bytes = 0
        self.executor = ThreadPoolExecutor(max_workers=depth)
        # Writeback overlapped with the reads: fdatasync in another thread every FLUSH_BYTES written.
        self.flusher = ThreadPoolExecutor(max_workers=1)
        self.flush = None
        self.unflushed = 0
        self.flush_error = None

    def add(self, offset, length, members):
        self.batch.append((offset, length, members))
        self.batch_bytes += length
        if len(self.batch) >= BATCH_SPANS or self.batch_bytes >= BATCH_BYTES:
            self._submit()

    def _submit(self):
        if self.batch:
            self.window.append((self.executor.submit(_read_batch, self.sfd, self.batch), self.batch,
                                self.batch_bytes))
            self.bytes += self.batch_bytes
            self.batch, self.batch_bytes = [], 0
            self.drain(2 * self.depth)

    def drain(self, keep=0):
        if not keep:
            self._submit()
        while self.window and (len(self.window) > keep or self.bytes > INFLIGHT_BYTES):
            fut, spans, nbytes = self.window.popleft()
            self.bytes -= nbytes
            for (offset, length, members), data in zip(spans, fut.result()):
                self._write(offset, length, members, data)
            self.unflushed += sum(p_len for dummy, dummy2, members in spans for dummy3, p_len, dummy4 in members)
            if self.sync and self.unflushed >= FLUSH_BYTES and (self.flush is None or self.flush.done()):
                self._flushed()
                self.flush = self.flusher.submit(os.fdatasync, self.dfd)
                self.unflushed = 0

    def _flushed(self):
        """Wait for the running fdatasync; keep its error (the final fsync may not see it again)."""
        if self.flush is not None:
            try:
                self.flush.result()
            except OSError as exc:
                if self.flush_error is None:
                    self.flush_error = exc
            self.flush = None

    def _write(self, offset, length, members, data):
        todo = members
        if not isinstance(data, OSError) and len(data) == length:
            todo = None
            for i, (p_off, p_len, dummy) in enumerate(members):
                rel = p_off - offset
                try:
                    ok = os.pwrite(self.dfd, data[rel:rel + p_len] if len(members) > 1 else data, p_off) == p_len
                except OSError:
                    ok = False
                if not ok:
                    todo = members[i:]
                    break
        for p_off, p_len, dummy in todo or ():
            self.copier.copy_range(p_off, p_len)
        self.done(length, members)

    def close(self):
        for fut, dummy, dummy2 in self.window:
            fut.cancel()
        self.window.clear()
        self.executor.shutdown(wait=True)
        self.flusher.shutdown(wait=True)
        self._flushed()


class DepthProbe(object):
    """Which way reads the scattered spans faster right now: the pool (``pooled`` True) or the caller alone.

    The first window is read by the caller alone, untimed (a short change list is read as at depth
    1: on the development host depth 1 was as fast as any for a 1 % set). Then both ways are timed
    over windows of ``window`` spans in the order ``PROBE_ORDER`` (the caller, the pool twice, the
    caller again, so a drift in speed along the device weighs on both); the faster (a tie goes to
    the caller alone: less CPU) keeps the next ``keep`` windows. A pooled
    window ends with the pool drained, so its time is all in it and no pooled write is pending
    when the caller copies on its own. ``probes``: ``(seconds pooled, seconds alone, pooled
    chosen)`` of each completed measurement.
    """

    def __init__(self, window=PROBE_SPANS, keep=KEEP_WINDOWS, clock=time.monotonic):
        self.window = window
        self.keep = keep
        self.clock = clock
        self.step = -1  # -1: the untimed first window; an index in PROBE_ORDER while measuring; len(PROBE_ORDER)
        # while a choice is kept
        self.left = window
        self.spent = {True: 0.0, False: 0.0}
        self.choice = True
        self.probes = []
        self.started = clock()

    @property
    def pooled(self):
        """Whether the next scattered span goes to the pool."""
        if self.step < 0:
            return False
        return PROBE_ORDER[self.step] if self.step < len(PROBE_ORDER) else self.choice

    def counted(self, pool):
        """One scattered span was handed to the pool or copied by the caller (``pool``: the :class:`ReadPool`)."""
        self.left -= 1
        if self.left > 0:
            return
        if self.step < 0:
            self.step = 0
            self.left = self.window
        elif self.step < len(PROBE_ORDER):
            arm = PROBE_ORDER[self.step]
            if arm:
                pool.drain()
            self.spent[arm] += self.clock() - self.started
            self.step += 1
            self.left = self.window
            if self.step == len(PROBE_ORDER):
                self.choice = self.spent[True] < self.spent[False]
                self.probes.append((round(self.spent[True], 6), round(self.spent[False], 6), self.choice))
                self.left = self.window * self.keep
        else:
            if self.choice:
                pool.drain()
            self.step = 0
            self.left = self.window
            self.spent = {True: 0.0, False: 0.0}
        self.started = self.clock()
