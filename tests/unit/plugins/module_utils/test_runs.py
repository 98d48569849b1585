# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Block-run arithmetic (runs.py): unions, complements, differences, byte extents to block ranges, masks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import runs as runs_lib

BS = 4096


@pytest.mark.parametrize('extents, expected', [
    ([], []),
    ([(0, 4096)], [(0, 1)]),
    ([(4096, 1)], [(1, 2)]),                       # a partial block counts whole
    ([(8192, 8192), (0, 4096)], [(0, 1), (2, 4)]),  # sorted
    ([(0, 8192), (8192, 4096)], [(0, 3)]),         # adjacent runs merge
    ([(0, 12288), (4096, 4096)], [(0, 3)]),        # overlap merges
    ([(40960, 0)], []),                            # empty extent ignored
])
def test_block_ranges(extents, expected):
    assert runs_lib.block_ranges(extents, BS) == expected


def test_split_masked():
    ranges = [(2, 4), (10, 11)]
    assert runs_lib.split_masked([0, 1, 2, 3, 4, 9, 10, 11], ranges) == ([0, 1, 4, 9, 11], [2, 3, 10])
    assert runs_lib.split_masked([5], []) == ([5], [])


@pytest.mark.parametrize('streams, expected', [
    ([[], []], []),
    ([[(0, 2), (5, 1)], []], [(0, 2), (5, 1)]),
    ([[(0, 2), (5, 1)], [(2, 1)]], [(0, 3), (5, 1)]),         # adjacent runs coalesce
    ([[(0, 4)], [(1, 2)]], [(0, 4)]),                         # contained run
    ([[(10, 2)], [(0, 1), (11, 5)]], [(0, 1), (10, 6)]),      # overlap extends
])
def test_merge_sorted_runs(streams, expected):
    assert list(runs_lib.merge_sorted_runs(*[iter(s) for s in streams])) == expected


@pytest.mark.parametrize('lists, expected', [
    ([[(0, 2)], [(1, 3)]], [(0, 4)]),
    ([[(0, 1), (10, 2)], [(2, 1)]], [(0, 1), (2, 1), (10, 2)]),
    ([[(5, 0)], []], []),
    ([[(0, 2)], [(2, 2)]], [(0, 4)]),
    ([[(0, 10)], [(2, 2)]], [(0, 10)]),
])
def test_merge_runs(lists, expected):
    assert runs_lib.merge_runs(lists) == expected


def _runs_of(blocks):
    out = []
    for b in sorted(blocks):
        if out and out[-1][0] + out[-1][1] == b:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((b, 1))
    return out


@pytest.mark.parametrize('runs, holes, expected', [
    ([(0, 10)], [], [(0, 10)]),
    ([(0, 10)], [(3, 2)], [(0, 3), (5, 5)]),
    ([(0, 10), (20, 5)], [(8, 14)], [(0, 8), (22, 3)]),
    ([(5, 5)], [(0, 5), (10, 5)], [(5, 5)]),
    ([(5, 5)], [(0, 20)], []),
])
def test_subtract(runs, holes, expected):
    assert runs_lib.subtract(runs, holes) == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.integers(0, 200)), st.sets(st.integers(0, 200)))
def test_subtract_is_set_difference(a, b):
    assert runs_lib.subtract(_runs_of(a), _runs_of(b)) == _runs_of(a - b)


@pytest.mark.parametrize('runs, n, expected', [
    ([], 10, [(0, 10)]),
    ([(0, 10)], 10, []),
    ([(2, 3)], 10, [(0, 2), (5, 5)]),
    ([(0, 1), (9, 5)], 10, [(1, 8)]),
    ([(12, 2)], 10, [(0, 10)]),
])
def test_complement(runs, n, expected):
    assert list(runs_lib.complement(runs, n)) == expected
