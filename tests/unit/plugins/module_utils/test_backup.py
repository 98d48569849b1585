# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup cycle: every failure point -> the documented image_state / next_run, as a data table.

The cycle's host operations (tracker, copy, sync, hooks, files) are replaced by a scripted
:class:`FakeOps` that records every call in order; each case lists the exact call sequence.
The real operations (full copy, union of COW files, records, destination checks) are tested on
real files at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import stat

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_plan as plan_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as copy_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cow as cow_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as image_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import runs as runs_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import wedge
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.cowfile import write_cow

UUID = 'ab' * 16
IMG = '/backup/data.img'
P1, P2, P3 = '/data/.datto_0_1', '/data/.datto_0_2', '/data/.datto_0_3'


class FakeTracker(object):
    def __init__(self, failed):
        self.failed = failed


class FakeOps(object):
    """Scripted host: ``fail`` maps an operation name to the exception it raises (once per name)."""

    def __init__(self, image_exists=True, meta=None, record=None, snap=None, fail=None, hook_rc=None,
                 boot=None, meta_after_fail=None, tracker_failed=False, boot_id='boot-1', mount=None):
        self.calls = []
        self.image_exists = image_exists
        self.meta = meta
        self.record = record
        self.snap = snap or {}
        self.fail = dict(fail or {})
        self.hook_rc = dict(hook_rc or {})
        self.boot = boot or (None, None)
        self.meta_after_fail = meta_after_fail
        self.tracker_failed = tracker_failed
        self.saved = []
        self.current_boot = boot_id
        self.mount = mount
        self.extra_seen = []
        self.wedge = None  # a wedge.py marker of this boot: check_driver raises DriverWedged
        self.leftovers = []  # what leftover_cow_files finds (the call is listed only when it finds some)

    def check_driver(self):
        if self.wedge is not None:
            raise wedge.error(self.wedge)

    def leftover_cow_files(self, device, cow_name, cow_dir, keep, state_dir, reload_dir=None):
        self.leftover_args = dict(device=device, cow_name=cow_name, cow_dir=cow_dir, keep=list(keep))
        self._maybe_fail('leftover_cow_files')
        found = [p for p in self.leftovers if p not in keep]
        if found:
            self.calls.append('leftovers %s' % ' '.join(found))
        return found

    def boot_id(self):
        return self.current_boot

    def mount_map(self, src, cow_files=()):
        self.calls.append('mount_map %s' % src)
        self.mount_cow_files = list(cow_files)
        self._maybe_fail('mount_map')
        return self.mount

    def _maybe_fail(self, name):
        exc = self.fail.pop(name, None)
        if exc is not None:
            raise exc

    def tracker_ensure(self, device, state, check_mode=False, **kw):
        self.calls.append('ensure %s%s' % (state, ' (check)' if check_mode else ''))
        self._maybe_fail('ensure_' + state + ('_check' if check_mode else ''))
        if state == 'snapshot':
            out = dict(changed=True, actions=['dbdctl snapshot-step'], minor=0,
                       tracker={'minor': 0, 'seq_id': 2, 'uuid': UUID, 'failed': False},
                       previous_cow_file=P1, rebaseline_required=False, diff={'before': {}, 'after': {}})
            out.update(self.snap)
            return out
        return dict(changed=True, actions=['dbdctl transition-to-incremental 0'])

    def read_tracker(self, minor):
        self.calls.append('read_tracker %s' % minor)
        return FakeTracker(self.tracker_failed)

    def snapshot_device(self, minor):
        return '/dev/datto%d' % minor

    def untracked_runs(self, path, minor):
        self.untracked_seen = getattr(self, 'untracked_seen', []) + [path]
        return list(getattr(self, 'untracked', [(500, 3)]))

    def cow_usage(self, minor):
        return getattr(self, 'cow', None)  # (used, size) bytes of the live COW file: metrics only

    def allocated_only(self, src, runs, live_cow=None):
        self.calls.append('allocated_only %s' % live_cow)
        self._maybe_fail('allocated_only')
        drop = getattr(self, 'free_now', set())
        kept = [r for r in runs if r[0] not in drop]
        return kept, sum(n for dummy, n in runs) - sum(n for dummy, n in kept)

    def sync(self, snapshot, cow_file, image, verify, extra_runs=None):
        self.calls.append('sync %s %s' % (cow_file, verify))
        self.extra_seen.append(extra_runs)
        self._maybe_fail('sync')
        return dict(blocks=177, bytes=724992, seconds=0.5, mb_per_s=1.38, verified=verify != 'none',
                    actions=['copy 177 changed blocks'])

    def full_copy(self, src, dst, sparse='filesystem'):
        self.calls.append('full_copy %s %s' % (src, dst))
        self.sparse_seen = sparse
        self._maybe_fail('full_copy')
        return dict(blocks=16384, bytes=5000000, seconds=2.0, mb_per_s=2.4,
                    sparse=dict(getattr(self, 'sparse_result', {'method': sparse})))

    def compare_copy(self, src, image, sparse='filesystem'):
        self.calls.append('compare_copy %s %s' % (src, image))
        self._maybe_fail('compare_copy')
        return dict(blocks=16384, bytes=12288, read_bytes=67108864, blocks_read=16384, blocks_differing=3,
                    bytes_written=12288, seconds=2.0, sparse={'method': sparse})

    def begin_rebaseline(self, image, meta, uuid, seq_id, reason):
        self.calls.append('begin_rebaseline %s' % seq_id)
        self.journal_reason = reason
        self._maybe_fail('begin_rebaseline')
        return dict(meta, pending={'rebaseline': 'compare', 'uuid': uuid, 'seq_id_to': seq_id, 'reason': reason})

    def verify_copy(self, src, image, cow_files=()):
        self.calls.append('verify_copy %s' % image)
        self.verify_cow_files = list(cow_files)
        self._maybe_fail('verify_copy')
        return {'verified': True, 'unstable_blocks': [3636]}

    def verify_sample(self, src, image, cow_files, extra_runs, target, seed, budget_seconds, minimum):
        self.calls.append('verify_sample %s' % image)
        self.sample_args = dict(cow_files=list(cow_files), extra_runs=extra_runs, target=target, seed=seed,
                                budget_seconds=budget_seconds, minimum=minimum)
        self._maybe_fail('verify_sample')
        bad = list(getattr(self, 'sample_bad', []))
        return {'seed': seed, 'sample_size': target, 'blocks_compared': target, 'mismatches': len(bad),
                'mismatched_blocks': bad, 'unstable_blocks': [], 'seconds': 0.01, 'budget_seconds': budget_seconds}

    def mark_unverified(self, image, msg):
        self.calls.append('mark_unverified')
        self.unverified_msg = msg

    def union_copy(self, src, cow_files, image, verify, extra_runs=None):
        self.calls.append('union_copy %s' % ' '.join(cow_files))
        self.extra_seen.append(extra_runs)
        self._maybe_fail('union_copy')
        return dict(blocks=300, bytes=1228800, seconds=1.0, mb_per_s=1.2, verified=False)

    def size_of(self, path):
        return getattr(self, 'image_size', 67108864) if path == IMG else 67108864

    def device_facts(self, device):
        self._maybe_fail('device_facts')
        return {'rdev': 2065, 'size': 67108864, 'names': ['/dev/vdb', '/dev/disk/by-uuid/u1']}

    def check_destination(self, image, rdev, size, need_full, check_free_space):
        self.calls.append('check_destination full=%s' % need_full)
        self._maybe_fail('check_destination')

    def run_hook(self, argv, timeout, env=None):
        self.calls.append('hook %s' % argv[-1])
        self.hook_env = env
        res = self.hook_rc.get(argv[-1], 0)
        if isinstance(res, Exception):
            raise res
        return res, 'out-' + argv[-1], ''

    def unlink(self, path):
        self.calls.append('unlink %s' % path)
        self._maybe_fail('unlink')

    def rename(self, src, dst):
        self.calls.append('rename')

    def exists(self, path):
        if path == IMG:
            return self.image_exists
        return path.endswith('.partial')

    def load_meta(self, image):
        if self.meta_after_fail is not None and any(c.startswith(('sync', 'union')) for c in self.calls):
            return self.meta_after_fail
        return self.meta

    def init_meta(self, image, uuid, seq_id, size):
        self.calls.append('init_meta %s' % seq_id)

    def remove_meta(self, image):
        self.calls.append('remove_meta')

    def begin_union(self, image, meta, uuid, seq_from, seq_to, cow_files):
        self.calls.append('begin_union %s->%s' % (seq_from, seq_to))
        return meta

    def complete_union(self, image, meta, seq_to, blocks, verified):
        self.calls.append('complete_union %s' % seq_to)

    def find_record(self, state_dir, image):
        return self.record, None

    def migrate_record(self, state_dir, image):
        return self.record, []

    def lock(self, state_dir, image):
        self.calls.append('lock')
        return 'fd'

    def unlock(self, fd):
        self.calls.append('unlock')

    def save_record(self, state_dir, image, record):
        self.saved.append(json.loads(json.dumps(record)))
        return '/state/x.json'

    def boot_check(self, path):
        return self.boot


META1 = {'uuid': UUID, 'seq_id': 1, 'size': 67108864, 'pending': None}
META1_PENDING = dict(META1, pending={'seq_id_from': 1, 'seq_id_to': 2, 'cow_file': P1})
REC_OK = {'next_run': 'incremental', 'pending_cow_files': [], 'last_full_epoch': 100, 'boot_id': 'boot-1'}
# a boot check state file (docs/boot.md) asking a full backup of /dev/vdb (the volume of FakeOps.device_facts)
BOOT_VDB_FULL = {'schema': 1, 'rebaseline_required': [4],
                 'volumes': [{'minor': 4, 'block_device': '/dev/vdb', 'rebaseline_required': True}]}
HOOKS = {'pre_hooks': [{'argv': ['/bin/freeze', 'pre1']}], 'post_hooks': [{'argv': ['/bin/thaw', 'post1']}]}

FULL_FIRST = ['check_destination full=True', 'ensure snapshot', 'check_destination full=True',
              'full_copy /dev/datto0 /backup/data.img.partial', 'remove_meta', 'rename', 'init_meta 2',
              'ensure incremental']
INCR = ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental',
        'unlink %s' % P1]


def started(ops):
    """The calls of a cycle that started: its destination check, then what followed the lock.

    Every run first checks, reading only (the snapshot step planned in check mode, the
    destination), then takes the lock; the lock is released last.
    """
    assert ops.calls[0] == 'ensure snapshot (check)' and ops.calls[2] == 'lock' and ops.calls[-1] == 'unlock', ops.calls
    return ops.calls[1:2] + ops.calls[3:-1]


# id, FakeOps kwargs, extra params, expected outcome (dict of result keys, or exception fields), calls
CASES = [
    ('first-run-full', dict(image_exists=False), {},
     dict(mode='full', next_run='incremental', image_state='complete', seq_id=2, bytes=5000000),
     FULL_FIRST + ['unlink %s' % P1]),
    ('first-run-new-tracker', dict(image_exists=False, snap={
        'previous_cow_file': None, 'tracker': {'minor': 0, 'seq_id': 1, 'uuid': UUID}}),
     {}, dict(mode='full', seq_id=1),
     ['check_destination full=True', 'ensure snapshot', 'check_destination full=True',
      'full_copy /dev/datto0 /backup/data.img.partial', 'remove_meta', 'rename', 'init_meta 1',
      'ensure incremental']),
    ('full-verified', dict(image_exists=False), {'verify': 'full'},
     dict(mode='full', verified=True),
     ['check_destination full=True', 'ensure snapshot', 'check_destination full=True',
      'full_copy /dev/datto0 /backup/data.img.partial', 'verify_copy /backup/data.img.partial', 'remove_meta',
      'rename', 'init_meta 2', 'ensure incremental', 'unlink %s' % P1]),
    ('full-verify-fails', dict(image_exists=False, fail={'verify_copy': DattobdError('3 blocks differ')}),
     {'verify': 'changed'}, dict(error=True, step='copy', image_state='untouched', next_run='full'),
     ['check_destination full=True', 'ensure snapshot', 'check_destination full=True',
      'full_copy /dev/datto0 /backup/data.img.partial', 'verify_copy /backup/data.img.partial',
      'unlink /backup/data.img.partial', 'ensure incremental']),
    ('incremental', dict(meta=META1, record=REC_OK), {},
     dict(mode='incremental', next_run='incremental', image_state='complete', blocks=177, seq_id=2), INCR),
    ('incremental-verify', dict(meta=META1, record=REC_OK), {'verify': 'changed'},
     dict(mode='incremental', verified=True),
     ['check_destination full=False', 'ensure snapshot', 'sync %s changed' % P1, 'ensure incremental',
      'unlink %s' % P1]),
    ('hooks-around-snapshot', dict(meta=META1, record=REC_OK), HOOKS, dict(mode='incremental'),
     ['check_destination full=False', 'hook pre1', 'ensure snapshot', 'hook post1', 'sync %s none' % P1,
      'ensure incremental', 'unlink %s' % P1]),
    ('post-hook-fails-is-warning', dict(meta=META1, record=REC_OK, hook_rc={'post1': 3}), HOOKS,
     dict(mode='incremental', image_state='complete'),
     ['check_destination full=False', 'hook pre1', 'ensure snapshot', 'hook post1', 'sync %s none' % P1,
      'ensure incremental', 'unlink %s' % P1]),
    ('pre-hook-fails', dict(meta=META1, record=REC_OK, hook_rc={'pre1': 1}), HOOKS,
     dict(error=True, step='pre_hooks', image_state='untouched', next_run='incremental'),
     ['check_destination full=False', 'hook pre1', 'hook post1']),
    ('pre-hook-times-out', dict(meta=META1, record=REC_OK, hook_rc={'pre1': DriverTimeout('t')}), HOOKS,
     dict(error=True, step='pre_hooks', image_state='untouched', next_run='incremental'),
     ['check_destination full=False', 'hook pre1', 'hook post1']),
    ('snapshot-fails-tracker-healthy', dict(meta=META1, record=REC_OK, fail={'ensure_snapshot': DattobdError('EBUSY')}),
     {}, dict(error=True, step='snapshot', image_state='untouched', next_run='incremental'),
     ['check_destination full=False', 'ensure snapshot', 'ensure incremental']),
    ('snapshot-busy-names-its-holders', dict(meta=META1, record=REC_OK, fail={'ensure_snapshot': DattobdError(
        'dbdctl transition-to-snapshot 0 failed: device busy', holders=[{'kind': 'loop', 'device': 'loop0'}])}),
     {}, dict(error=True, step='snapshot', image_state='untouched', next_run='incremental',
              holders=[{'kind': 'loop', 'device': 'loop0'}]),
     ['check_destination full=False', 'ensure snapshot', 'ensure incremental']),
    ('snapshot-fails-tracker-lost', dict(meta=META1, record=REC_OK, fail={
        'ensure_snapshot': DattobdError('EFBIG'), 'ensure_incremental': DattobdError('failed state')}),
     {}, dict(error=True, step='snapshot', image_state='untouched', next_run='full'),
     ['check_destination full=False', 'ensure snapshot', 'ensure incremental']),
    ('sync-fails-before-writing', dict(meta=META1, record=REC_OK, fail={'sync': DattobdError('COW unreadable')}),
     {}, dict(error=True, step='copy', image_state='untouched', next_run='resume', pending=[P1]),
     ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental']),
    # Issue 15: a COW file the sync finds damaged breaks the chain; resuming would meet it again.
    ('sync-refuses-damaged-cow', dict(meta=META1, record=REC_OK,
                                      fail={'sync': DattobdError('COW file is damaged', cow_damaged=True)}),
     {}, dict(error=True, step='copy', image_state='untouched', next_run='full', pending=[P1]),
     ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental']),
    ('resume-meets-damaged-cow', dict(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}],
                                                                  'boot_id': 'boot-1'},
                                      snap={'previous_cow_file': P2, 'tracker': {'minor': 0, 'seq_id': 3, 'uuid': UUID}},
                                      meta_after_fail=META1_PENDING,
                                      fail={'union_copy': DattobdError('damaged', cow_damaged=True)}), {},
     dict(error=True, step='copy', image_state='resumable', next_run='full', pending=[P1, P2]),
     ['check_destination full=False', 'ensure snapshot', 'begin_union 1->3', 'union_copy %s %s' % (P1, P2),
      'ensure incremental']),
    ('sync-fails-mid-copy', dict(meta=META1, record=REC_OK, meta_after_fail=META1_PENDING,
                                 fail={'sync': DattobdError('EIO writing image')}),
     {}, dict(error=True, step='copy', image_state='resumable', next_run='resume', pending=[P1]),
     ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental']),
    ('sync-fails-oserror-tracker-lost', dict(meta=META1, record=REC_OK, meta_after_fail=META1_PENDING, fail={
        'sync': OSError(28, 'No space left on device'), 'ensure_incremental': DattobdError('x')}),
     {}, dict(error=True, step='copy', image_state='resumable', next_run='full'),
     ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental']),
    ('full-copy-fails', dict(image_exists=False, fail={'full_copy': DattobdError('read error on /dev/datto0')}), {},
     dict(error=True, step='copy', image_state='untouched', next_run='full'),
     ['check_destination full=True', 'ensure snapshot', 'check_destination full=True',
      'full_copy /dev/datto0 /backup/data.img.partial', 'unlink /backup/data.img.partial', 'ensure incremental']),
    ('full-no-room-after-rebaseline', dict(meta=META1, record=REC_OK, snap={'rebaseline_required': True},
                                           fail={'check_destination': None}), {},
     dict(mode='full', image_state='complete'),
     ['check_destination full=False', 'ensure snapshot', 'check_destination full=True',
      'full_copy /dev/datto0 /backup/data.img.partial', 'remove_meta', 'rename', 'init_meta 2',
      'ensure incremental', 'unlink %s' % P1]),
    ('incremental-transition-fails-tracker-ok', dict(meta=META1, record=REC_OK,
                                                     fail={'ensure_incremental': DattobdError('EBUSY')}), {},
     dict(error=True, step='incremental', image_state='complete', next_run='incremental'),
     ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental',
      'read_tracker 0']),
    ('incremental-transition-fails-tracker-failed', dict(meta=META1, record=REC_OK, tracker_failed=True,
                                                         fail={'ensure_incremental': DattobdError('EFBIG')}), {},
     dict(error=True, step='incremental', image_state='complete', next_run='full'),
     ['check_destination full=False', 'ensure snapshot', 'sync %s none' % P1, 'ensure incremental',
      'read_tracker 0']),
    ('resume-after-failed-sync', dict(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}], 'boot_id': 'boot-1'},
                                      snap={'previous_cow_file': P2,
                                            'tracker': {'minor': 0, 'seq_id': 3, 'uuid': UUID}}), {},
     dict(mode='resume', seq_id=3, blocks=300),
     ['check_destination full=False', 'ensure snapshot', 'begin_union 1->3', 'union_copy %s %s' % (P1, P2),
      'complete_union 3', 'ensure incremental', 'unlink %s' % P1, 'unlink %s' % P2]),
    ('resume-after-killed-cycle', dict(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}], 'boot_id': 'boot-1'},
                                       snap={'previous_cow_file': None, 'changed': False}), {},
     dict(mode='resume', seq_id=2),
     ['check_destination full=False', 'ensure snapshot', 'begin_union 1->2', 'union_copy %s' % P1,
      'complete_union 2', 'ensure incremental', 'unlink %s' % P1]),
    ('resume-fails-again', dict(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}], 'boot_id': 'boot-1'},
                                snap={'previous_cow_file': P2, 'tracker': {'minor': 0, 'seq_id': 3, 'uuid': UUID}},
                                meta_after_fail=META1_PENDING, fail={'union_copy': DattobdError('EIO')}), {},
     dict(error=True, step='copy', image_state='resumable', next_run='resume', pending=[P1, P2]),
     ['check_destination full=False', 'ensure snapshot', 'begin_union 1->3', 'union_copy %s %s' % (P1, P2),
      'ensure incremental']),
    ('broken-chain-goes-full', dict(meta=META1, record={'pending_cow_files': []},
                                    snap={'previous_cow_file': P3,
                                          'tracker': {'minor': 0, 'seq_id': 4, 'uuid': UUID}}), {},
     dict(mode='full', seq_id=4),
     ['check_destination full=False', 'ensure snapshot', 'check_destination full=True',
      'full_copy /dev/datto0 /backup/data.img.partial', 'remove_meta', 'rename', 'init_meta 4',
      'ensure incremental', 'unlink %s' % P3]),
    ('new-series-goes-full', dict(meta=dict(META1, uuid='cd' * 16), record=REC_OK), {},
     dict(mode='full', reason='the tracker belongs to a new snapshot series'), None),
    ('tracker-rebaselined-goes-full', dict(meta=META1, record=REC_OK, snap={'rebaseline_required': True}), {},
     dict(mode='full', reason='the tracker had failed and was set up again'), None),
    ('image-already-at-snapshot', dict(meta=dict(META1, seq_id=2), record=REC_OK,
                                       snap={'previous_cow_file': None, 'changed': False}), {},
     dict(mode='incremental', blocks=0, seq_id=2),
     ['check_destination full=False', 'ensure snapshot', 'ensure incremental']),
    ('forced-full', dict(meta=META1, record=REC_OK), {'full': True},
     dict(mode='full', reason='requested'), None),
    ('no-metadata-goes-full', dict(meta=None, record=REC_OK), {}, dict(mode='full'), None),
    ('last-run-asked-full', dict(meta=META1, record=dict(REC_OK, next_run='full')), {}, dict(mode='full'), None),
    ('boot-check-asks-full', dict(meta=META1, record=REC_OK, boot=(BOOT_VDB_FULL, 200)), {},
     dict(mode='full'), None),
    ('boot-check-volume-entry', dict(meta=META1, record=dict(REC_OK, minor=0), boot=(
        {'schema': 1, 'rebaseline_required': [], 'volumes': [{'minor': 5, 'block_device': '/dev/disk/by-uuid/u1',
                                                             'rebaseline_required': True}]}, 200)), {},
     dict(mode='full'), None),
    ('boot-check-minor-list', dict(meta=META1, record=dict(REC_OK, minor=0), boot=(
        {'schema': 1, 'rebaseline_required': [0], 'volumes': []}, 200)), {}, dict(mode='full'), None),
    ('boot-check-other-volume', dict(meta=META1, record=dict(REC_OK, minor=0), boot=(
        {'schema': 1, 'rebaseline_required': [3], 'volumes': [{'minor': 3, 'block_device': '/dev/vdc',
                                                              'rebaseline_required': True}]}, 200)), {},
     dict(mode='incremental'), INCR),
    ('old-boot-check-ignored', dict(meta=META1, record=REC_OK, boot=(BOOT_VDB_FULL, 50)), {},
     dict(mode='incremental'), INCR),
    ('old-cow-not-removable-is-warning', dict(meta=META1, record=REC_OK, fail={'unlink': OSError(1, 'EPERM')}), {},
     dict(mode='incremental', removed_cow_files=[]), INCR),
]


def params(**extra):
    # No sample and no scheduled full verification unless a case asks for them (the verification tests below).
    out = dict(device='/data', image=IMG, state_dir='/state', verify='none', pre_hooks=[], post_hooks=[],
               verify_sample_budget=0, full_verify_every_days=0)
    out.update(extra)
    return out


@pytest.mark.parametrize('case_id, ops_kw, extra, expected, calls', CASES, ids=[c[0] for c in CASES])
def test_cycle_table(case_id, ops_kw, extra, expected, calls):
    ops_kw = dict(ops_kw)
    fail = dict((k, v) for k, v in (ops_kw.pop('fail', None) or {}).items() if v is not None)
    ops = FakeOps(fail=fail, **ops_kw)
    expected = dict(expected)
    if expected.pop('error', False):
        pending = expected.pop('pending', None)
        with pytest.raises(bk.BackupError) as info:
            bk.run_cycle(params(**extra), ops=ops)
        details = info.value.details
        for key, value in expected.items():
            assert details[key] == value, key
        # The message says what happened to the image and what the next run does.
        assert {'untouched': 'not changed', 'resumable': 'partly updated',
                'complete': 'is complete'}[details['image_state']] in info.value.msg
        assert {'incremental': 'incremental backup', 'resume': 'resumes',
                'full': 'full backup'}[details['next_run']] in info.value.msg
        last = ops.saved[-1]
        assert last['last_result'] == 'failed'
        assert last['next_run'] == expected['next_run']
        if pending is not None:
            assert [e['path'] for e in last['pending_cow_files']] == pending
        assert details['actions'] == info.value.to_result()['actions']
    else:
        result = bk.run_cycle(params(**extra), ops=ops)
        for key, value in expected.items():
            assert result[key] == value, key
        last = ops.saved[-1]
        assert last['last_result'] == 'ok'
        assert last['pending_cow_files'] == []
        assert last['seq_id'] == result['seq_id']
        assert result['next_run'] == 'incremental'
    # the readiness checks (reading only), then the lock, then the cycle
    assert ops.calls[:3] == ['ensure snapshot (check)', ops.calls[1], 'lock'] and ops.calls[-1] == 'unlock'
    if calls is not None:
        assert ops.calls == ['ensure snapshot (check)'] + calls[:1] + ['lock'] + calls[1:] + ['unlock']


# id, FakeOps kwargs, step, calls: refused by a readiness check, before any hook, lock or record
REFUSED = [
    ('destination-refused', dict(fail={'check_destination': DattobdError('others can read')}), 'destination',
     ['ensure snapshot (check)', 'check_destination full=False']),
    ('device-missing', dict(fail={'device_facts': DattobdError('no such device')}), 'destination',
     ['ensure snapshot (check)']),
    ('driver-not-loaded', dict(fail={'ensure_snapshot_check': DattobdError('The dattobd driver is not loaded')}),
     'snapshot', ['ensure snapshot (check)']),
]


@pytest.mark.parametrize('check_mode', [False, True], ids=['run', 'check'])
@pytest.mark.parametrize('case_id, ops_kw, step, calls', REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_before_the_start(case_id, ops_kw, step, calls, check_mode):
    ops = FakeOps(meta=META1, record=REC_OK, **ops_kw)
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(**HOOKS), ops=ops, check_mode=check_mode)
    details = info.value.details
    assert (details['step'], details['image_state'], details['record'], details['hooks']) == (
        step, 'untouched', None, [])
    assert details['next_run'] == 'incremental'  # the mode is decided before the snapshot check
    assert 'Nothing was changed: no hook ran, no record or lock was written.' in info.value.msg
    assert ops.calls == calls  # no hook, no lock
    assert ops.saved == []


def test_hook_output_in_result():
    ops = FakeOps(meta=META1, record=REC_OK)
    result = bk.run_cycle(params(**HOOKS), ops=ops)
    assert [(h['phase'], h['argv'], h['rc'], h['stdout']) for h in result['hooks']] == [
        ('pre', ['/bin/freeze', 'pre1'], 0, 'out-pre1'), ('post', ['/bin/thaw', 'post1'], 0, 'out-post1')]
    assert result['actions'][0] == '/bin/freeze pre1'


def test_hook_environment():
    ops = FakeOps(meta=META1, record=REC_OK)
    bk.run_cycle(params(**HOOKS), ops=ops)
    assert ops.hook_env == {'SNAPFLEET_HOOK_PHASE': 'post', 'SNAPFLEET_DEVICE': '/data',
                            'SNAPFLEET_IMAGE': IMG}


def test_pending_journalled_before_copy():
    ops = FakeOps(meta=META1, record=REC_OK)
    bk.run_cycle(params(), ops=ops)
    assert ops.saved[0]['pending_cow_files'] == [{'path': P1, 'seq_id': 1}]


def test_check_mode_plan_incremental():
    ops = FakeOps(meta=META1, record=REC_OK)
    result = bk.run_cycle(params(**HOOKS), ops=ops, check_mode=True)
    assert ops.calls == ['ensure snapshot (check)', 'check_destination full=False']  # no lock in check mode
    assert result['mode'] == 'incremental'
    assert result['actions'] == [
        '/bin/freeze pre1', 'dbdctl snapshot-step', '/bin/thaw post1',
        'copy the blocks listed by %s from /dev/datto0 into %s (verify: none)' % (P1, IMG),
        'transition tracker on /data back to incremental', 'remove %s' % P1,
        'write /state/' + bk.record_name(IMG)]
    assert ops.saved == []


def test_check_mode_plan_full_and_resume():
    ops = FakeOps(image_exists=False, snap={'previous_cow_file': None})
    result = bk.run_cycle(params(), ops=ops, check_mode=True)
    assert result['mode'] == 'full'
    assert 'rename %s.partial to %s' % (IMG, IMG) in result['actions']
    ops = FakeOps(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}]},
                  snap={'previous_cow_file': P2})
    result = bk.run_cycle(params(), ops=ops, check_mode=True)
    assert result['mode'] == 'resume'
    assert 'copy the union of the blocks listed by %s, %s from /dev/datto0 into %s' % (P1, P2, IMG) in result['actions']


def test_check_mode_refusals():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'ensure_snapshot_check': DattobdError('dormant')})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops, check_mode=True)
    assert info.value.details['step'] == 'snapshot'
    ops = FakeOps(meta=META1, record=REC_OK, fail={'check_destination': DattobdError('mode 0755')})
    with pytest.raises(DattobdError):
        bk.run_cycle(params(), ops=ops, check_mode=True)


@pytest.mark.parametrize('bad, fragment', [
    ({'pre_hooks': [{'argv': 'fsfreeze -f /'}]}, 'list of strings'),
    ({'pre_hooks': [{'argv': ['fsfreeze']}]}, 'absolute path'),
    ({'post_hooks': [{'argv': ['/bin/true'], 'timeout': 0}]}, 'positive integer'),
    ({'post_hooks': ['x']}, 'must be a dict'),
    ({'verify': 'maybe'}, 'verify must be one of'),
])
def test_invalid_params(bad, fragment):
    with pytest.raises(DattobdError) as info:
        bk.run_cycle(params(**bad), ops=FakeOps(meta=META1))
    assert fragment in info.value.msg


def test_hooks_as_plain_lists():
    assert bk.validate_hooks([['/bin/true', 'x']], 'pre_hooks') == [{'argv': ['/bin/true', 'x'], 'timeout': 60}]


@pytest.mark.parametrize('boot, names, minor, expected', [
    (None, ['/dev/vdb'], 0, False),
    ({'schema': 1, 'rebaseline_required': [0], 'volumes': []}, ['/dev/vdb'], 0, True),
    ({'schema': 1, 'rebaseline_required': [], 'volumes': [{'minor': 1, 'block_device': '/dev/vdb', 'rebaseline_required': True}]},
     ['/dev/vdb'], None, True),
    ({'schema': 1, 'rebaseline_required': [], 'volumes': [{'minor': 1, 'block_device': '/dev/vdc', 'rebaseline_required': True}]},
     ['/dev/vdb'], None, False),
    ({'schema': 1, 'rebaseline_required': [], 'volumes': [{'minor': 2, 'block_device': '/dev/x', 'rebaseline_required': True}]},
     ['/dev/vdb'], 2, True),
    ({'schema': 1, 'rebaseline_required': [], 'volumes': [{'minor': 2, 'block_device': '/dev/vdb', 'rebaseline_required': False}]},
     ['/dev/vdb'], 2, False),
    # keys boot_check never wrote, and documents of another (or no) schema, are not read
    ({'full_backup_required': True}, ['/dev/vdb'], 0, False),
    ({'schema': 1, 'volumes': [{'device': '/dev/vdb', 'full_backup_required': True}]}, ['/dev/vdb'], None, False),
    ({'schema': 1, 'trackers': [{'minor': 2, 'rebaseline_required': True}]}, ['/dev/vdb'], 2, False),
    ({'schema': 2, 'rebaseline_required': [0]}, ['/dev/vdb'], 0, False),
    ({'rebaseline_required': [0]}, ['/dev/vdb'], 0, False),
])
def test_boot_requires_full(boot, names, minor, expected):
    assert bk.boot_requires_full(boot, names, minor) is expected


def test_record_name():
    assert bk.record_name('/backup/a b/data.img').startswith('backup_a_b_data.img-')  # and a hash: see test_backup_records


# --- the real operations on real files ------------------------------------------------------

@pytest.fixture
def private(tmp_path):
    d = tmp_path / 'backup'
    d.mkdir(mode=0o700)
    os.chmod(str(d), 0o700)
    return d


def test_records_round_trip(private):
    state = str(private / 'state')
    path = bk.save_record(state, IMG, {'seq_id': 3})
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert bk.load_record(state, IMG)['seq_id'] == 3
    assert bk.load_record(state, '/other.img') is None
    with open(path, 'w') as handle:
        handle.write('{broken')
    assert bk.load_record(state, IMG) is None


def test_state_dir_open_to_others_refused(private):
    state = private / 'state'
    state.mkdir()
    os.chmod(str(state), 0o755)
    with pytest.raises(DattobdError) as info:
        bk.save_record(str(state), IMG, {})
    assert 'chmod 0700' in info.value.hint


def test_read_boot_check(tmp_path):
    assert bk.read_boot_check(str(tmp_path / 'missing.json')) == (None, None)
    path = tmp_path / 'boot.json'
    path.write_text('{"full_backup_required": true}')
    data, mtime = bk.read_boot_check(str(path))
    assert data == {'full_backup_required': True} and mtime > 0


def test_check_destination(private, tmp_path):
    image = str(private / 'data.img')
    bk.check_destination(image, device_rdev=None, size=4096, need_full=True, check_free_space=True)
    with pytest.raises(DattobdError, match='absolute'):
        bk.check_destination('data.img')
    with pytest.raises(DattobdError, match='does not exist'):
        bk.check_destination(str(private / 'no' / 'x.img'))
    with pytest.raises(DattobdError, match='filesystem being backed up'):
        bk.check_destination(image, device_rdev=os.stat(str(private)).st_dev)
    with pytest.raises(DattobdError, match='Not enough free space'):
        bk.check_destination(image, size=2 ** 62, need_full=True)
    bk.check_destination(image, size=2 ** 62, need_full=True, check_free_space=False)
    with open(image, 'wb') as handle:
        handle.write(b'x' * 100)
    os.chmod(image, 0o600)
    with pytest.raises(DattobdError, match='is 100 bytes'):
        bk.check_destination(image, size=4096)
    os.chmod(image, 0o644)
    with pytest.raises(DattobdError, match='others can access'):
        bk.check_destination(image, size=100)
    os.unlink(image)
    os.mkdir(image, 0o700)
    with pytest.raises(DattobdError, match='not a regular file'):
        bk.check_destination(image, size=100)
    open_dir = tmp_path / 'open'
    open_dir.mkdir()
    os.chmod(str(open_dir), 0o755)
    with pytest.raises(DattobdError, match='others can access'):
        bk.check_destination(str(open_dir / 'x.img'))


def _write_dev(path, nblocks, fill):
    with open(path, 'wb') as handle:
        for i in range(nblocks):
            handle.write(bytes([fill(i)]) * cow_mod.BLOCK_SIZE)


def test_real_ops_full_then_union(private, monkeypatch):
    """Full copy into a sparse image, then the union of two COW files, with the real Ops."""
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_mod
    nblocks = 64
    snap = str(private / 'snap.dev')
    _write_dev(snap, nblocks, lambda i: 0 if i % 4 == 0 else 7)
    image = str(private / 'data.img')
    ops = bk.Ops()
    monkeypatch.setattr(sync_mod, 'SNAPSHOT_DEVICE', str(private / 'snap%d.dev'))
    assert ops.snapshot_device(3) == str(private / 'snap3.dev')
    stats = ops.full_copy(snap, image + '.partial')
    ops.rename(image + '.partial', image)
    assert stats['zero_blocks'] == nblocks // 4
    # Not a filesystem: the copy falls back to all-zero holes and says why.
    assert stats['sparse']['method'] == 'zeros' and 'no ext2/3/4 or XFS superblock' in stats['sparse']['note']
    assert stats['sparse']['zero_blocks'] == nblocks // 4
    with open(snap, 'rb') as a, open(image, 'rb') as b:
        assert a.read() == b.read()
    ops.init_meta(image, UUID, 1, ops.size_of(snap))
    meta = ops.load_meta(image)
    assert meta['seq_id'] == 1
    # New snapshot content: blocks 1-2 and 10 changed (two COW files listing them).
    _write_dev(snap, nblocks, lambda i: 9 if i in (1, 2, 10) else (0 if i % 4 == 0 else 7))
    size = nblocks * cow_mod.BLOCK_SIZE
    c1, c2 = str(private / 'c1.cow'), str(private / 'c2.cow')
    write_cow(c1, size, [1, 2], seq_id=1, uuid=bytes.fromhex(UUID))
    write_cow(c2, size, [2, 10], seq_id=2, uuid=bytes.fromhex(UUID))
    assert ops.cow_header(c2) == {'uuid': UUID, 'seq_id': 2}
    meta = ops.begin_union(image, meta, UUID, 1, 3, [c1, c2])
    assert ops.load_meta(image)['pending']['seq_id_to'] == 3
    result = ops.union_copy(snap, [c1, c2], image, 'changed')
    assert (result['blocks'], result['runs'], result['verified']) == (3, 2, True)
    ops.complete_union(image, meta, 3, result['blocks'], True)
    assert ops.load_meta(image)['seq_id'] == 3 and ops.load_meta(image)['pending'] is None
    with open(snap, 'rb') as a, open(image, 'rb') as b:
        assert a.read() == b.read()
    # A mismatch found by verify is a failure.
    _write_dev(snap, nblocks, lambda i: 5)
    with open(image, 'r+b') as handle:
        handle.truncate(size)
    ops2 = bk.Ops()
    monkeypatch.setattr(copy_mod, 'copy_runs', lambda *a, **k: type('S', (), {'to_dict': lambda s: {}})())
    with pytest.raises(DattobdError, match='Verification failed'):
        ops2.union_copy(snap, [c1], image, 'changed')
    ops.remove_meta(image)
    assert ops.load_meta(image) is None
    ops.remove_meta(image)
    assert ops.exists(image)
    ops.unlink(image)
    assert not ops.exists(image)


def test_real_ops_verify_copy(private):
    snap, image = str(private / 'snap.dev'), str(private / 'img')
    _write_dev(snap, 16, lambda i: i)
    shutil.copyfile(snap, image)
    ops = bk.Ops()
    assert ops.verify_copy(snap, image) == {'verified': True, 'unstable_blocks': [], 'masked_blocks': 0,
                                            'unallocated_blocks': 0}
    with open(image, 'r+b') as handle:
        handle.seek(5 * cow_mod.BLOCK_SIZE)
        handle.write(b'x')
    with pytest.raises(DattobdError) as info:
        ops.verify_copy(snap, image)
    assert info.value.details['mismatched_blocks'] == [5]


def test_real_ops_lock(private):
    state = str(private / 'st')
    ops = bk.Ops()
    fd = ops.lock(state, IMG)
    with pytest.raises(DattobdError) as info:
        ops.lock(state, IMG)
    assert 'Another backup cycle' in info.value.msg
    ops.unlock(fd)
    ops.unlock(ops.lock(state, IMG))


def test_relative_image_refused():
    with pytest.raises(DattobdError, match='absolute'):
        bk.run_cycle(params(image='data.img'), ops=FakeOps())


def test_real_ops_hooks_and_records(private):
    ops = bk.Ops(timeout=5)
    assert ops.run_hook(['/bin/echo', 'hi'], 5) == (0, 'hi\n', '')
    assert ops.run_hook(['/bin/sh', '-c', 'echo $SNAPFLEET_HOOK_PHASE'], 5, env={'SNAPFLEET_HOOK_PHASE': 'pre'}) \
        == (0, 'pre\n', '')
    state = str(private / 'st')
    ops.save_record(state, IMG, {'a': 1})
    assert ops.find_record(state, IMG) == ({'a': 1, 'format': bk.RECORD_FORMAT, 'image': IMG}, None)
    assert ops.boot_check(str(private / 'none.json')) == (None, None)
    ops.check_destination(str(private / 'x.img'), None, 10, False, True)


def test_cycle_with_real_hook_output_clipped(private):
    long_hook = {'argv': ['/usr/bin/printf', '%5000s', 'x']}
    ops = FakeOps(meta=META1, record=REC_OK)
    ops.run_hook = bk.Ops().run_hook
    result = bk.run_cycle(params(pre_hooks=[long_hook]), ops=ops)
    assert result['hooks'][0]['stdout'].endswith('[... 904 more characters]')


def test_pre_hook_cannot_start():
    ops = FakeOps(meta=META1, record=REC_OK, hook_rc={'pre1': DattobdError('Cannot run /bin/freeze')})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(**HOOKS), ops=ops)
    assert info.value.details['hooks'][0]['stderr'] == 'Cannot run /bin/freeze'


def test_record_write_failure_is_warning():
    ops = FakeOps(meta=META1, record=REC_OK)

    def broken(*a):
        raise OSError(28, 'No space left on device')
    ops.save_record = broken
    result = bk.run_cycle(params(), ops=ops)
    assert result['record'] is None
    assert any('backup record' in w for w in result['warnings'])
    ops = FakeOps(meta=META1, record=REC_OK, fail={'sync': DattobdError('x')})
    ops.save_record = broken
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops)
    assert info.value.details['record'] is None


def test_meta_unreadable_after_failed_copy():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'sync': DattobdError('x')})
    calls = {'n': 0}

    def load(image):
        calls['n'] += 1
        if calls['n'] > 1:
            raise image_mod.ImageError('damaged')
        return META1
    ops.load_meta = load
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops)
    assert info.value.details['image_state'] == 'untouched'


# --- verify hooks, signals, figures ---------------------------------------------------------

VERIFY_HOOK = {'verify_hooks': [{'argv': ['/usr/bin/check', 'verify1']}]}


class EnvOps(FakeOps):
    """FakeOps keeping the environment of every hook."""

    def run_hook(self, argv, timeout, env=None):
        self.envs = getattr(self, 'envs', []) + [dict(env)]
        return FakeOps.run_hook(self, argv, timeout, env)


def test_verify_hook_runs_while_the_snapshot_exists():
    ops = EnvOps(meta=META1, record=REC_OK, snap={'new_cow_file': P2})
    result = bk.run_cycle(params(**VERIFY_HOOK), ops=ops)
    assert started(ops) == INCR[:3] + ['hook verify1'] + INCR[3:]
    assert ops.envs[-1] == {'SNAPFLEET_HOOK_PHASE': 'verify', 'SNAPFLEET_DEVICE': '/data', 'SNAPFLEET_IMAGE': IMG,
                            'SNAPFLEET_SNAPSHOT': '/dev/datto0', 'SNAPFLEET_COW_FILE': P2,
                            'SNAPFLEET_PREVIOUS_COW_FILE': P1, 'SNAPFLEET_MODE': 'incremental'}
    assert [(h['phase'], h['rc'], h['stdout']) for h in result['hooks']] == [('verify', 0, 'out-verify1')]


def test_verify_hook_live_cow_file_from_the_tracker():
    """No transition ran (the tracker was already a snapshot): the live COW file is the tracker's."""
    ops = EnvOps(image_exists=False, snap={'new_cow_file': None, 'previous_cow_file': None,
                                           'device': {'mount_point': '/data'},
                                           'tracker': {'minor': 0, 'seq_id': 1, 'uuid': UUID, 'cow_file': '/.datto_0_1'}})
    bk.run_cycle(params(**VERIFY_HOOK), ops=ops)
    assert ops.envs[-1]['SNAPFLEET_COW_FILE'] == P1
    assert ops.envs[-1]['SNAPFLEET_PREVIOUS_COW_FILE'] == ''
    assert ops.envs[-1]['SNAPFLEET_MODE'] == 'full'


def test_failing_verify_hook_fails_the_cycle_and_asks_for_a_full_backup():
    ops = FakeOps(meta=META1, record=REC_OK, hook_rc={'verify1': 1})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(**VERIFY_HOOK), ops=ops)
    details = info.value.details
    assert (details['step'], details['image_state'], details['next_run']) == ('verify_hooks', 'complete', 'full')
    assert '/usr/bin/check verify1' in info.value.msg and 'full backup' in info.value.msg
    assert started(ops) == INCR[:3] + ['hook verify1', 'ensure incremental']  # COW file kept
    assert ops.saved[-1]['next_run'] == 'full'
    assert [e['path'] for e in ops.saved[-1]['pending_cow_files']] == [P1]


class SignalOps(FakeOps):
    """Delivers a signal to the cycle (as the handler would) during the named operation."""

    def __init__(self, at, **kw):
        FakeOps.__init__(self, **kw)
        self.at = at
        self.cycle = None

    def _signal(self, name):
        if name == self.at:
            self.cycle.on_signal(15)

    def run_hook(self, argv, timeout, env=None):
        self._signal('hook')
        return FakeOps.run_hook(self, argv, timeout, env)

    def sync(self, snapshot, cow_file, image, verify, extra_runs=None):
        if self.at != 'sync':
            return FakeOps.sync(self, snapshot, cow_file, image, verify, extra_runs)
        self.calls.append('sync %s %s' % (cow_file, verify))
        self._signal('sync')
        raise AssertionError('not reached: the signal stops the copy')

    def full_copy(self, src, dst, sparse='filesystem'):
        self._signal('full_copy')
        return FakeOps.full_copy(self, src, dst)

    def tracker_ensure(self, device, state, check_mode=False, **kw):
        out = FakeOps.tracker_ensure(self, device, state, check_mode=check_mode, **kw)
        self._signal('ensure_' + state)
        return out


def run_with_signal(at, extra=None, **kw):
    ops = SignalOps(at, **kw)
    cycle = bk.Cycle(params(**(extra or {})), ops)
    ops.cycle = cycle
    return ops, cycle


def test_signal_during_the_copy_goes_back_to_incremental():
    ops, cycle = run_with_signal('sync', meta=META1, record=REC_OK, meta_after_fail=META1_PENDING)
    with pytest.raises(bk.BackupError) as info:
        cycle.run()
    details = info.value.details
    assert 'Interrupted by SIGTERM' in info.value.msg
    assert (details['step'], details['image_state'], details['next_run']) == ('copy', 'resumable', 'resume')
    assert started(ops) == INCR[:3] + ['ensure incremental']
    assert [e['path'] for e in ops.saved[-1]['pending_cow_files']] == [P1]


def test_signal_during_a_full_copy_leaves_the_image_untouched():
    ops, cycle = run_with_signal('full_copy', image_exists=False)
    with pytest.raises(bk.BackupError) as info:
        cycle.run()
    assert (info.value.details['step'], info.value.details['image_state']) == ('copy', 'untouched')
    assert 'rename' not in ops.calls and 'ensure incremental' in ops.calls


def test_signal_before_the_snapshot_changes_nothing():
    ops, cycle = run_with_signal('hook', {'pre_hooks': [{'argv': ['/bin/freeze', 'pre1']}],
                                          'post_hooks': [{'argv': ['/bin/thaw', 'post1']}]},
                                 meta=META1, record=REC_OK)
    with pytest.raises(bk.BackupError) as info:
        cycle.run()
    details = info.value.details
    assert (details['step'], details['image_state'], details['next_run']) == ('interrupted', 'untouched',
                                                                              'incremental')
    assert started(ops) == ['check_destination full=False', 'hook pre1', 'hook post1']


def test_signal_after_the_copy_finishes_the_cycle():
    ops, cycle = run_with_signal('ensure_incremental', meta=META1, record=REC_OK)
    result = cycle.run()
    assert result['next_run'] == 'incremental' and started(ops) == INCR
    assert any('SIGTERM' in w for w in result['warnings'])


def test_run_cycle_handles_real_signals_and_restores_handlers():
    import signal

    class KillOps(FakeOps):
        def sync(self, snapshot, cow_file, image, verify, extra_runs=None):
            self.calls.append('sync')
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError('not reached: the handler raises first')

    before = signal.getsignal(signal.SIGTERM)
    ops = KillOps(meta=META1, record=REC_OK)
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops, handle_signals=True)
    assert 'Interrupted by SIGTERM' in info.value.msg
    assert signal.getsignal(signal.SIGTERM) is before


def test_full_copy_throughput_counts_the_volume_read():
    class ReadOps(FakeOps):
        def full_copy(self, src, dst, sparse='filesystem'):
            self.calls.append('full_copy')
            return dict(blocks=16384, bytes=1048576, read_bytes=67108864, seconds=4.0, mb_per_s=0.25)

    result = bk.run_cycle(params(), ops=ReadOps(image_exists=False))
    assert result['mb_per_s'] == 16.0 and result['read_bytes'] == 67108864 and result['bytes'] == 1048576


def test_result_tracker_is_the_final_state():
    class FinalOps(FakeOps):
        def tracker_ensure(self, device, state, check_mode=False, **kw):
            out = FakeOps.tracker_ensure(self, device, state, check_mode=check_mode, **kw)
            if state == 'incremental':
                out['tracker'] = {'minor': 0, 'seq_id': 2, 'state': 2}
            return out

    result = bk.run_cycle(params(), ops=FinalOps(meta=META1, record=REC_OK))
    assert result['tracker'] == {'minor': 0, 'seq_id': 2, 'state': 2}


def test_untracked_cow_data_is_recorded_then_copied_by_the_next_cycle():
    ops = FakeOps(meta=META1, record=REC_OK, snap={'new_cow_file': P2})
    ops.untracked = [(500, 3)]
    bk.run_cycle(params(), ops=ops)
    assert ops.untracked_seen == [P2]  # the live COW file, right before going back to incremental
    assert ops.saved[-1]['untracked_runs'] == [[500, 3]]

    class Seen(FakeOps):
        def sync(self, snapshot, cow_file, image, verify, extra_runs=None):
            self.extra = extra_runs
            return FakeOps.sync(self, snapshot, cow_file, image, verify)

    nxt = Seen(meta=META1, record=dict(REC_OK, untracked_runs=[[500, 3]]), snap={'new_cow_file': P2})
    nxt.untracked = [(900, 1)]
    bk.run_cycle(params(), ops=nxt)
    assert nxt.extra == [(500, 3)]
    assert nxt.saved[-1]['untracked_runs'] == [[900, 1]]  # consumed ones replaced


def test_failed_copy_keeps_the_untracked_runs_not_yet_copied():
    ops = FakeOps(meta=META1, record=dict(REC_OK, untracked_runs=[[500, 3]]), snap={'new_cow_file': P2},
                  fail={'sync': DattobdError('EIO')})
    ops.untracked = [(900, 1)]
    with pytest.raises(bk.BackupError):
        bk.run_cycle(params(), ops=ops)
    assert ops.saved[-1]['untracked_runs'] == [[500, 3], [900, 1]]


def test_untracked_runs_unknown_is_a_warning():
    class NoFiemap(FakeOps):
        def untracked_runs(self, path, minor):
            raise OSError(95, 'Operation not supported')
    result = bk.run_cycle(params(), ops=NoFiemap(meta=META1, record=REC_OK, snap={'new_cow_file': P2}))
    assert any('take a full backup to be sure' in w for w in result['warnings'])


def test_sparse_mode_reaches_the_copy_and_the_result():
    ops = FakeOps(image_exists=False)
    result = bk.run_cycle(params(), ops=ops)
    assert ops.sparse_seen == 'filesystem' and result['sparse'] == {'method': 'filesystem'}
    assert any('blocks the filesystem reports unallocated are not read' in a for a in result['actions'])
    ops = FakeOps(image_exists=False)
    result = bk.run_cycle(params(sparse='zeros'), ops=ops)
    assert ops.sparse_seen == 'zeros' and result['sparse'] == {'method': 'zeros'}
    assert not any('unallocated' in a for a in result['actions'])
    assert not result['warnings']


def test_sparse_fallback_is_a_warning():
    ops = FakeOps(image_exists=False)
    ops.sparse_result = {'method': 'zeros', 'fstype': None, 'note': 'no ext2/3/4 or XFS superblock on /dev/datto0'}
    result = bk.run_cycle(params(), ops=ops)
    assert result['sparse']['method'] == 'zeros'
    assert any('Filesystem-aware sparse copy not used: no ext2/3/4' in w for w in result['warnings'])
    # Asked for zeros: the fallback note is no news.
    ops = FakeOps(image_exists=False)
    ops.sparse_result = {'method': 'zeros', 'note': 'x'}
    assert not bk.run_cycle(params(sparse='zeros'), ops=ops)['warnings']


def test_sparse_must_be_known():
    with pytest.raises(DattobdError, match='sparse must be one of filesystem, zeros'):
        bk.run_cycle(params(sparse='holes'), ops=FakeOps(image_exists=False))


def test_real_ops_full_copy_of_an_ext4_volume(private):
    """The real Ops: an ext4 volume with old data in its free blocks; the image holds only the allocated ones."""
    import subprocess
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
    if shutil.which('mkfs.ext4') is None or shutil.which('dumpe2fs') is None:
        pytest.skip('needs mkfs.ext4 and dumpe2fs (e2fsprogs)')
    tree = private / 'tree'
    tree.mkdir()
    (tree / 'data').write_bytes(os.urandom(2 << 20))
    vol = str(private / 'vol.img')
    with open(vol, 'wb') as handle:
        handle.truncate(32 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', str(tree), vol], check=True)
    fmap = fsmap.free_map(vol)
    with open(vol, 'r+b') as handle:      # old data where the filesystem has free space
        for start, n in fmap.runs:
            handle.seek(start * cow_mod.BLOCK_SIZE)
            handle.write(b'\x5a' * n * cow_mod.BLOCK_SIZE)
    out = str(private / 'img.partial')
    stats = bk.Ops().full_copy(vol, out)
    assert stats['sparse'] == {'method': 'filesystem', 'fstype': 'ext', 'unallocated_blocks': fmap.free_blocks,
                               'zero_blocks': stats['zero_blocks']}
    assert stats['blocks'] + fmap.free_blocks == (32 << 20) // cow_mod.BLOCK_SIZE
    assert os.stat(out).st_blocks * 512 < 6 << 20
    fsck = subprocess.run(['e2fsck', '-fn', out], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout
    zeros = bk.Ops().full_copy(vol, str(private / 'img2'), sparse='zeros')
    assert zeros['sparse'] == {'method': 'zeros', 'fstype': None, 'zero_blocks': zeros['zero_blocks']}
    assert os.stat(str(private / "img2")).st_blocks * 512 > 20 << 20    # the old data, copied


def test_real_ops_verify_reuses_the_full_copy_free_map(private, monkeypatch):
    """verify_copy after full_copy masks unallocated blocks with the map the copy read (one dumpe2fs, not two)."""
    import subprocess
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fsmap
    if shutil.which('mkfs.ext4') is None or shutil.which('dumpe2fs') is None:
        pytest.skip('needs mkfs.ext4 and dumpe2fs (e2fsprogs)')
    vol = str(private / 'vol.img')
    with open(vol, 'wb') as handle:
        handle.truncate(16 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', vol], check=True)
    fmap = fsmap.free_map(vol)
    with open(vol, 'r+b') as handle:      # old data in the free blocks: they differ from the image
        for start, n in fmap.runs:
            handle.seek(start * cow_mod.BLOCK_SIZE)
            handle.write(b'\x5a' * n * cow_mod.BLOCK_SIZE)
    calls = []
    real = fsmap.free_map
    monkeypatch.setattr(fsmap, 'free_map', lambda *a, **kw: calls.append(a) or real(*a, **kw))
    ops = bk.Ops()
    image = str(private / 'img')
    ops.full_copy(vol, image)
    out = ops.verify_copy(vol, image)
    assert out['verified'] and out['unallocated_blocks'] == fmap.free_blocks
    assert len(calls) == 1


# -- the first backup after a reboot (after_reboot) -------------------------------------------------

EXT_MOUNT = fsmap.MountMap('ext', runs=[(0, 1), (65536, 4096)], parts={'superblock': 1, 'journal': 4096})
REC_OLD_BOOT = dict(REC_OK, boot_id='boot-0')


def test_after_reboot_copies_the_mount_regions_with_the_changes():
    ops = FakeOps(meta=META1, record=dict(REC_OLD_BOOT, untracked_runs=[[500, 3]]), mount=EXT_MOUNT)
    result = bk.run_cycle(params(), ops=ops)
    assert started(ops) == ['check_destination full=False', 'ensure snapshot', 'mount_map /dev/datto0',
                            'allocated_only None', 'sync %s none' % P1, 'ensure incremental', 'unlink %s' % P1]
    # Merged with the blocks the driver wrote untracked into the last COW file.
    assert ops.extra_seen == [[(0, 1), (500, 3), (65536, 4096)]]
    assert ops.mount_cow_files == [P1]       # the COW file closed at shutdown, reopened at boot
    assert result['mode'] == 'incremental'
    assert result['after_reboot'] == {'policy': 'metadata', 'fstype': 'ext', 'known': True, 'blocks': 4097,
                                      'parts': {'superblock': 1, 'journal': 4096}, 'note': None}
    assert any('copy the 4097 block(s) the ext filesystem writes while it is mounted (journal 4096, superblock 1)'
               in a for a in result['actions'])
    assert ops.saved[-1]['boot_id'] == 'boot-1'


def test_no_reboot_copies_only_the_changes():
    ops = FakeOps(meta=META1, record=REC_OK, mount=EXT_MOUNT)
    result = bk.run_cycle(params(), ops=ops)
    assert 'mount_map /dev/datto0' not in ops.calls and ops.extra_seen == [None]
    assert result['after_reboot'] is None and ops.saved[-1]['boot_id'] == 'boot-1'


@pytest.mark.parametrize('record, boot_id', [
    (dict(REC_OK, boot_id=None), 'boot-1'),   # a record of an earlier version
    (REC_OK, None),                          # this host's boot id cannot be read
])
def test_unknown_boot_counts_as_a_reboot(record, boot_id):
    ops = FakeOps(meta=META1, record=record, mount=EXT_MOUNT, boot_id=boot_id)
    bk.run_cycle(params(), ops=ops)
    assert 'mount_map /dev/datto0' in ops.calls and ops.extra_seen == [[(0, 1), (65536, 4096)]]


@pytest.mark.parametrize('mount, fail, why', [
    (fsmap.MountMap('ext', note='the blocks /dev/datto0 writes at mount are unknown: Cannot run debugfs'), None,
     'Cannot run debugfs'),
    (fsmap.MountMap(None, note='no ext2/3/4 or XFS superblock on /dev/datto0'), None, 'no ext2/3/4 or XFS'),
    (EXT_MOUNT, DattobdError('debugfs timed out'), 'debugfs timed out'),
])
def test_after_reboot_unknown_regions_take_a_full_backup(mount, fail, why):
    ops = FakeOps(meta=META1, record=REC_OLD_BOOT, mount=mount, fail={'mount_map': fail} if fail else None)
    result = bk.run_cycle(params(), ops=ops)
    assert result['mode'] == 'full'
    assert result['reason'] == 'first backup since a reboot, and the writes at mount cannot be located'
    assert why in result['reason_detail']
    assert 'full_copy /dev/datto0 /backup/data.img.partial' in ops.calls
    assert not any(c.startswith('sync') for c in ops.calls)
    assert result['after_reboot']['known'] is False
    assert ops.saved[-1]['boot_id'] == 'boot-1' and ops.saved[-1]['mode'] == 'full'


def test_after_reboot_external_journal_is_a_warning():
    mount = fsmap.MountMap('ext', runs=[(0, 1)], parts={'superblock': 1},
                           note='the journal of /dev/datto0 is on another device, which is not tracked with it')
    ops = FakeOps(meta=META1, record=REC_OLD_BOOT, mount=mount)
    result = bk.run_cycle(params(), ops=ops)
    assert result['mode'] == 'incremental' and ops.extra_seen == [[(0, 1)]]
    assert any('journal of /dev/datto0 is on another device' in w for w in result['warnings'])


def test_after_reboot_full_policy():
    ops = FakeOps(meta=META1, record=REC_OLD_BOOT, mount=EXT_MOUNT)
    result = bk.run_cycle(params(after_reboot='full'), ops=ops)
    assert result['mode'] == 'full' and result['reason'] == 'first backup since a reboot (after_reboot=full)'
    assert 'mount_map /dev/datto0' not in ops.calls and result['after_reboot'] == {'policy': 'full'}
    # The next cycle in the same boot is incremental again.
    nxt = FakeOps(meta=META1, record=ops.saved[-1], mount=EXT_MOUNT)
    assert bk.run_cycle(params(after_reboot='full'), ops=nxt)['mode'] == 'incremental'


def test_after_reboot_none_policy_warns():
    ops = FakeOps(meta=META1, record=REC_OLD_BOOT, mount=EXT_MOUNT)
    result = bk.run_cycle(params(after_reboot='none'), ops=ops)
    assert result['mode'] == 'incremental' and ops.extra_seen == [None] and 'mount_map /dev/datto0' not in ops.calls
    assert any('after_reboot=none' in w for w in result['warnings'])
    assert ops.saved[-1]['boot_id'] == 'boot-1'


def test_after_reboot_failed_copy_keeps_the_old_boot_so_the_next_run_copies_them_again():
    ops = FakeOps(meta=META1, record=REC_OLD_BOOT, mount=EXT_MOUNT, fail={'sync': DattobdError('EIO')})
    with pytest.raises(bk.BackupError):
        bk.run_cycle(params(), ops=ops)
    assert ops.saved[-1]['boot_id'] == 'boot-0'
    nxt = FakeOps(meta=META1_PENDING, record=dict(ops.saved[-1]), mount=EXT_MOUNT)
    nxt.snap = {'tracker': {'minor': 0, 'seq_id': 3, 'uuid': UUID}, 'previous_cow_file': P2}
    result = bk.run_cycle(params(), ops=nxt)
    assert result['mode'] == 'resume' and 'mount_map /dev/datto0' in nxt.calls
    assert nxt.extra_seen == [[(0, 1), (65536, 4096)]] and nxt.saved[-1]['boot_id'] == 'boot-1'


def test_after_reboot_image_already_holding_the_snapshot_copies_them_next_time():
    # The last cycle copied seq 2 but could not go back to incremental; the host rebooted since.
    ops = FakeOps(meta=dict(META1, seq_id=2), record=REC_OLD_BOOT, mount=EXT_MOUNT)
    result = bk.run_cycle(params(), ops=ops)
    assert result['reason'] == 'the image already holds this snapshot' and 'mount_map /dev/datto0' not in ops.calls
    assert ops.saved[-1]['boot_id'] == 'boot-0'   # nothing copied: the next cycle copies the mount regions


def test_after_reboot_check_mode_and_validation():
    ops = FakeOps(meta=META1, record=REC_OLD_BOOT, mount=EXT_MOUNT)
    result = bk.run_cycle(params(), ops=ops, check_mode=True)
    assert any(a.startswith('locate the blocks the filesystem writes while it is mounted') for a in result['actions'])
    assert 'mount_map /dev/datto0' not in ops.calls
    result = bk.run_cycle(params(after_reboot='full'), ops=FakeOps(meta=META1, record=REC_OLD_BOOT), check_mode=True)
    assert result['mode'] == 'full'
    result = bk.run_cycle(params(), ops=FakeOps(meta=META1, record=REC_OK), check_mode=True)
    assert not any(a.startswith('locate the blocks') for a in result['actions'])
    with pytest.raises(DattobdError, match='after_reboot must be one of metadata, full, none'):
        bk.run_cycle(params(after_reboot='sometimes'), ops=FakeOps(meta=META1, record=REC_OK))


def test_untracked_runs_free_now_are_not_copied():
    ops = FakeOps(meta=META1, record=dict(REC_OK, untracked_runs=[[500, 3], [900, 2]]), snap={'new_cow_file': P2})
    ops.free_now = {500}
    result = bk.run_cycle(params(), ops=ops)
    assert 'allocated_only %s' % P2 in ops.calls            # the live COW file is left out too
    assert ops.extra_seen == [[(900, 2)]]
    assert 'skip 3 block(s) the last COW file held: free now, or in the live COW file' in result['actions']
    ops = FakeOps(meta=META1, record=dict(REC_OK, untracked_runs=[[500, 3]]), snap={'new_cow_file': P2})
    ops.free_now = {500}
    bk.run_cycle(params(), ops=ops)
    assert ops.extra_seen == [None]


def test_untracked_runs_unknown_free_space_copies_them_all():
    ops = FakeOps(meta=META1, record=dict(REC_OK, untracked_runs=[[500, 3]]),
                  fail={'allocated_only': DattobdError('dumpe2fs timed out')})
    result = bk.run_cycle(params(), ops=ops)
    assert ops.extra_seen == [[(500, 3)]]
    assert any('Cannot tell which blocks of the last COW file are free now' in w for w in result['warnings'])


def test_ops_allocated_only(monkeypatch, tmp_path):
    dev = tmp_path / 'dev'
    dev.write_bytes(bytes(4096 * 100))
    monkeypatch.setattr(fsmap, 'free_map', lambda src, timeout, size: fsmap.FreeMap('ext', runs=[(10, 5), (40, 10)]))
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fiemap
    monkeypatch.setattr(fiemap, 'extents', lambda path: ['live'])
    monkeypatch.setattr(runs_mod, 'block_ranges', lambda extents: [(60, 62)])
    ops = bk.Ops()
    assert ops.allocated_only(str(dev), [(0, 20), (45, 20)], live_cow='/data/.datto_0_3') == (
        [(0, 10), (15, 5), (50, 10), (62, 3)], 12)
    # Without a free map only the live COW file is left out; without either nothing is.
    monkeypatch.setattr(fsmap, 'free_map', lambda src, timeout, size: fsmap.FreeMap('ext', note='unknown'))
    assert ops.allocated_only(str(dev), [(55, 10)], live_cow='/x') == ([(55, 5), (62, 3)], 2)
    assert ops.allocated_only(str(dev), [(55, 10)]) == ([(55, 10)], 0)


@pytest.mark.parametrize('record', [REC_OLD_BOOT, {}, dict(REC_OK, boot_id=None)], ids=['old-boot', 'no-record', 'no-boot-id'])
@pytest.mark.parametrize('policy', ['full', 'metadata', 'none'])
def test_check_mode_reports_the_after_reboot_decision_a_run_takes(record, policy):
    """One function decides the after-reboot step (backup_plan.after_reboot_step): check mode reports what the run does."""
    planned = bk.run_cycle(params(after_reboot=policy), ops=FakeOps(meta=META1, record=dict(record), mount=EXT_MOUNT),
                           check_mode=True)
    ops = FakeOps(meta=META1, record=dict(record), mount=EXT_MOUNT)
    done = bk.run_cycle(params(after_reboot=policy), ops=ops)
    assert (planned['mode'], planned['reason']) == (done['mode'], done['reason'])
    located = any(a.startswith('locate the blocks the filesystem writes while it is mounted') for a in planned['actions'])
    assert located == ('mount_map /dev/datto0' in ops.calls)


# (ops keywords, params): the cases of one step list for check mode and the run
STEP_CASES = [
    ('incremental', dict(meta=META1, record=REC_OK), {}),
    ('incremental, verify hook', dict(meta=META1, record=REC_OK), VERIFY_HOOK),
    ('resume', dict(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}], 'boot_id': 'boot-1'},
                    snap={'previous_cow_file': P2, 'tracker': {'minor': 0, 'seq_id': 3, 'uuid': UUID}}), {}),
    ('resume a killed cycle', dict(meta=META1_PENDING, record={'pending_cow_files': [{'path': P1, 'seq_id': 1}],
                                                               'boot_id': 'boot-1'},
                                   snap={'previous_cow_file': None, 'changed': False}), {}),
    ('first backup', dict(image_exists=False, snap={'previous_cow_file': None}), {}),
    ('after reboot, metadata', dict(meta=META1, record=dict(REC_OLD_BOOT), mount=EXT_MOUNT), {}),
    ('after reboot, full', dict(meta=META1, record=dict(REC_OLD_BOOT), mount=EXT_MOUNT), {'after_reboot': 'full'}),
    ('after reboot, none', dict(meta=META1, record=dict(REC_OLD_BOOT), mount=EXT_MOUNT), {'after_reboot': 'none'}),
]
# what each copy kind does on the host (FakeOps.calls) in a real run
KIND_CALL = {'sync': 'sync ', 'union': 'union_copy ', 'rebaseline': 'full_copy '}


@pytest.mark.parametrize('ops_kw, extra', [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES])
def test_check_mode_reports_the_steps_the_run_executes(monkeypatch, ops_kw, extra):
    """One function lists the steps after the snapshot (backup_plan.cycle_steps) and one says how the copy step
    copies (copy_kind): check mode reports that list, the run executes it, step for step."""
    seen = {}

    def recording(name, real):
        def wrapper(*args):
            out = real(*args)
            seen.setdefault(name, []).append(out)
            return out
        return wrapper
    monkeypatch.setattr(plan_mod, 'cycle_steps', recording('steps', plan_mod.cycle_steps))
    monkeypatch.setattr(plan_mod, 'copy_kind', recording('kind', plan_mod.copy_kind))
    planned = bk.run_cycle(params(**extra), ops=FakeOps(**ops_kw), check_mode=True)
    planned_seen, seen = seen, {}
    ops = FakeOps(**ops_kw)
    done = bk.run_cycle(params(**extra), ops=ops)
    assert planned_seen['steps'] == seen['steps'] and len(seen['steps']) == 1
    assert planned_seen['kind'] == seen['kind'] and len(seen['kind']) == 1
    assert (planned['mode'], planned['reason']) == (done['mode'], done['reason'])
    steps, kind = seen['steps'][0], seen['kind'][0]
    # the run did what the list says, in that order
    assert (plan_mod.AFTER_REBOOT in steps) == (ops_kw.get('record') is REC_OLD_BOOT or
                                                ops_kw.get('record', {}).get('boot_id') == 'boot-0')
    assert any(c.startswith(KIND_CALL[kind]) for c in ops.calls), (kind, ops.calls)
    hook = [c for c in ops.calls if c == 'hook verify1']
    assert bool(hook) == (plan_mod.VERIFY_HOOKS in steps)
    assert any('verify1' in a for a in planned['actions']) == bool(hook)
    copied = next(i for i, c in enumerate(ops.calls) if c.startswith(KIND_CALL[kind]))
    assert ops.calls.index('ensure incremental') > copied
    if hook:
        assert copied < ops.calls.index('hook verify1') < ops.calls.index('ensure incremental')
    # check mode warns as the run does (after_reboot=none)
    assert [w for w in planned['warnings'] if 'after_reboot=none' in w] == \
        [w for w in done['warnings'] if 'after_reboot=none' in w]


# --- issue 23: a reboot between the volumes of one run ------------------------------------------

@pytest.mark.parametrize('run_boot_id, expected', [('boot-1', False), ('boot-0', True), (None, None)])
def test_reboot_during_the_run_is_noticed(run_boot_id, expected):
    """The role passes the boot id its run started in; a volume backed up after a reboot says so."""
    ops = FakeOps(meta=META1, record=REC_OK, mount=EXT_MOUNT)
    result = bk.run_cycle(params(run_boot_id=run_boot_id), ops=ops)
    assert result['rebooted_during_run'] is expected
    assert any('rebooted during this run (boot id boot-0 when the run started, now boot-1)' in w
               for w in result['warnings']) is bool(expected)
    plan = bk.run_cycle(params(run_boot_id=run_boot_id), ops=FakeOps(meta=META1, record=REC_OK, mount=EXT_MOUNT),
                        check_mode=True)
    assert plan['rebooted_during_run'] is expected


def test_reboot_during_the_run_is_in_a_failure_too():
    ops = FakeOps(meta=META1, record=REC_OK, mount=EXT_MOUNT, hook_rc={'pre1': 1})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(run_boot_id='boot-0', **HOOKS), ops=ops)
    assert info.value.details['rebooted_during_run'] is True


@pytest.mark.parametrize('bad', ['', 'a b', 'x' * 65, '../etc'])
def test_run_boot_id_is_validated(bad):
    with pytest.raises(DattobdError, match='run_boot_id must be a boot id'):
        bk.run_cycle(params(run_boot_id=bad), ops=FakeOps(meta=META1, record=REC_OK, mount=EXT_MOUNT))
