# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Why a backup is full: every path that ends in a full copy carries a stable reason (issue 23, item 5).

The reason is in the module result (``reason``, ``reason_detail``), the backup record (``reason``, and
``next_full_reason`` while a failed cycle makes the next one full) and, from there, the role's line
and the fleet report (tests of the filters). A failed cycle's ``next_full_reason`` is what the next
cycle reports as its reason: the chain is tested end to end with the scripted host of test_backup.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_plan as plan
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.test_backup import (
    FakeOps, META1, P1, REC_OK, UUID, params)

OTHER_UUID = 'cd' * 16
NEW_TRACKER = {'before': {}, 'previous_cow_file': None, 'tracker': {'minor': 0, 'seq_id': 1, 'uuid': OTHER_UUID}}
REC_OLD_BOOT = dict(REC_OK, boot_id='boot-0')


def boot(status, error_name=None):
    """A boot check state file (docs/boot.md) asking a full backup of /dev/vdb with the verdict ``status``."""
    volume = {'minor': 0, 'block_device': '/dev/vdb', 'rebaseline_required': True, 'status': status,
              'error_name': error_name, 'message': 'minor 0 (/dev/vdb): %s.' % status}
    return ({'schema': 1, 'rebaseline_required': [0], 'volumes': [volume]}, 200)


# id, FakeOps kwargs, params, the reason of the full copy: every way a cycle ends in a full copy
FULL_PATHS = [
    ('no image', dict(image_exists=False), {}, plan.FIRST_BACKUP),
    ('full requested', dict(meta=META1, record=REC_OK), {'full': True}, plan.REQUESTED),
    ('image without metadata', dict(meta=None, record=REC_OK), {}, plan.NO_METADATA),
    ('image failed verification', dict(meta=dict(META1, verify_failed='3 blocks differ'), record=REC_OK), {},
     plan.VERIFY_FAILED),
    ('record of an older version asks full', dict(meta=META1, record=dict(REC_OK, next_run='full')), {},
     plan.LAST_RUN_FAILED),
    ('boot check: tracker missing', dict(meta=META1, record=REC_OK, boot=boot('missing')), {},
     plan.UNCLEAN_SHUTDOWN),
    ('boot check: COW file not clean', dict(meta=META1, record=REC_OK, boot=boot('failed', 'EINVAL')), {},
     plan.UNCLEAN_SHUTDOWN),
    ('boot check: tracker failed', dict(meta=META1, record=REC_OK, boot=boot('failed', 'EFBIG')), {},
     plan.FAILED_AT_BOOT),
    ('boot check: mount not seen', dict(meta=META1, record=REC_OK, boot=boot('unverified')), {},
     plan.MOUNT_NOT_SEEN),
    ('boot check: late reload', dict(meta=META1, record=REC_OK, boot=boot('late')), {}, plan.LATE_RELOAD),
    ('boot check: minor listed only', dict(meta=META1, record=dict(REC_OK, minor=0), boot=(
        {'schema': 1, 'rebaseline_required': [0], 'volumes': []}, 200)), {}, plan.UNCLEAN_SHUTDOWN),
    ('failed tracker set up again', dict(meta=META1, record=REC_OK, snap={'rebaseline_required': True}), {},
     plan.REBASELINED),
    ('tracker gone after a reboot', dict(meta=META1, record=REC_OLD_BOOT, snap=NEW_TRACKER), {}, plan.LOST_AT_BOOT),
    ('tracker gone in the same boot', dict(meta=META1, record=REC_OK, snap=NEW_TRACKER), {}, plan.TRACKER_LOST),
    ('another snapshot series', dict(meta=dict(META1, uuid=OTHER_UUID), record=REC_OK), {}, plan.NEW_SERIES),
    ('broken chain of COW files', dict(meta=META1, record=REC_OK, snap={
        'previous_cow_file': '/data/.datto_0_3', 'tracker': {'minor': 0, 'seq_id': 4, 'uuid': UUID}}), {},
     plan.CHAIN_BROKEN),
    ('first backup after a reboot, after_reboot=full', dict(meta=META1, record=REC_OLD_BOOT), {'after_reboot': 'full'},
     plan.AFTER_REBOOT_FULL),
    ('first backup after a reboot, mount writes unknown', dict(
        meta=META1, record=REC_OLD_BOOT, mount=fsmap.MountMap(None, note='no ext2/3/4 or XFS superblock')), {},
     plan.MOUNT_WRITES_UNKNOWN),
    # the measured hard reset during an incremental copy, without the systemd role's boot check: the
    # record still lists the COW file of the interrupted cycle, and no tracker came back at boot
    ('hard reset mid-copy, no boot check', dict(meta=dict(META1, pending={'seq_id_from': 1, 'seq_id_to': 2,
                                                                          'cow_file': P1}),
                                                record={'pending_cow_files': [{'path': P1, 'seq_id': 1}],
                                                        'boot_id': 'boot-0', 'started': '2026-12-01T10:00:00Z'},
                                                snap=NEW_TRACKER), {}, plan.LOST_AT_BOOT),
    ('hard reset mid-copy, boot check', dict(meta=META1, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}],
                                                                 'boot_id': 'boot-0'},
                                             boot=boot('missing'), snap=NEW_TRACKER), {}, plan.UNCLEAN_SHUTDOWN),
]


@pytest.mark.parametrize('case_id, ops_kw, extra, reason', FULL_PATHS, ids=[c[0] for c in FULL_PATHS])
def test_every_full_copy_says_why(case_id, ops_kw, extra, reason):
    ops = FakeOps(**ops_kw)
    result = bk.run_cycle(params(**extra), ops=ops)
    assert result['mode'] == 'full'
    assert result['reason'] == reason and type(result['reason']) is str  # pylint: disable=unidiomatic-typecheck
    assert result['reason'] in plan.FULL_REASONS
    record = ops.saved[-1]
    assert (record['mode'], record['reason'], record['next_full_reason']) == ('full', reason, None)
    assert record['reason_detail'] == result['reason_detail']


@pytest.mark.parametrize('case_id, ops_kw, extra, reason', FULL_PATHS, ids=[c[0] for c in FULL_PATHS])
def test_check_mode_says_why_as_well(case_id, ops_kw, extra, reason):
    """Check mode knows the reason when it is decided before the snapshot (the others: after it)."""
    result = bk.run_cycle(params(**extra), ops=FakeOps(**ops_kw), check_mode=True)
    if result['mode'] == 'full':
        assert result['reason'] in plan.FULL_REASONS


# id, FakeOps kwargs of the failing cycle, params, next_full_reason: every failure after which the next run is full
FAILURES = [
    ('snapshot fails, tracker lost', dict(meta=META1, record=REC_OK, fail={
        'ensure_snapshot': DattobdError('EFBIG'), 'ensure_incremental': DattobdError('failed state')}), {},
     plan.TRACKER_FAILED),
    ('snapshot times out: driver wedged', dict(meta=META1, record=REC_OK, fail={
        'ensure_snapshot': DriverTimeout('dbdctl transition-to-snapshot did not finish within 60 seconds.')}), {},
     plan.DRIVER_WEDGED),
    ('damaged COW file', dict(meta=META1, record=REC_OK, fail={
        'sync': DattobdError('COW file is damaged', cow_damaged=True)}), {}, plan.COW_DAMAGED),
    ('copy fails, tracker lost', dict(meta=META1, record=REC_OK, fail={
        'sync': OSError(28, 'No space left on device'), 'ensure_incremental': DattobdError('x')}), {},
     plan.TRACKER_FAILED),
    ('first full copy fails', dict(image_exists=False, fail={'full_copy': DattobdError('read error')}), {},
     plan.FIRST_BACKUP),
    ('requested full copy fails', dict(meta=META1, record=REC_OK, fail={'full_copy': DattobdError('read error')}),
     {'full': True}, plan.REQUESTED),
    ('verification fails', dict(meta=META1, record=REC_OK, fail={
        'verify_sample': DattobdError('Read error while verifying')}), {'verify_sample_budget': 0.1},
     plan.VERIFY_FAILED),
    ('verify hook fails', dict(meta=META1, record=REC_OK, hook_rc={'verify1': 1}),
     {'verify_hooks': [{'argv': ['/usr/bin/check', 'verify1']}]}, plan.VERIFY_HOOK_FAILED),
    ('back to incremental fails, tracker failed', dict(meta=META1, record=REC_OK, tracker_failed=True, fail={
        'ensure_incremental': DattobdError('EFBIG')}), {}, plan.TRACKER_FAILED),
    ('back to incremental times out', dict(meta=META1, record=REC_OK, fail={
        'ensure_incremental': DriverTimeout('dbdctl transition-to-incremental 0 did not finish.')}), {},
     plan.DRIVER_WEDGED),
]


@pytest.mark.parametrize('case_id, ops_kw, extra, why', FAILURES, ids=[c[0] for c in FAILURES])
def test_a_failure_that_makes_the_next_run_full_says_why_and_the_next_run_repeats_it(case_id, ops_kw, extra, why):
    ops = FakeOps(**ops_kw)
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(**extra), ops=ops)
    details = info.value.details
    assert details['next_run'] == 'full' and details['next_full_reason'] == why
    assert 'The next run takes a full backup (%s).' % why in info.value.msg
    record = ops.saved[-1]
    assert (record['next_run'], record['next_full_reason']) == ('full', why)
    # the next cycle: same image (its metadata as the failure left it), the record the failure wrote
    meta = dict(META1, verify_failed='x') if why == plan.VERIFY_FAILED else META1
    nxt = FakeOps(meta=meta, record=record, image_exists=ops_kw.get('image_exists', True))
    result = bk.run_cycle(params(), ops=nxt)
    assert (result['mode'], result['reason']) == ('full', why)
    assert nxt.saved[-1]['reason'] == why and nxt.saved[-1]['next_full_reason'] is None


def test_every_reason_is_reached_by_a_tested_path():
    """The table above covers every reason the library can give a full backup (check mode's own aside)."""
    reached = set(c[3] for c in FULL_PATHS) | set(c[3] for c in FAILURES)
    assert set(plan.FULL_REASONS) - reached == {plan.REBASELINE_PLANNED}
    assert len(set(plan.FULL_REASONS)) == len(plan.FULL_REASONS)


def test_a_timed_out_snapshot_tries_no_further_driver_call():
    """Item 1: the snapshot step timing out is the only driver timeout of the cycle (no back to incremental)."""
    ops = FakeOps(meta=META1, record=REC_OK, fail={'ensure_snapshot': DriverTimeout('t', timeout=60)})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops)
    assert [c for c in ops.calls if c.startswith(('ensure', 'read_tracker'))] == [
        'ensure snapshot (check)', 'ensure snapshot']
    assert any('not transitioned back to incremental' in w for w in info.value.details['warnings'])
    assert info.value.details['step'] == 'snapshot'


def test_a_timed_out_copy_tries_no_further_driver_call():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'sync': DriverTimeout('Reading /proc/datto-info did not finish')})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops)
    assert [c for c in ops.calls if c.startswith(('ensure', 'read_tracker'))] == [
        'ensure snapshot (check)', 'ensure snapshot']
    assert info.value.details['next_full_reason'] == plan.DRIVER_WEDGED
