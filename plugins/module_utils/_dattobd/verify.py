# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verification beyond the change list: a seeded random sample, and a schedule of full verifications.

A COW file can only prove what it lists. A change list that lost a whole section (a damaged
index, a driver bug) leaves the image stale there, and comparing the copied blocks cannot see it.
Two defences, used by the backup cycle (backup_cycle.py):

- every incremental cycle compares a uniform random sample of the ALLOCATED blocks OUTSIDE the
  change list between the snapshot and the image (:func:`sample_target`, :func:`pick`): a lost
  section of a fraction ``k`` of those blocks escapes a sample of ``n`` blocks with probability
  ``(1 - k) ** n`` (:func:`miss_chance`); the seed is random and reported, so a run can be replayed;
- a full verification (every block, with the same masks) runs every N cycles or D days
  (:func:`full_due`), so any divergence is found within a bounded time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import bisect
import os
import random

from . import copy as copy_mod
from . import devices
from . import fiemap
from . import fsmap
from . import runs as runs_mod
from . import validation
from .constants import BLOCK_SIZE
from .errors import DattobdError, SyncError

SAMPLE_BUDGET = 0.1        # fraction of the cycle's copy time the sample may take
SAMPLE_MIN = 1             # blocks compared at least: the time budget is a hard cap by default (docs/sync.md)
SAMPLE_MAX = 65536         # blocks compared at most (256 MiB of each side)
SEED_MAX = 2 ** 32 - 1
BATCH = 512                # blocks compared at most between two looks at the clock (all read ahead at once)
PROBE = 1                  # the first batch, before the time one block takes is known
FULL_EVERY_DAYS = 30
FULL_EVERY_CYCLES = 0
DAY = 86400.0

# option name -> (type, lowest, highest or None, default)
OPTIONS = {
    'verify_sample_budget': (float, 0.0, 1.0, SAMPLE_BUDGET),
    'verify_sample_min': (int, 1, None, SAMPLE_MIN),
    'verify_sample_max': (int, 1, None, SAMPLE_MAX),
    'verify_sample_seed': (int, 0, SEED_MAX, None),
    'full_verify_every_cycles': (int, 0, None, FULL_EVERY_CYCLES),
    'full_verify_every_days': (float, 0.0, None, FULL_EVERY_DAYS),
}


def validate(params):
    """Check and fill in the verification options of ``params`` (a dict, changed in place).

    Integers and numbers are read by validation.py (ASCII digits only; no bool, NaN or infinity).
    Raises :class:`DattobdError` for a value of the wrong type or out of range (before the cycle
    writes anything).
    """
    for name, (kind, low, high, default) in sorted(OPTIONS.items()):
        value = params.get(name)
        if value is None:
            params[name] = default
        elif kind is int:
            params[name] = validation.check_int(value, name, low, high)
        else:
            params[name] = validation.check_number(value, name, low, high)
    if params['verify_sample_max'] < params['verify_sample_min']:
        raise DattobdError('verify_sample_max (%d) is smaller than verify_sample_min (%d).'
                           % (params['verify_sample_max'], params['verify_sample_min']))
    return params


def new_seed():
    """A random seed for one sample (reported, so the same sample can be drawn again)."""
    return random.SystemRandom().randint(0, SEED_MAX)


def sample_target(copied_bytes, copy_seconds, budget, minimum, maximum):
    """``(blocks, budget_seconds)``: the sample size and the time it may take.

    ``budget_seconds`` is ``budget`` times the copy time. Comparing one block reads it twice (the
    snapshot and the image) where the copy read and wrote it once, at the throughput the copy
    measured: ``budget * copied_bytes / 8192`` blocks fit in that time. The size is clamped to
    ``[minimum, maximum]``. The comparison stops once the time is spent (:func:`next_batch`): the
    budget is a hard cap, only ``minimum`` blocks (1 by default) are compared whatever it costs.
    """
    budget_seconds = max(0.0, budget * float(copy_seconds or 0.0))
    estimate = int(budget * max(0, copied_bytes or 0) / (2.0 * BLOCK_SIZE))
    return max(minimum, min(maximum, estimate)), round(budget_seconds, 6)


def next_batch(compared, total, minimum, spent, budget_seconds, per_block):
    """How many of the ``total`` drawn blocks to compare next; 0 when the sample stops.

    ``compared`` blocks are done, ``spent`` seconds are gone (the free-block map included) and one
    block took ``per_block`` seconds so far (``None`` before the first batch). Blocks below
    ``minimum`` are always compared; beyond it a batch holds only what the rest of
    ``budget_seconds`` pays for at the measured pace (the first batch: :data:`PROBE` blocks, if
    any time is left), never more than :data:`BATCH`.
    """
    left = total - compared
    if left <= 0:
        return 0
    owed = max(0, minimum - compared)
    remaining = budget_seconds - spent
    if remaining <= 0:
        fits = 0
    elif per_block is None:
        fits = PROBE
    elif per_block <= 0:
        fits = left
    else:
        fits = int(remaining / per_block)
    return min(left, BATCH, max(owed, fits))


def pick(runs, n, rng):
    """``n`` distinct blocks drawn uniformly from the ordered ``(start, count)`` ``runs``, in random order.

    Any prefix of the result is itself a uniform sample (the comparison may stop early).
    """
    offsets, total = [], 0
    for dummy, count in runs:
        offsets.append(total)
        total += count
    out = []
    for k in rng.sample(range(total), min(n, total)):
        i = bisect.bisect_right(offsets, k) - 1
        out.append(runs[i][0] + k - offsets[i])
    return out


def miss_chance(fraction, n):
    """Probability that a lost section of ``fraction`` of the candidate blocks has no block in a sample of ``n``.

    Drawn without replacement it is at most ``(1 - fraction) ** n``: the bound reported.
    """
    return (1.0 - fraction) ** n if n else 1.0


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def reference(record):
    """Epoch since which the image is not known to be verified in full: the later of the last
    successful full verification and the last full copy (``last_full_epoch``), or None."""
    last = (record or {}).get('last_full_verify')
    ref = None
    if isinstance(last, dict) and last.get('result') == 'ok':
        ref = _number(last.get('epoch'))
    full = _number((record or {}).get('last_full_epoch'))
    if full is not None and (ref is None or full > ref):
        ref = full
    return ref


def full_due(record, every_cycles, every_days, now):
    """``(due, reason)``: whether this cycle runs a full verification, and why (or why not)."""
    if not every_cycles and not every_days:
        return False, 'no schedule (full_verify_every_cycles and full_verify_every_days are 0)'
    record = record or {}
    cycles = _number(record.get('cycles_since_full_verify')) or 0
    if every_cycles and cycles + 1 >= every_cycles:
        return True, 'every %d cycle(s): %d cycle(s) since the last full verification or full copy' % (
            every_cycles, cycles)
    if every_days:
        ref = reference(record)
        if ref is None:
            return True, 'never verified in full (every %s day(s))' % _days(every_days)
        age = (now - ref) / DAY
        if age >= every_days:
            return True, 'every %s day(s): the last full verification or full copy is %.1f day(s) old' % (
                _days(every_days), age)
        return False, 'next full verification in %.1f day(s)' % (every_days - age)
    return False, 'next full verification in %d cycle(s)' % (every_cycles - cycles - 1)


def _days(value):
    return ('%d' % value) if float(value).is_integer() else ('%g' % value)


# --- reading back -----------------------------------------------------------------------------

def compare_runs(src, dst, runs, block_size=BLOCK_SIZE, buffer_size=copy_mod.DEFAULT_BUFFER, src_size=None,
                 drop_cache=True, readahead=False, drop_runs=False):
    """Read back ``runs`` from both files and return the list of differing block numbers.

    Parameters: the two files, the runs and the knobs of the read-back (hence nine).

    With ``drop_cache`` the destination's clean pages are dropped first so the comparison reads
    what reached the disk; ``drop_runs`` drops only the pages of ``runs`` (cheap for a few
    scattered blocks of a large, well-cached image). With ``readahead`` every run is announced to the
    kernel first (``POSIX_FADV_WILLNEED`` on both files): scattered blocks are then read with many
    reads in flight instead of one at a time (keep ``runs`` short). Raises :class:`CopyError` on
    a read error.
    """
    sfd = os.open(src, os.O_RDONLY)
    try:
        dfd = os.open(dst, os.O_RDONLY)
    except OSError:
        os.close(sfd)
        raise
    bad = []
    try:
        if src_size is None:
            src_size = copy_mod.size_of_fd(sfd)
        if drop_runs or readahead:
            runs = list(runs)
        _advise(sfd, dfd, runs, block_size, drop_cache, drop_runs, readahead)
        for start, n in runs:
            offset = start * block_size
            end = min((start + n) * block_size, src_size)
            while offset < end:
                length = min(buffer_size, end - offset)
                try:
                    a = os.pread(sfd, length, offset)
                    b = os.pread(dfd, length, offset)
                except OSError as exc:
                    raise copy_mod.CopyError('Read error while verifying %s against %s at offset %d: %s.'
                                             % (dst, src, offset, copy_mod.oserror_text(exc)))
                if a != b:
                    for i in range(0, length, block_size):
                        if a[i:i + block_size] != b[i:i + block_size]:
                            bad.append((offset + i) // block_size)
                offset += length
    finally:
        os.close(sfd)
        os.close(dfd)
    return bad


def _advise(sfd, dfd, runs, block_size, drop_cache, drop_runs, readahead):
    """The page cache hints of :func:`compare_runs` (each best effort): drop the destination's pages (all, or those
    of ``runs``), announce ``runs`` on both files."""
    wanted = []
    if drop_cache:
        wanted.append((dfd, 0, 0, 'POSIX_FADV_DONTNEED'))
    if drop_runs:
        wanted += [(dfd, start * block_size, n * block_size, 'POSIX_FADV_DONTNEED') for start, n in runs]
    if readahead:
        wanted += [(fd, start * block_size, n * block_size, 'POSIX_FADV_WILLNEED') for start, n in runs
                   for fd in (sfd, dfd)]
    for fd, offset, length, advice in wanted:
        try:
            os.posix_fadvise(fd, offset, length, getattr(os, advice))
        except (OSError, AttributeError):
            pass


# --- masks: which mismatches are not a failure ------------------------------------------------

def _stable_mismatches(device, image, bad):
    """Blocks that still differ when the snapshot block reads the same twice.

    The snapshot device shows the live blocks of its own current COW file (the driver does not
    COW its own writes), so those blocks may change between two reads; they are reported as
    unstable and are not a failure.
    """
    if not bad:
        return []
    stable = []
    fd = os.open(device, os.O_RDONLY)
    try:
        for b in bad:
            first = os.pread(fd, BLOCK_SIZE, b * BLOCK_SIZE)
            again = compare_runs(device, image, [(b, 1)], drop_cache=False)
            second = os.pread(fd, BLOCK_SIZE, b * BLOCK_SIZE)
            if again and first == second:
                stable.append(b)
    finally:
        os.close(fd)
    return stable


def live_cow_ranges(tracker, host=None):
    """Block ranges (``[(first, end)]``) of the tracker's live COW file on the tracked device.

    ``/dev/datto<N>`` shows those blocks as they are now (dattobd does not copy-on-write its own
    COW file), so a correct image differs from the snapshot device there.
    """
    dev = devices.resolve(tracker.block_device, host)
    mount = dev.mount
    if mount is None or mount.root != '/':
        raise SyncError('Cannot locate the live COW file of tracker %d: %s is not mounted as a whole filesystem.'
                        % (tracker.minor, tracker.block_device))
    path = os.path.join(mount.mount_point, tracker.cow_file.lstrip('/'))
    return fiemap.file_ranges(path)


def mask_live_cow(bad, tracker, host=None, cow_files=()):
    """Split mismatching blocks into ``(others, in_cow_files, note)``.

    Masked: the blocks of the tracker's live COW file and of ``cow_files`` (the previous COW
    files the sync read: the driver writes their index and header after the snapshot point, and
    does not track those writes either). ``note`` says why a file's extents could not be read;
    its blocks then stay in ``others``.
    """
    if not bad or tracker is None:
        return list(bad), [], None
    ranges, notes = [], []
    try:
        ranges.extend(live_cow_ranges(tracker, host))
    except (OSError, ValueError, DattobdError) as exc:
        notes.append('extents of the live COW file unknown (%s)' % (getattr(exc, 'msg', None) or exc))
    for path in cow_files:
        try:
            ranges.extend(fiemap.file_ranges(path))
        except (OSError, ValueError) as exc:
            notes.append('extents of %s unknown (%s)' % (path, exc))
    others, inside = runs_mod.split_masked(bad, runs_mod.merge_ranges(ranges))
    return others, inside, '; '.join(notes) or None


def classify_mismatches(bad, device, image, tracker, result=None, cow_files=(), free_map=None):
    """Mismatches that are real: neither in a COW file (live, or ``cow_files``) nor changing between two reads.

    Blocks the snapshot's filesystem reports unallocated are not real mismatches either
    (``mask_unallocated``; ``free_map``: the device's :class:`fsmap.FreeMap` when the caller has
    read it already). Records ``verify_masked_blocks`` (COW file blocks),
    ``verify_unallocated_blocks``, ``verify_unstable_blocks`` and, when the
    mask could not be computed, ``verify_mask_note`` in ``result``.
    """
    others, masked, note = mask_live_cow(bad, tracker, cow_files=cow_files)
    others, free = mask_unallocated(others, device, free_map)
    stable = _stable_mismatches(device, image, others)
    if result is not None:
        result['verify_masked_blocks'] = len(masked)
        result['verify_unallocated_blocks'] = len(free)
        result['verify_unstable_blocks'] = sorted(set(others) - set(stable))
        if note:
            result['verify_mask_note'] = note
    return stable


def mask_unallocated(bad, device, free_map=None):
    """Split mismatching blocks into ``(others, unallocated)``: those the snapshot's filesystem reports free.

    Their content means nothing to the filesystem: a full backup leaves them as holes (fsmap.py),
    and the snapshot device shows whatever was last written there. Without a free-block map
    (another filesystem, a tool missing) nothing is masked.
    """
    if not bad:
        return list(bad), []
    fmap = free_map if free_map is not None else fsmap.free_map(device)
    if not fmap.known:
        return list(bad), []
    return runs_mod.split_masked(bad, runs_mod.runs_to_ranges(fmap.runs))
