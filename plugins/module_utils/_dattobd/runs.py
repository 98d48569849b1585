# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Block-run arithmetic: the one place the library combines sets of blocks.

Two shapes are used and never mixed up:

* runs: ordered ``(start, n)`` pairs (COW change lists, copy plans, free-space maps);
* ranges: ordered, disjoint ``(first, end_exclusive)`` pairs (FIEMAP extents in blocks, masks).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import bisect
import heapq

from .constants import BLOCK_SIZE


def merge_sorted_runs(*iterables):
    """Union of ordered ``(start, n)`` run streams as ordered, coalesced runs (streaming)."""
    cur_start = cur_end = None
    for start, n in heapq.merge(*iterables):
        if n <= 0:
            continue
        end = start + n
        if cur_start is None:
            cur_start, cur_end = start, end
        elif start <= cur_end:
            cur_end = max(cur_end, end)
        else:
            yield cur_start, cur_end - cur_start
            cur_start, cur_end = start, end
    if cur_start is not None:
        yield cur_start, cur_end - cur_start


def merge_runs(run_lists):
    """Union of several ordered lists of ``(start, n)`` runs, as an ordered coalesced list."""
    return list(merge_sorted_runs(*run_lists))


def complement(runs, nblocks):
    """The ordered runs of ``[0, nblocks)`` outside the ordered ``(start, n)`` ``runs``."""
    pos = 0
    for start, n in runs:
        if start > pos:
            yield pos, min(start, nblocks) - pos
        pos = max(pos, start + n)
        if pos >= nblocks:
            return
    if pos < nblocks:
        yield pos, nblocks - pos


def subtract(runs, holes):
    """The ordered ``(start, n)`` runs of ``runs`` outside ``holes`` (both ordered, merged ``(start, n)``)."""
    out = []
    holes = list(holes)
    i = 0
    for start, n in runs:
        pos, end = start, start + n
        while i < len(holes) and holes[i][0] + holes[i][1] <= pos:
            i += 1
        j = i
        while pos < end and j < len(holes) and holes[j][0] < end:
            h_start, h_end = holes[j][0], holes[j][0] + holes[j][1]
            if h_start > pos:
                out.append((pos, h_start - pos))
            pos = max(pos, h_end)
            j += 1
        if pos < end:
            out.append((pos, end - pos))
    return out


def block_ranges(byte_extents, block_size=BLOCK_SIZE):
    """Merge byte extents ``[(offset, length)]`` into sorted, disjoint ``[(first_block, end_block_exclusive)]``."""
    ranges = sorted((p // block_size, (p + n + block_size - 1) // block_size) for p, n in byte_extents if n > 0)
    merged = []
    for first, end in ranges:
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((first, end))
    return merged


def merge_ranges(ranges):
    """Sorted, disjoint union of block ranges ``[(first, end_exclusive)]`` given in any order."""
    return block_ranges([(first * BLOCK_SIZE, (end - first) * BLOCK_SIZE) for first, end in ranges])


def ranges_to_runs(ranges, nblocks=None):
    """Block ranges ``[(first, end_exclusive)]`` as ``(start, n)`` runs, clipped to ``[0, nblocks)`` when given."""
    if nblocks is None:
        return [(first, end - first) for first, end in ranges]
    return [(first, min(end, nblocks) - first) for first, end in ranges if first < nblocks]


def runs_to_ranges(runs):
    """``(start, n)`` runs as ``(first, end_exclusive)`` block ranges."""
    return [(start, start + n) for start, n in runs]


def split_masked(blocks, ranges):
    """Split block numbers into ``(outside, inside)`` the sorted disjoint ``ranges``."""
    starts = [r[0] for r in ranges]
    outside, inside = [], []
    for b in blocks:
        i = bisect.bisect_right(starts, b) - 1
        if i >= 0 and b < ranges[i][1]:
            inside.append(b)
        else:
            outside.append(b)
    return outside, inside
