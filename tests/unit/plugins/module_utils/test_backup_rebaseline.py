# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Re-baseline by comparison in the backup cycle (issue 23, item 6).

A full backup with a good earlier image (backup_plan.rebaseline_method) compares the snapshot with
the image in place and writes only the blocks that differ, journalled in the image metadata; check
mode reports the same method as the run; an interrupted comparison is never taken for a good image, and an
image an interrupted copy left partly updated is completed by comparison.
The cycle runs against the scripted host of test_backup; the real operations on real files at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_plan as plan
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as image_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.copy import CopyError
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.test_backup import (
    FakeOps, IMG, META1, META1_PENDING, P1, REC_OK, UUID, params, started)
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.test_compare_copy import block, make, read
# the root-only directory fixture of the real-file tests, used here by name
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.test_backup import (  # noqa: F401 pylint: disable=unused-import
    private)

SIZE = 67108864
# a record of an image a cycle completed (what _complete writes)
REC_GOOD = dict(REC_OK, last_result='ok', last_success='2026-12-01T10:00:00Z', image_state='complete')
# the boot check found the tracker lost: an unclean shutdown, the image of the last cycle is good
BOOT_MISSING = ({'schema': 1, 'rebaseline_required': [0], 'volumes': [
    {'minor': 0, 'block_device': '/dev/vdb', 'rebaseline_required': True, 'status': 'missing'}]}, 200)
JOURNAL = dict(META1, pending={'rebaseline': 'compare', 'uuid': UUID, 'seq_id_from': None, 'seq_id_to': 2,
                               'reason': plan.UNCLEAN_SHUTDOWN})

COMPARE_CALLS = ['check_destination full=False', 'ensure snapshot', 'check_destination full=False',
                 'begin_rebaseline 2', 'compare_copy /dev/datto0 %s' % IMG, 'init_meta 2', 'ensure incremental',
                 'unlink %s' % P1]


def test_an_unclean_shutdown_with_a_good_image_rebaselines_by_comparison():
    ops = FakeOps(meta=META1, record=REC_GOOD, boot=BOOT_MISSING)
    result = bk.run_cycle(params(), ops=ops)
    assert started(ops) == COMPARE_CALLS  # no .partial copy, no rename, no removed metadata
    assert (result['mode'], result['reason']) == ('full', plan.UNCLEAN_SHUTDOWN)
    assert ops.journal_reason == plan.UNCLEAN_SHUTDOWN
    assert result['rebaseline'] == {'method': 'compare', 'why': 'the image holds seq_id 1 of a successful cycle',
                                    'blocks_read': 16384, 'blocks_differing': 3, 'bytes_written': 12288}
    assert (result['blocks'], result['bytes'], result['image_state']) == (16384, 12288, 'complete')
    record = ops.saved[-1]
    assert record['rebaseline']['method'] == 'compare' and record['last_result'] == 'ok'
    assert 'journal the re-baseline by comparison in %s' % image_mod.sidecar_path(IMG) in result['actions']


def test_verification_of_a_comparison_is_that_of_a_full_copy():
    ops = FakeOps(meta=META1, record=REC_GOOD)
    result = bk.run_cycle(params(full=True, verify='changed'), ops=ops)
    calls = started(ops)
    assert calls.index('compare_copy /dev/datto0 %s' % IMG) < calls.index('verify_copy %s' % IMG) < \
        calls.index('init_meta 2')
    assert result['verified'] is True and result['verification']['full']['result'] == 'ok'


# id, FakeOps kwargs, params, the method of the full backup: check mode must report the run's
METHODS = [
    ('good image, full requested', dict(meta=META1, record=REC_GOOD), {'full': True}, 'compare'),
    ('good image, unclean shutdown', dict(meta=META1, record=REC_GOOD, boot=BOOT_MISSING), {}, 'compare'),
    ('rebaseline=full', dict(meta=META1, record=REC_GOOD), {'full': True, 'rebaseline': 'full'}, 'full'),
    ('no image', dict(image_exists=False), {}, 'full'),
    ('image smaller than the volume', dict(meta=META1, record=REC_GOOD, boot=BOOT_MISSING), {'image_size': SIZE - 4096},
     'full'),
    ('image larger than the volume', dict(meta=dict(META1, size=SIZE + 4096), record=REC_GOOD), {'full': True,
                                                                                                 'image_size': SIZE + 4096},
     'full'),
    ('image failed verification', dict(meta=dict(META1, verify_failed='x'), record=REC_GOOD), {}, 'full'),
    # an image an interrupted copy left partly updated is compared: every block that differs is written
    ('interrupted incremental copy', dict(meta=META1_PENDING, record=REC_GOOD), {'full': True}, 'compare'),
    ('interrupted incremental copy, tracker lost at boot', dict(meta=META1_PENDING, record=REC_GOOD, boot=BOOT_MISSING),
     {}, 'compare'),
    ('no successful cycle recorded', dict(meta=META1, record=REC_OK), {'full': True}, 'full'),
    ('image left partly updated', dict(meta=META1, record=dict(REC_GOOD, image_state='resumable')), {'full': True},
     'compare'),
    ('interrupted comparison', dict(meta=JOURNAL, record=dict(REC_GOOD, image_state='resumable', next_run='full',
                                                              next_full_reason=plan.UNCLEAN_SHUTDOWN)), {}, 'compare'),
]


def test_a_hard_reset_during_an_incremental_copy_is_completed_by_comparison():
    """Measured on the real driver (issue 23): a hard reset cut an incremental copy, the tracker was lost
    at boot. The image is partly updated (its journal names the copy); the comparison writes every block
    that differs from the new snapshot, so the image ends equal to it, and says why."""
    ops = FakeOps(meta=META1_PENDING, record=REC_GOOD, boot=BOOT_MISSING)
    result = bk.run_cycle(params(), ops=ops)
    assert (result['mode'], result['reason']) == ('full', plan.UNCLEAN_SHUTDOWN)
    assert result['rebaseline']['method'] == 'compare'
    assert result['rebaseline']['why'] == 'completes the interrupted incremental copy (seq_id 1 -> 2) by comparison with the image'
    calls = started(ops)
    assert 'compare_copy /dev/datto0 %s' % IMG in calls and 'full_copy /dev/datto0 %s.partial' % IMG not in calls
    assert calls.index('begin_rebaseline 2') < calls.index('compare_copy /dev/datto0 %s' % IMG) < calls.index('init_meta 2')
    assert result['image_state'] == 'complete'


def test_a_hard_reset_mid_copy_without_boot_integration_is_completed_by_comparison():
    """The faults scenario's guest has no boot integration: after the reset no tracker is there, the
    snapshot step sets up a new series, and the partly updated image is still compared, not rewritten."""
    new_uuid = '0' * 32
    ops = FakeOps(meta=META1_PENDING, record=dict(REC_GOOD, boot_id='boot-0', pending_cow_files=[{'path': P1, 'seq_id': 1}]),
                  snap={'before': {}, 'previous_cow_file': None, 'tracker': {'minor': 0, 'seq_id': 1, 'uuid': new_uuid}})
    result = bk.run_cycle(params(), ops=ops)
    assert (result['mode'], result['reason']) == ('full', plan.LOST_AT_BOOT)
    assert result['rebaseline']['method'] == 'compare'
    assert result['rebaseline']['why'].startswith('completes the interrupted incremental copy (seq_id 1 -> 2)')
    assert 'compare_copy /dev/datto0 %s' % IMG in started(ops)
    assert result['image_state'] == 'complete' and started(ops)[-3:-1] == ['init_meta 1', 'ensure incremental']


def _ops(ops_kw, extra):
    extra = dict(extra)
    ops = FakeOps(**ops_kw)
    if 'image_size' in extra:
        ops.image_size = extra.pop('image_size')
    return ops, extra


@pytest.mark.parametrize('case_id, ops_kw, extra, method', METHODS, ids=[c[0] for c in METHODS])
def test_check_mode_reports_the_rebaseline_method_a_run_takes(case_id, ops_kw, extra, method):
    ops, kw = _ops(ops_kw, extra)
    planned = bk.run_cycle(params(**kw), ops=ops, check_mode=True)
    ops, kw = _ops(ops_kw, extra)
    done = bk.run_cycle(params(**kw), ops=ops)
    assert planned['mode'] == done['mode'] == 'full'
    assert planned['rebaseline']['method'] == done['rebaseline']['method'] == method
    assert planned['rebaseline']['why'] == done['rebaseline']['why']
    compared = any(a.startswith('compare /dev/datto0 with %s' % IMG) for a in planned['actions'])
    assert compared == ('compare_copy /dev/datto0 %s' % IMG in ops.calls) == (method == 'compare')
    assert ('full_copy /dev/datto0 %s.partial' % IMG in ops.calls) == (method == 'full')


def test_an_incremental_cycle_reports_no_rebaseline_and_clears_the_records():
    ops = FakeOps(meta=META1, record=dict(REC_GOOD, rebaseline={'method': 'compare'}))
    result = bk.run_cycle(params(), ops=ops)
    assert result['mode'] == 'incremental' and result['rebaseline'] is None and ops.saved[-1]['rebaseline'] is None
    assert bk.run_cycle(params(), ops=FakeOps(meta=META1, record=REC_GOOD), check_mode=True)['rebaseline'] is None


@pytest.mark.parametrize('failure', [CopyError('block 7: Input/output error (EIO)'),
                                     bk.Interrupted('Interrupted by SIGTERM.'), OSError(28, 'No space left')])
def test_an_interrupted_comparison_is_journalled_and_completed_by_the_next_run(failure):
    ops = FakeOps(meta=META1, record=REC_GOOD, boot=BOOT_MISSING, fail={'compare_copy': failure})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops)
    details = info.value.details
    assert (details['image_state'], details['next_run'], details['next_full_reason']) == (
        'resumable', 'full', plan.UNCLEAN_SHUTDOWN)
    assert 'The re-baseline by comparison failed' in info.value.msg
    assert 'do not use it for a restore' in info.value.msg
    assert 'init_meta 2' not in ops.calls and 'unlink %s.partial' % IMG not in ops.calls
    record = ops.saved[-1]
    # the next run: the image as the comparison left it (journalled), the record the failure wrote
    nxt = FakeOps(meta=JOURNAL, record=record)
    result = bk.run_cycle(params(), ops=nxt)
    assert (result['mode'], result['reason'], result['rebaseline']['method']) == (
        'full', plan.UNCLEAN_SHUTDOWN, 'compare')
    assert result['rebaseline']['why'].startswith('completes the interrupted comparison')
    assert 'compare_copy /dev/datto0 %s' % IMG in nxt.calls and 'init_meta 2' in nxt.calls


@pytest.mark.parametrize('record', [REC_GOOD, {}], ids=['record of the last good cycle', 'no record'])
def test_a_journalled_image_is_never_taken_for_a_good_one(record):
    """The process was killed mid-comparison (no failure record written): the journal alone makes the run full."""
    ops = FakeOps(meta=JOURNAL, record=record)
    result = bk.run_cycle(params(), ops=ops)
    assert (result['mode'], result['reason']) == ('full', plan.UNCLEAN_SHUTDOWN)
    assert not any(c.startswith(('sync', 'union_copy')) for c in ops.calls)
    # without a recorded good cycle the journalled image is no base: a new image is written
    assert result['rebaseline']['method'] == ('compare' if record else 'full')
    with pytest.raises(image_mod.ImageError, match='re-baseline by comparison to snapshot 2 was interrupted'):
        image_mod.plan_sync(JOURNAL, IMG, UUID, 1, 2, SIZE, None)


def test_a_failed_verification_after_a_comparison_marks_the_image_and_the_next_run_writes_a_new_one():
    ops = FakeOps(meta=META1, record=REC_GOOD, fail={'verify_copy': DattobdError('Verification failed: 2 block(s)')})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(full=True, verify='changed'), ops=ops)
    details = info.value.details
    assert (details['image_state'], details['next_full_reason']) == ('resumable', plan.VERIFY_FAILED)
    assert 'mark_unverified' in ops.calls and 'init_meta 2' not in ops.calls
    nxt = FakeOps(meta=dict(JOURNAL, verify_failed={'msg': 'x'}), record=ops.saved[-1])
    result = bk.run_cycle(params(), ops=nxt)
    assert (result['reason'], result['rebaseline']['method']) == (plan.VERIFY_FAILED, 'full')
    assert 'full_copy /dev/datto0 %s.partial' % IMG in nxt.calls


def test_the_rebaseline_option_is_validated():
    with pytest.raises(DattobdError, match='rebaseline must be one of compare, full'):
        bk.run_cycle(params(rebaseline='diff'), ops=FakeOps(meta=META1, record=REC_GOOD))
    assert bk.argument_spec()['rebaseline'] == dict(type='str', default='compare', choices=['compare', 'full'])


# --- the real operations on real files -----------------------------------------------------------

def test_real_ops_compare_copy_journal_and_verify(private, monkeypatch):
    n = 64
    snap = make(private / 'snap', [block(2, i) if i in (5, 6, 30) else block(1, i) for i in range(n)])
    image = make(private / 'img', [block(1, i) for i in range(n)])
    ops = bk.Ops(read_depth=4)
    meta = ops.init_meta(image, UUID, 1, n * 4096)
    meta = ops.begin_rebaseline(image, meta, 'cd' * 16, 2, plan.UNCLEAN_SHUTDOWN)
    assert image_mod.rebaseline_pending(ops.load_meta(image))['seq_id_to'] == 2
    assert plan.decide_mode(False, {}, ops.load_meta(image), True, None, None, ['/dev/vdb'], None)[0] == 'full'
    written = []
    real = os.pwrite
    monkeypatch.setattr(os, 'pwrite', lambda fd, data, off: written.append(len(data)) or real(fd, data, off))
    out = ops.compare_copy(snap, image)
    assert (out['blocks_read'], out['blocks_differing'], out['bytes_written'], out['bytes']) == (n, 3, 3 * 4096, 3 * 4096)
    assert sum(written) == 3 * 4096 and out['method'] == 'compare'
    assert out['sparse']['method'] == 'zeros'  # not a filesystem: every block compared
    assert read(image) == read(snap)
    assert ops.verify_copy(snap, image)['verified'] is True
    ops.init_meta(image, 'cd' * 16, 2, n * 4096)
    assert ops.load_meta(image)['pending'] is None


def test_real_ops_compare_copy_refuses_another_size(private):
    snap = make(private / 'snap', [block(1, i) for i in range(8)])
    image = str(private / 'img')
    shutil.copyfile(snap, image)
    os.truncate(image, 9 * 4096)
    with pytest.raises(CopyError, match='only an image of the same size'):
        bk.Ops().compare_copy(snap, image)
