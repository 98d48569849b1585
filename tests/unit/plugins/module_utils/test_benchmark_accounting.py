# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""benchmarks/sync.py real mode: the comparison outside the live COW file and the accounting of every block
copied beyond update-img's list, on synthetic inputs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import sys

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as verify_mod

from .test_sync import ROOT, blocks_file

B = 4096
OLD_COW = "the old COW file's own blocks"


@pytest.fixture(scope='module')
def bench():
    here = os.path.join(ROOT, 'benchmarks')
    spec = importlib.util.spec_from_file_location('snapfleet_bench_sync', os.path.join(here, 'sync.py'))
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, here)            # as when the script runs: its siblings (benchutil) import
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(here)
    return mod


def test_account_names_every_block_beyond_the_list(bench):
    cow_list = [(10, 5), (100, 1)]
    named = [(OLD_COW, [(50, 3), (12, 2)]),      # 12, 13 are in the list: not beyond it
             ('after-reboot regions', [(0, 2), (51, 4)])]  # 51, 52 already counted under the old COW file
    acc = bench.account(cow_list, named, differing=[0, 1, 50, 52, 54, 11, 77])
    assert acc['beyond'] == [(OLD_COW, 3), ('after-reboot regions', 4)]  # 50-52; 0, 1, 53, 54
    assert acc['differing'] == [(OLD_COW, 2), ('after-reboot regions', 3)]  # 50, 52; 0, 1, 54
    assert acc['unexplained'] == [11, 77]  # in the list (both copy it) or in no named set


def test_account_with_nothing_beyond(bench):
    acc = bench.account([(0, 4)], [(OLD_COW, [])], differing=[])
    assert acc == {'beyond': [(OLD_COW, 0)], 'differing': [(OLD_COW, 0)], 'unexplained': []}
    assert bench.account([(0, 4)], [], differing=[2])['unexplained'] == [2]


def test_issue_21_case_194_blocks_are_the_old_cow_file(bench):
    """The report: the project's image had 194 blocks more than update-img's; all in the old COW file."""
    old_cow = [(3000, 190), (9000, 4)]
    differing = list(range(3000, 3190)) + [9000, 9001, 9002, 9003]
    acc = bench.account([(0, 10), (500, 7)], [(OLD_COW, old_cow)], differing)
    assert acc['beyond'] == [(OLD_COW, 194)] and acc['differing'] == [(OLD_COW, 194)] and not acc['unexplained']


def test_compare_outside_live_cow_uses_the_sync_mask(bench, tmp_path, monkeypatch):
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    blocks_file(dev, 32, 1)
    blocks_file(img, 32, 1)
    with open(img, 'r+b') as f:  # differ in 4, 5 (inside the live COW file) and 20 (outside)
        for b in (4, 5, 20):
            f.seek(b * B)
            f.write(b'x' * B)
    tracker = procinfo.Tracker(minor=1, cow_file='/c', block_device='/dev/x', state=3, seq_id=2, uuid='ab' * 16)
    monkeypatch.setattr(verify_mod, 'live_cow_ranges', lambda tracker, host=None: [(3, 7)])
    no_map = fsmap.FreeMap(None, note='not a filesystem')
    others, masked, free, note = bench.compare_outside_live_cow(verify_mod, dev, img, 32 * B, tracker, no_map)
    assert (others, masked, free, note) == ([20], 2, [], None)
    assert bench.describe_comparison('x', others, masked, free, note) == \
        'x: 1 allocated block(s) differ outside the live COW file (2 masked block(s)); first: 20'
    with open(img, 'r+b') as f:
        f.seek(20 * B)
        f.write(open(dev, 'rb').read()[20 * B:21 * B])
    others, masked, free, note = bench.compare_outside_live_cow(verify_mod, dev, img, 32 * B, tracker, no_map)
    assert bench.describe_comparison('x', others, masked, free, note) == \
        'x: identical outside the live COW file (2 masked block(s))'


def test_blocks_the_snapshot_filesystem_reports_free_are_named_not_hidden(bench, tmp_path, monkeypatch):
    """The guest case: both images differed from /dev/datto0 in blocks 36097 and 36114, free in the snapshot's
    ext4 (a deleted extent block, a deleted COW file's header): named and counted, never called identical blocks;
    a differing allocated block is still reported as such."""
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    blocks_file(dev, 32, 1)
    blocks_file(img, 32, 1)
    with open(img, 'r+b') as f:
        for b in (9, 17, 25):
            f.seek(b * B)
            f.write(bytes(B))  # holes of the image where the device holds deleted data
    tracker = procinfo.Tracker(minor=1, cow_file='/c', block_device='/dev/x', state=3, seq_id=2, uuid='ab' * 16)
    monkeypatch.setattr(verify_mod, 'live_cow_ranges', lambda tracker, host=None: [])
    free_map = fsmap.FreeMap('ext4', runs=[(8, 2), (16, 4)])  # 25 is allocated
    others, masked, free, note = bench.compare_outside_live_cow(verify_mod, dev, img, 32 * B, tracker, free_map)
    assert (others, masked, free) == ([25], 0, [9, 17])
    assert bench.describe_comparison('x', others, masked, free, note) == (
        "x: 1 allocated block(s) differ outside the live COW file (0 masked block(s)) and the 2 unallocated block(s) "
        "that differ (free in the snapshot's filesystem, first: 9, 17); first: 25")
    with open(img, 'r+b') as f:
        f.seek(25 * B)
        f.write(open(dev, 'rb').read()[25 * B:26 * B])
    others, masked, free, note = bench.compare_outside_live_cow(verify_mod, dev, img, 32 * B, tracker, free_map)
    assert bench.describe_comparison('x', others, masked, free, note) == (
        "x: identical outside the live COW file (0 masked block(s)) and the 2 unallocated block(s) that differ "
        "(free in the snapshot's filesystem, first: 9, 17)")


def test_extra_runs_file(bench, tmp_path):
    path = tmp_path / 'extra.json'
    path.write_text('{"after-reboot regions": [[8, 2], [1, 1]], "untracked COW data": [[40, 3]]}')
    assert bench.load_extra_runs(str(path)) == [('after-reboot regions', [(1, 1), (8, 2)]),
                                                ('untracked COW data', [(40, 3)])]
    assert bench.load_extra_runs(None) == []


def test_reference_of_each_set(bench):
    limits = {'dd_read_only_mb_per_s': 400.0, 'dd_copy_mb_per_s': 90.0, 'fio_4k_qd32': 120.0}
    assert bench.reference_of(bench.SCATTERED_10, limits) == ('fio 4k qd32', 120.0)
    assert bench.reference_of(bench.SCATTERED_1, limits) == ('fio 4k qd32', 120.0)
    assert bench.reference_of(bench.CONTIGUOUS_10, limits) == ('dd copy', 90.0)
    assert bench.reference_of(bench.SCATTERED_10, dict(limits, fio_4k_qd32=None)) == ('dd read', 400.0)
