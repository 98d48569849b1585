# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verification beyond the change list: the sample outside it, the full-verification schedule, the failure path.

Real files stand for the snapshot device (``sync.SNAPSHOT_DEVICE`` points at a regular file, as in
test_backup/test_sync) and the image; the tracker is the only thing simulated (:class:`FileOps`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import random
import shutil
import subprocess

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cow as cow_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as image_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as vf
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.cowfile import write_cow

from .test_backup import FakeOps, IMG, META1, P1, REC_OK, started
from .test_cow import count_parses

B = cow_mod.BLOCK_SIZE
UUID = 'ab' * 16
NBLOCKS = 16384          # a 64 MiB test volume
DAY = 86400.0


def params(**extra):
    out = dict(device='/data', image=IMG, state_dir='/state', verify='none', pre_hooks=[], post_hooks=[])
    out.update(extra)
    return out


# --- the pure parts -------------------------------------------------------------------------------

def test_validate_fills_the_defaults():
    p = vf.validate({})
    assert (p['verify_sample_budget'], p['verify_sample_min'], p['verify_sample_max'], p['verify_sample_seed'],
            p['full_verify_every_cycles'], p['full_verify_every_days']) == (0.1, 1, 65536, None, 0, 30.0)


@pytest.mark.parametrize('bad, fragment', [
    ({'verify_sample_budget': 1.5}, 'verify_sample_budget must be a number 0..1'),
    ({'verify_sample_budget': -0.1}, 'verify_sample_budget'),
    ({'verify_sample_budget': float('nan')}, 'verify_sample_budget'),
    ({'verify_sample_budget': True}, 'verify_sample_budget'),
    ({'verify_sample_budget': u'\u0660.\u0661'}, 'verify_sample_budget must be a number 0..1 written in ASCII'),
    ({'verify_sample_min': 0}, 'verify_sample_min must be an integer >= 1'),
    ({'verify_sample_min': 2.5}, 'verify_sample_min'),
    ({'verify_sample_seed': -1}, 'verify_sample_seed'),
    ({'verify_sample_seed': 2 ** 32}, 'verify_sample_seed'),
    ({'full_verify_every_cycles': -1}, 'full_verify_every_cycles'),
    ({'full_verify_every_days': -2}, 'full_verify_every_days'),
    ({'full_verify_every_days': float('inf')}, 'full_verify_every_days'),
    ({'full_verify_every_days': u'\u0661'}, 'full_verify_every_days must be a number >= 0 written in ASCII'),
    ({'verify_sample_min': 100, 'verify_sample_max': 10}, 'verify_sample_max (10) is smaller'),
])
def test_bad_options_are_refused_before_anything_happens(bad, fragment):
    ops = FakeOps(meta=META1, record=REC_OK)
    with pytest.raises(DattobdError) as info:
        bk.run_cycle(params(**bad), ops=ops)
    assert fragment in info.value.msg
    assert info.value.details['step'] == 'parameters'
    assert ops.saved == [] and ops.calls == []      # no lock, no hook, no record: refused before all of them


def test_sample_target_follows_the_copy_and_is_clamped():
    # 10 % of 1 GiB copied: 0.1 * 2^30 / 8192 = 13107 blocks, in 10 % of the copy's 8 s.
    assert vf.sample_target(1 << 30, 8.0, 0.1, 512, 65536) == (13107, 0.8)
    assert vf.sample_target(4096, 0.001, 0.1, 512, 65536) == (512, 0.0001)      # the minimum
    assert vf.sample_target(1 << 40, 1000.0, 0.1, 512, 65536) == (65536, 100.0)  # the cap
    assert vf.sample_target(None, None, 0.1, 7, 9) == (7, 0.0)


def test_pick_is_uniform_distinct_inside_the_runs_and_replayable():
    runs = [(10, 5), (100, 1), (1000, 50)]
    inside = set(range(10, 15)) | {100} | set(range(1000, 1050))
    first = vf.pick(runs, 30, random.Random(7))
    assert len(first) == len(set(first)) == 30 and set(first) <= inside
    assert vf.pick(runs, 30, random.Random(7)) == first          # same seed, same blocks, same order
    assert vf.pick(runs, 30, random.Random(8)) != first
    assert sorted(vf.pick(runs, 500, random.Random(1))) == sorted(inside)   # asked more than there is
    assert vf.pick([], 10, random.Random(1)) == []
    # Uniform: each of the 56 blocks is drawn about equally often over many seeds.
    counts = dict.fromkeys(inside, 0)
    for seed in range(2000):
        for b in vf.pick(runs, 5, random.Random(seed)):
            counts[b] += 1
    expected = 2000 * 5 / 56.0
    assert all(0.6 * expected < c < 1.4 * expected for c in counts.values())


def test_miss_chance():
    assert vf.miss_chance(0.05, 0) == 1.0
    assert vf.miss_chance(0.05, 512) < 4e-12
    assert abs(vf.miss_chance(0.01, 512) - 0.99 ** 512) < 1e-15


@pytest.mark.parametrize('record, cycles, days, now, due, fragment', [
    ({}, 0, 0, 0, False, 'no schedule'),
    ({}, 0, 30, 1000, True, 'never verified'),
    ({'last_full_epoch': 0}, 0, 30, 29 * DAY, False, 'next full verification in 1.0 day'),
    ({'last_full_epoch': 0}, 0, 30, 30 * DAY, True, 'every 30 day(s)'),
    ({'last_full_epoch': 0, 'last_full_verify': {'result': 'ok', 'epoch': 20 * DAY}}, 0, 30, 45 * DAY, False,
     'in 5.0 day'),
    # A failed full verification is no reference: the last full copy is.
    ({'last_full_epoch': 0, 'last_full_verify': {'result': 'failed', 'epoch': 20 * DAY}}, 0, 30, 45 * DAY, True,
     '45.0 day'),
    ({'cycles_since_full_verify': 1}, 3, 0, 0, False, 'in 1 cycle'),
    ({'cycles_since_full_verify': 2}, 3, 0, 0, True, 'every 3 cycle(s): 2 cycle(s)'),
    ({'cycles_since_full_verify': 0}, 1, 0, 0, True, 'every 1 cycle'),
    ({'cycles_since_full_verify': 'x', 'last_full_epoch': 0}, 5, 0.5, 0.6 * DAY, True, 'every 0.5 day'),
])
def test_full_due(record, cycles, days, now, due, fragment):
    got, why = vf.full_due(record, cycles, days, now)
    assert got is due and fragment in why, why


# --- the sample on real files ------------------------------------------------------------------

@pytest.fixture
def private(tmp_path):
    d = tmp_path / 'backup'
    d.mkdir(mode=0o700)
    os.chmod(str(d), 0o700)
    return d


def random_volume(path, nblocks, seed=1):
    rng = random.Random(seed)
    with open(path, 'wb') as handle:
        for dummy in range(nblocks // 256):
            handle.write(rng.getrandbits(8 * 256 * B).to_bytes(256 * B, 'little'))
    os.chmod(path, 0o600)


def write_blocks(path, blocks, fill):
    with open(path, 'r+b') as handle:
        for b in blocks:
            handle.seek(b * B)
            handle.write(bytes([fill]) * B)


def lost_section_world(private, lost_fraction=0.05, seed=3):
    """A snapshot, an image one cycle behind, and a COW file that lost a whole section.

    The volume changed in 600 scattered blocks (listed) and in a run of ``lost_fraction`` of the
    blocks (not listed). The listed blocks were copied; the image is stale in the lost run.
    """
    snap, image = str(private / 'snap0.dev'), str(private / 'data.img')
    random_volume(snap, NBLOCKS)
    shutil.copyfile(snap, image)
    os.chmod(image, 0o600)
    rng = random.Random(seed)
    lost_n = int(NBLOCKS * lost_fraction)
    lost_start = rng.randrange(0, NBLOCKS - lost_n)
    lost = set(range(lost_start, lost_start + lost_n))
    listed = sorted(rng.sample(sorted(set(range(NBLOCKS)) - lost), 600))
    write_blocks(snap, listed, 0x11)
    write_blocks(snap, sorted(lost), 0x22)
    write_blocks(image, listed, 0x11)           # what the copy of the change list did
    cow = str(private / 'c1.cow')
    write_cow(cow, NBLOCKS * B, listed, seq_id=1, uuid=UUID)
    return snap, image, cow, listed, lost


def test_a_sample_of_512_catches_a_lost_section_of_5_percent(private):
    snap, image, cow, listed, lost = lost_section_world(private)
    # A floor of 512 blocks (verify_sample_min: 512): the copy of 600 blocks is small, so the floor wins.
    target, budget = vf.sample_target(len(listed) * B, 0.05, vf.SAMPLE_BUDGET, 512, vf.SAMPLE_MAX)
    assert target == 512
    out = bk.Ops().verify_sample(snap, image, [cow], None, target, 12345, budget, 512)
    assert (out['seed'], out['sample_size'], out['blocks_compared']) == (12345, 512, 512)
    assert out['candidate_blocks'] + out['change_list_blocks'] == NBLOCKS and out['change_list_blocks'] >= len(listed)
    assert out['allocation'].startswith('every block (no ext2/3/4 or XFS superblock')
    assert out['mismatches'] > 0 and set(out['mismatched_blocks']) <= lost
    assert out['miss_chance_5pct'] < 4e-12 and out['seconds'] >= 0
    # Not luck of one seed: every one of 30 seeds catches it (each escapes with p < 4e-12).
    for seed in range(30):
        assert bk.Ops().verify_sample(snap, image, [cow], None, target, seed, budget, 512)['mismatches']
    # The sample never looks inside the change list: a block listed but not copied is not its business.
    write_blocks(image, listed[:50], 0x33)
    write_blocks(snap, sorted(lost), 0)
    write_blocks(image, sorted(lost), 0)
    clean = bk.Ops().verify_sample(snap, image, [cow], None, 4096, 99, 10.0, 512)
    assert clean['mismatches'] == 0 and clean['blocks_compared'] == 4096


def test_the_sample_is_replayable_and_stops_when_the_time_is_spent(private):
    snap, image, cow, listed, lost = lost_section_world(private)
    a = bk.Ops().verify_sample(snap, image, [cow], None, 2000, 77, 10.0, 512)
    b = bk.Ops().verify_sample(snap, image, [cow], None, 2000, 77, 10.0, 512)
    assert a['mismatched_blocks'] == b['mismatched_blocks'] and a['mismatches'] == b['mismatches']
    ticks = iter(range(0, 10 ** 6))
    slow = bk.Ops().verify_sample(snap, image, [cow], None, 5000, 77, 0.5, 512, clock=lambda: next(ticks))
    # Every look at the clock advances it by one second: the budget (0.5 s) is spent at once, so the
    # comparison stops as soon as the minimum is compared (one batch).
    assert slow['sample_size'] == 5000 and slow['blocks_compared'] == 512
    ticks = iter(range(0, 10 ** 6))
    slow = bk.Ops().verify_sample(snap, image, [cow], None, 5000, 77, 0.5, vf.SAMPLE_MIN, clock=lambda: next(ticks))
    assert slow['blocks_compared'] == 1          # the default floor: one block, then the cap holds


@pytest.mark.parametrize('compared, total, minimum, spent, budget, per_block, want', [
    (0, 100, 1, 0.0, 1.0, None, vf.PROBE),       # nothing measured yet: a probe
    (0, 0, 1, 0.0, 1.0, None, 0),                # nothing drawn (no candidates)
    (0, 100, 1, 2.0, 1.0, None, 1),              # the free-block map spent the budget: the floor only
    (0, 5000, 512, 2.0, 1.0, None, 512),         # a floor of 512 is owed whatever it costs
    (600, 5000, 512, 2.0, 1.0, 0.001, 0),        # floor paid, time spent: stop
    (16, 5000, 1, 0.1, 1.0, 0.01, 90),           # 0.9 s left at 10 ms a block
    (16, 5000, 1, 0.1, 100.0, 0.01, vf.BATCH),   # never more than a batch
    (16, 20, 1, 0.1, 100.0, 0.01, 4),            # what is left of the draw
    (16, 5000, 1, 0.1, 1.0, 0.0, vf.BATCH),      # a pace too fast to measure
    (100, 100, 1, 0.0, 1.0, 0.01, 0),            # all compared
])
def test_next_batch(compared, total, minimum, spent, budget, per_block, want):
    assert vf.next_batch(compared, total, minimum, spent, budget, per_block) == want


def test_the_sample_drops_only_the_cached_pages_of_the_blocks_it_reads(private, monkeypatch):
    snap, image, cow, listed, lost = lost_section_world(private)
    calls = []
    real = os.posix_fadvise

    def advise(fd, offset, length, advice):
        if advice == os.POSIX_FADV_DONTNEED:
            calls.append((os.readlink('/proc/self/fd/%d' % fd), offset, length))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, 'posix_fadvise', advise)
    out = bk.Ops().verify_sample(snap, image, [cow], None, 64, 8, 10.0, 64)
    assert out['blocks_compared'] == 64
    assert calls and all(path == image and length > 0 and offset % B == 0 for path, offset, length in calls), calls
    assert sum(length for dummy, dummy2, length in calls) == 64 * B        # never the whole file (length 0)


@pytest.mark.parametrize('per_block, budget', [(0.001, 0.05), (0.0002, 0.05), (0.01, 0.005), (0.0005, 1.0)])
def test_the_time_budget_is_a_hard_cap_by_default(private, monkeypatch, per_block, budget):
    """Comparing a block costs ``per_block`` seconds on a simulated clock: the sample never spends more than the
    budget, but for the one block it always compares, and it compares what the budget pays for."""
    snap, image, cow, listed, lost = lost_section_world(private)
    shutil.copyfile(snap, image)            # nothing to find: a mismatch would be read again (and timed)
    now = [0.0]
    real = vf.compare_runs

    def timed(src, image, runs, **kw):
        runs = list(runs)
        now[0] += per_block * sum(n for dummy, n in runs)
        return real(src, image, runs, **kw)

    monkeypatch.setattr(vf, 'compare_runs', timed)
    out = bk.Ops().verify_sample(snap, image, [cow], None, 5000, 3, budget, vf.SAMPLE_MIN, clock=lambda: now[0])
    fits = int(budget / per_block + 1e-9)
    assert out['seconds'] <= max(budget, per_block) + 1e-9, out
    assert max(1, fits - 2) <= out['blocks_compared'] <= max(1, fits), out
    assert out['budget_seconds'] == budget and out['setup_seconds'] == 0.0


def test_extra_runs_are_part_of_the_change_list(private):
    snap, image, cow, listed, lost = lost_section_world(private)
    extra = [(min(lost), len(lost))]      # the lost run was in fact copied as extra blocks: not sampled
    out = bk.Ops().verify_sample(snap, image, [cow], extra, 4096, 5, 10.0, 512)
    assert out['mismatches'] == 0
    assert out['candidate_blocks'] == NBLOCKS - out['change_list_blocks']


def test_the_sample_skips_free_blocks_and_masks_as_the_checker(private):
    """On ext4, blocks the filesystem reports free are no candidates; a lost section of file data is caught."""
    if shutil.which('mkfs.ext4') is None or shutil.which('dumpe2fs') is None:
        pytest.skip('needs mkfs.ext4 and dumpe2fs (e2fsprogs)')
    tree = private / 'tree'
    tree.mkdir()
    (tree / 'data').write_bytes(random.Random(4).getrandbits(8 * (24 << 20)).to_bytes(24 << 20, 'little'))
    snap = str(private / 'snap0.dev')
    with open(snap, 'wb') as handle:
        handle.truncate(64 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', str(tree), snap], check=True)
    image = str(private / 'data.img')
    shutil.copyfile(snap, image)
    os.chmod(image, 0o600)
    fmap = fsmap.free_map(snap)
    free = set(b for s, n in fmap.runs for b in range(s, s + n))
    write_blocks(snap, sorted(free), 0x5a)          # old data in the free blocks: never a mismatch
    cow = str(private / 'c1.cow')
    write_cow(cow, 64 << 20, [], seq_id=1, uuid=UUID)
    out = bk.Ops().verify_sample(snap, image, [cow], None, 4096, 1, 10.0, 512)
    assert out['allocation'] == 'filesystem' and out['mismatches'] == 0
    assert out['candidate_blocks'] == (64 << 20) // B - fmap.free_blocks - out['change_list_blocks']
    allocated = sorted(set(range((64 << 20) // B)) - free)
    lost = allocated[len(allocated) // 2: len(allocated) // 2 + len(allocated) // 20]   # 5 % of the allocated ones
    write_blocks(snap, lost, 0x77)
    out = bk.Ops().verify_sample(snap, image, [cow], None, 512, 2024, 10.0, 512)
    assert out['mismatches'] > 0 and set(out['mismatched_blocks']) <= set(lost)


# --- the cycle on real files ---------------------------------------------------------------------

class FileOps(bk.Ops):
    """The real operations on real files; only the tracker (and its /proc view) is simulated."""

    def __init__(self, world):
        bk.Ops.__init__(self)
        self.world = world

    def tracker_ensure(self, device, state, check_mode=False, **kw):
        w = self.world
        if state == 'snapshot':
            if not check_mode:
                w['seq'] += 1
            seq = w['seq'] + (1 if check_mode else 0)
            return dict(changed=True, actions=['transition-to-snapshot'], minor=0,
                        tracker={'minor': 0, 'seq_id': seq, 'uuid': UUID},
                        previous_cow_file=w['cows'].get(seq - 1), rebaseline_required=False)
        return dict(changed=True, actions=['transition-to-incremental'])

    def read_tracker(self, minor):
        return procinfo.Tracker(minor=0, cow_file='/.datto_0_%d' % self.world['seq'], block_device='/dev/vdb', state=2,
                                seq_id=self.world['seq'], uuid=UUID)

    def device_facts(self, device):
        return {'rdev': None, 'size': NBLOCKS * B, 'names': [device]}

    def boot_check(self, path):
        return None, None

    def boot_id(self):
        return 'boot-1'

    def sync(self, snapshot, cow_file, image, verify, extra_runs=None):
        seq = self.world['seq']
        t = procinfo.Tracker(minor=0, cow_file='/.cow', block_device='/dev/vdz', state=3, seq_id=seq, uuid=UUID)

        def reader(timeout=10):
            return procinfo.ProcInfo(loaded=True, version='0.12.1', devices=[t])
        return sync_mod.run(0, cow_file, image, verify=verify, extra_runs=extra_runs, procinfo_reader=reader)


@pytest.fixture
def world(private, monkeypatch):
    monkeypatch.setattr(sync_mod, 'SNAPSHOT_DEVICE', str(private / 'snap%d.dev'))
    snap = str(private / 'snap0.dev')
    random_volume(snap, NBLOCKS)
    return {'seq': 0, 'cows': {}, 'snap': snap, 'dir': private, 'image': str(private / 'data.img'),
            'state': str(private / 'state')}


def cycle(world, clock=None, check_mode=False, **extra):
    p = dict(device='/data', image=world['image'], state_dir=world['state'], verify='none',
             verify_sample_seed=4242)
    p.update(extra)
    c = bk.Cycle(p, FileOps(world))
    if clock is not None:
        c.clock = lambda: clock
    return c.run(check_mode=check_mode)


def change(world, listed, lost=()):
    """The volume changes in ``listed`` (and ``lost``); the COW file of this snapshot lists ``listed`` only."""
    write_blocks(world['snap'], listed, random.Random(len(listed)).randrange(256))
    write_blocks(world['snap'], lost, 0x22)
    path = str(world['dir'] / ('c%d.cow' % world['seq']))
    write_cow(path, NBLOCKS * B, listed, seq_id=world['seq'], uuid=UUID)
    world['cows'][world['seq']] = path


def same(a, b):
    with open(a, 'rb') as x, open(b, 'rb') as y:
        return x.read() == y.read()


def test_a_lost_section_fails_the_cycle_then_the_next_one_rebaselines(world):
    # A floor of 512 blocks (the default budget alone compares a handful on copies this small).
    first = cycle(world, verify_sample_min=512)
    assert first['mode'] == 'full' and first['verification']['sample'] is None
    change(world, list(range(100, 400)))
    good = cycle(world, verify_sample_min=512)
    sample = good['verification']['sample']
    assert good['mode'] == 'incremental' and sample['result'] == 'ok' and sample['seed'] == 4242
    assert sample['blocks_compared'] >= 512 and sample['mismatches'] == 0
    assert any('compare a random sample of 512 allocated block(s)' in a and '(seed 4242)' in a for a in good['actions'])
    record = bk.load_record(world['state'], world['image'])
    assert record['last_verify_sample']['seed'] == 4242 and record['cycles_since_full_verify'] == 1

    lost = list(range(8000, 8000 + NBLOCKS // 20))     # 5 % of the volume, in no change list
    change(world, list(range(500, 600)), lost)
    with pytest.raises(bk.BackupError) as info:
        cycle(world, verify_sample_min=512)
    details = info.value.details
    assert (details['step'], details['image_state'], details['next_run']) == ('verify', 'resumable', 'full')
    assert 'sampled verification found' in info.value.msg and 'partly updated' in info.value.msg
    assert details['verification']['sample']['mismatches'] > 0
    assert set(details['mismatched_blocks']) <= set(lost)
    record = bk.load_record(world['state'], world['image'])
    assert record['last_result'] == 'failed' and record['step'] == 'verify' and record['next_run'] == 'full'
    assert record['last_verify_sample']['result'] == 'failed' and record['image_state'] == 'resumable'
    meta = image_mod.load(world['image'])
    assert meta['verify_failed']['msg'].startswith('The sampled verification found')    # never marked good
    with pytest.raises(image_mod.ImageError, match='failed verification'):        # the sync module refuses it
        image_mod.plan_sync(meta, world['image'], UUID, meta['seq_id'], meta['seq_id'] + 1, NBLOCKS * B, None)

    plan = cycle(world, check_mode=True)
    assert plan['mode'] == 'full'
    nxt = cycle(world)
    assert nxt['mode'] == 'full' and nxt['reason'] == 'the image failed verification'
    assert same(world['snap'], world['image'])
    assert 'verify_failed' not in image_mod.load(world['image'])
    record = bk.load_record(world['state'], world['image'])
    assert record['last_result'] == 'ok' and record['cycles_since_full_verify'] == 0


def test_the_image_mark_alone_forces_a_full_backup():
    ops = FakeOps(meta=dict(META1, verify_failed={'msg': 'x'}), record=REC_OK)
    assert bk.run_cycle(params(verify_sample_budget=0), ops=ops)['reason'] == 'the image failed verification'


def test_full_verification_on_schedule_with_a_fake_clock(world):
    t0 = 1000 * DAY
    cycle(world, clock=t0, full_verify_every_days=30)
    change(world, [1, 2, 3])
    r = cycle(world, clock=t0 + 10 * DAY, full_verify_every_days=30)
    assert r['verification']['full'] is None and r['verification']['sample']['result'] == 'ok'
    assert 'in 20.0 day' in r['verification']['full_verify_reason']
    change(world, [4, 5])
    r = cycle(world, clock=t0 + 30 * DAY, full_verify_every_days=30)
    full = r['verification']['full']
    assert r['verification']['full_verify_due'] and full['result'] == 'ok' and full['mismatches'] == 0
    assert r['verification']['sample'] is None      # the full one covers it
    assert any(a.startswith('verify the whole image') for a in r['actions'])
    record = bk.load_record(world['state'], world['image'])
    assert record['last_full_verify']['epoch'] == t0 + 30 * DAY and record['last_full_verify']['result'] == 'ok'
    assert record['full_verify_every_days'] == 30 and record['cycles_since_full_verify'] == 0
    # Counted again from that verification.
    change(world, [6])
    plan = cycle(world, clock=t0 + 59 * DAY, check_mode=True, full_verify_every_days=30)
    assert plan['verification']['full'] is None and plan['verification']['sample']['planned']
    plan = cycle(world, clock=t0 + 60 * DAY, check_mode=True, full_verify_every_days=30)
    assert plan['verification']['full'] == {'planned': True, 'trigger': plan['verification']['full_verify_reason']}
    assert plan['verification']['full_verify_due'] and plan['verification']['sample'] is None


def test_full_verification_every_n_cycles_finds_what_the_sample_cannot(world):
    cycle(world, full_verify_every_days=0, full_verify_every_cycles=3)
    for expect_full in (False, False, True, False):
        change(world, [10, 11])
        r = cycle(world, full_verify_every_days=0, full_verify_every_cycles=3)
        assert (r['verification']['full'] is not None) is expect_full
    # One stale block outside any change list: a sample of 512 of 16k blocks most likely misses it,
    # the full verification (due at the third cycle) cannot.
    change(world, [12], [9000])
    r = cycle(world, full_verify_every_days=0, full_verify_every_cycles=3, verify_sample_budget=0)
    assert r['verification']['sample'] is None and r['verification']['full'] is None
    change(world, [13])
    with pytest.raises(bk.BackupError) as info:
        cycle(world, full_verify_every_days=0, full_verify_every_cycles=3)
    details = info.value.details
    assert (details['step'], details['next_run']) == ('verify', 'full')
    assert details['verification']['full']['result'] == 'failed' and details['mismatched_blocks'] == [9000]
    assert 'The full verification found 1 block(s)' in info.value.msg
    record = bk.load_record(world['state'], world['image'])
    assert record['last_full_verify']['result'] == 'failed'
    assert image_mod.load(world['image'])['verify_failed']


def test_verify_full_counts_as_the_full_verification(world):
    cycle(world, verify='full')
    record = bk.load_record(world['state'], world['image'])
    assert record['last_full_verify']['trigger'] == 'verify=full of the full copy'
    change(world, [7, 8])
    r = cycle(world, verify='full')
    assert r['verification']['full']['trigger'] == 'verify=full' and r['verification']['sample'] is None
    assert bk.load_record(world['state'], world['image'])['cycles_since_full_verify'] == 0


# --- the failure paths with the scripted host ---------------------------------------------------

def test_sample_read_error_fails_the_cycle_and_marks_the_image():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'verify_sample': DattobdError('Read error while verifying')})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(full_verify_every_days=0), ops=ops)
    details = info.value.details
    assert (details['step'], details['image_state'], details['next_run']) == ('verify', 'resumable', 'full')
    assert 'could not be completed: Read error' in info.value.msg
    assert started(ops) == ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1,
                            'verify_sample %s' % IMG, 'ensure incremental', 'mark_unverified']
    assert ops.saved[-1]['last_verify_sample']['result'] == 'failed'
    assert [e['path'] for e in ops.saved[-1]['pending_cow_files']] == [P1]


def test_sample_mismatch_and_unmarkable_image_is_a_warning():
    class NoMark(FakeOps):
        def mark_unverified(self, image, msg):
            raise OSError(28, 'No space left on device')
    ops = NoMark(meta=META1, record=REC_OK)
    ops.sample_bad = [77, 78]
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(full_verify_every_days=0), ops=ops)
    assert 'found 2 block(s)' in info.value.msg and info.value.details['mismatched_blocks'] == [77, 78]
    assert any('Cannot mark the image metadata' in w for w in info.value.details['warnings'])


def test_defaults_size_the_sample_from_the_copy():
    ops = FakeOps(meta=META1, record=dict(REC_OK, last_full_epoch=None, last_full_verify={
        'result': 'ok', 'epoch': 10 ** 12}))
    result = bk.run_cycle(dict(device='/data', image=IMG, state_dir='/state'), ops=ops)
    # The copy wrote 724992 bytes in 0.5 s: 10 % of that time pays for 8 blocks (read twice each).
    assert ops.sample_args['target'] == 8 and ops.sample_args['budget_seconds'] == 0.05
    assert ops.sample_args['minimum'] == 1
    assert ops.sample_args['cow_files'] == [P1] and 0 <= ops.sample_args['seed'] <= vf.SEED_MAX
    assert result['verification']['sample']['seed'] == ops.sample_args['seed']
    assert ops.saved[-1]['cycles_since_full_verify'] == 1


def test_resume_with_verify_full_compares_the_whole_image():
    ops = FakeOps(meta=dict(META1, pending={'seq_id_from': 1, 'seq_id_to': 2, 'cow_file': P1}),
                  record={'pending_cow_files': [{'path': P1, 'seq_id': 1}], 'boot_id': 'boot-1'},
                  snap={'previous_cow_file': '/data/.datto_0_2', 'tracker': {'minor': 0, 'seq_id': 3, 'uuid': 'ab' * 16}})
    result = bk.run_cycle(params(verify='full', full_verify_every_days=0), ops=ops)
    assert result['mode'] == 'resume' and result['verification']['full']['trigger'] == 'verify=full'
    assert ops.verify_cow_files == [P1, '/data/.datto_0_2']


def test_check_mode_reports_what_would_run():
    ops = FakeOps(meta=META1, record=dict(REC_OK, last_full_epoch=None))
    plan = bk.run_cycle(dict(device='/data', image=IMG, state_dir='/state'), ops=ops, check_mode=True)
    assert plan['verification']['full_verify_due'] and plan['verification']['full']['planned']
    assert 'never verified' in plan['verification']['full']['trigger']
    ops = FakeOps(meta=META1, record=REC_OK)
    plan = bk.run_cycle(params(verify_sample_seed=9, full_verify_every_days=0), ops=ops, check_mode=True)
    assert plan['verification']['sample'] == {'planned': True, 'seed': 9, 'sample_min': 1, 'sample_max': 65536,
                                              'budget': 0.1}
    assert 'compare a random sample of at most 65536 allocated block(s) outside the change list of %s with ' \
           '/dev/datto0 (what 10 %% of the copy time pays for, at least 1; seed 9)' % IMG in plan['actions']
    assert ops.saved == [] and 'verify_sample %s' % IMG not in ops.calls
    plan = bk.run_cycle(params(verify_sample_budget=0, verify='changed'), ops=FakeOps(image_exists=False),
                        check_mode=True)
    assert plan['verification']['full'] == {'planned': True, 'trigger': 'verify=changed of the full copy'}
    plan = bk.run_cycle(params(), ops=FakeOps(meta=dict(META1, seq_id=2), record=REC_OK,
                                              snap={'previous_cow_file': None}), check_mode=True)
    assert plan['verification']['full_verify_reason'] == 'nothing to copy'


def test_an_incremental_cycle_parses_its_cow_file_once(world, monkeypatch):
    """The space check, the copy, the verification and the sample share one parse of the COW index."""
    cycle(world)
    change(world, list(range(100, 400)))
    parsed = count_parses(monkeypatch)
    out = cycle(world, verify='changed')
    assert out['mode'] == 'incremental' and out['verification']['sample']['blocks_compared'] >= 1
    assert parsed and len(parsed) == len(set(parsed)), parsed
