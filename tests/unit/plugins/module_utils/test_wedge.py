# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A wedged driver costs one timeout per host and boot (issue 23, item 1).

The first driver call or /proc/datto-info read that times out marks the driver wedged (wedge.py):
in the process (no further driver call in this module call) and in a marker under /run keyed by
the boot id (every later module call of this boot fails at once, or, info, reports it). The unit
conftest points the marker directory at a temporary one and forgets the process's wedge per test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import time

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_plan as plan
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import boot_state
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dbdctl as dbdctl_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import wedge
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DriverTimeout, DriverWedged
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.test_backup import (
    FakeOps, META1, REC_OK, params)

BOOT = 'boot-1'


def timeout(what='Reading /proc/datto-info', seconds=60):
    return DriverTimeout('%s did not finish within %s seconds.' % (what, seconds), hint='check ps', timeout=seconds)


def new_process():
    """What the next module call of the same boot sees: only the marker file."""
    wedge.reset()


def test_mark_writes_a_root_only_marker_of_this_boot():
    err = wedge.mark(timeout(), 'reading /proc/datto-info', boot_id=BOOT, now='2026-12-05T10:00:00Z')
    assert isinstance(err, DriverWedged)
    path = wedge.marker_path()
    with open(path) as handle:
        data = json.load(handle)
    assert data == {'schema': 1, 'since': '2026-12-05T10:00:00Z', 'boot_id': BOOT, 'call': 'reading /proc/datto-info',
                    'reason': 'reading /proc/datto-info did not finish within 60 seconds'}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert err.details['driver_wedged']['path'] == path
    # the message says it once, and what clears it
    text = err.full_msg
    assert text.count('wedged') == 1 + wedge.RECOVERY.count('wedged')
    assert 'looks wedged' not in text
    assert 'hard reset' in text and 'echo b > /proc/sysrq-trigger' in text and 'clean reboot hangs' in text
    new_process()
    marker = wedge.read(boot_id=BOOT)
    assert (marker['since'], marker['reason']) == ('2026-12-05T10:00:00Z', data['reason'])


def test_a_marker_of_an_earlier_boot_or_unreadable_is_ignored():
    wedge.mark(timeout(), 'dbdctl destroy', boot_id='boot-0')
    new_process()
    assert wedge.read(boot_id=BOOT) is None
    wedge.check(boot_id=BOOT)  # no raise
    with open(wedge.marker_path(), 'w') as handle:
        handle.write('{not json')
    assert wedge.read(boot_id=BOOT) is None


def test_the_marker_is_keyed_by_the_real_boot_id():
    wedge.mark(timeout(), 'reading /proc/datto-info')
    new_process()
    if boot_state.read_boot_id() is None:
        assert wedge.read() is None  # no boot id: nothing to key a marker with, only the process's own wedge
    else:
        assert wedge.read()['boot_id'] == boot_state.read_boot_id()


def test_an_unwritable_marker_still_wedges_the_process(tmp_path, monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    monkeypatch.setattr(wedge, 'DEFAULT_DIR', str(blocker / 'sub'))
    err = wedge.mark(timeout(), 'dbdctl destroy', boot_id=BOOT)
    assert err.details['driver_wedged']['path'] is None
    with pytest.raises(DriverWedged):
        wedge.check(boot_id=BOOT)


def test_proc_read_that_times_out_marks_and_the_next_read_is_not_tried(monkeypatch):
    reads = []

    def blocked(path, timeout=10):
        reads.append(path)
        raise timeout_exc
    timeout_exc = timeout(seconds=7)
    monkeypatch.setattr(procinfo, 'read_file_timed', blocked)
    with pytest.raises(DriverWedged) as info:
        procinfo.read(timeout=7)
    assert info.value.msg.startswith('reading /proc/datto-info did not finish within 7 seconds: the dattobd driver '
                                     'is wedged')
    with pytest.raises(DriverWedged) as info:
        procinfo.read(timeout=7)  # the same module call
    new_process()
    with pytest.raises(DriverWedged) as info:
        procinfo.read(timeout=7)  # a later module call of this boot (the marker file)
    assert reads == ['/proc/datto-info']
    assert 'no driver call was made' in info.value.msg and info.value.msg.count('wedged') == 1


def test_dbdctl_call_that_times_out_marks_and_the_next_call_is_not_run():
    argvs = []

    def runner(argv, **kwargs):
        argvs.append(argv)
        raise timeout('dbdctl transition-to-snapshot')

    class Watcher(object):
        def start(self):
            pass

        def collect(self):
            return []
    ctl = dbdctl_mod.Dbdctl('/usr/bin/dbdctl', timeout=60, runner=runner, watcher_factory=Watcher,
                            driver_version='0.12.1')
    with pytest.raises(DriverWedged) as info:
        ctl.call('transition-to-snapshot', minor=0, cow_file='/data/.datto_0_2', fallocate=25)
    assert info.value.details['driver_wedged']['call'] == 'dbdctl transition-to-snapshot'
    assert info.value.details['cmd'].startswith('/usr/bin/dbdctl transition-to-snapshot')
    with pytest.raises(DriverWedged):
        ctl.call('transition-to-incremental', minor=0)
    assert len(argvs) == 1
    # check mode runs nothing, so it is not refused
    assert dbdctl_mod.Dbdctl('/usr/bin/dbdctl', check_mode=True).call('destroy', minor=0)['rc'] is None


def test_sync_fails_at_once_on_a_wedged_driver(tmp_path):
    wedge.mark(timeout(), 'reading /proc/datto-info', boot_id=BOOT)

    def reader(timeout):
        raise AssertionError('read a wedged driver')
    with pytest.raises(DriverWedged):
        sync_mod.run('/dev/datto0', str(tmp_path / 'cow'), str(tmp_path / 'img'), procinfo_reader=reader)


def test_real_ops_check_the_marker():
    bk.Ops().check_driver()
    wedge.mark(timeout(), 'dbdctl destroy', boot_id=BOOT)
    with pytest.raises(DriverWedged):
        bk.Ops().check_driver()


def wedged_ops(**kw):
    ops = FakeOps(meta=META1, record=REC_OK, **kw)
    ops.wedge = {'since': '2026-12-05T10:00:00Z', 'reason': 'dbdctl transition-to-snapshot did not finish within 60 '
                 'seconds', 'boot_id': BOOT, 'call': 'dbdctl transition-to-snapshot', 'path': '/run/x'}
    return ops


def test_backup_of_the_next_volume_fails_at_once_and_changes_nothing():
    """A readiness check like any other (issue 15): no hook, no driver call, no lock and no record; the
    result says the next run is full."""
    ops = wedged_ops()
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(pre_hooks=[{'argv': ['/bin/freeze', 'pre1']}]), ops=ops)
    details = info.value.details
    assert ops.calls == [] and ops.saved == []  # no hook, no tracker call, no lock, no record
    assert (details['step'], details['image_state'], details['next_run'], details['next_full_reason']) == (
        'driver', 'untouched', 'full', plan.DRIVER_WEDGED)
    assert details['driver_wedged']['since'] == '2026-12-05T10:00:00Z'
    assert info.value.msg.count('is wedged') == 1 and 'no driver call was made' in info.value.msg
    assert 'The next run takes a full backup (driver wedged).' in info.value.msg
    assert 'hard reset' in info.value.hint and 'clean reboot hangs' in info.value.hint
    assert details['record'] is None and 'no record or lock was written' in info.value.msg


def test_backup_check_mode_on_a_wedged_driver_writes_nothing():
    ops = wedged_ops()
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops, check_mode=True)
    assert ops.calls == [] and ops.saved == []
    assert info.value.details['next_full_reason'] == plan.DRIVER_WEDGED
    assert 'Nothing was changed' in info.value.msg


def test_backup_readiness_read_that_times_out_fails_the_cycle_at_once():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'ensure_snapshot_check': timeout()})
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(), ops=ops)
    assert ops.calls == ['ensure snapshot (check)'] and ops.saved == []
    assert info.value.details['next_full_reason'] == plan.DRIVER_WEDGED
    assert info.value.details['next_run'] == 'full'


class _Module(object):
    check_mode = False

    def __init__(self, module_params):
        self.params = module_params


def test_backup_failure_says_how_long_the_call_took():
    """The first volume's call spends one timeout, the next ones none: each failure says how long its call
    took (``cycle_seconds``), so a fleet run can tell one timeout per host from one per volume."""
    ops = FakeOps(meta=META1, record=REC_OK, fail={'ensure_snapshot_check': timeout()})
    maybe_fail = ops._maybe_fail

    def slow(name):
        if name == 'ensure_snapshot_check':
            time.sleep(0.2)
        return maybe_fail(name)
    ops._maybe_fail = slow
    with pytest.raises(bk.BackupError) as info:
        bk.module_runner(_Module(params(read_depth=8)), ops_factory=lambda module: ops)
    assert 0.2 <= info.value.details['cycle_seconds'] < 5
    with pytest.raises(bk.BackupError) as info:
        bk.module_runner(_Module(params(read_depth=8)), ops_factory=lambda module: wedged_ops())
    assert 0 <= info.value.details['cycle_seconds'] < 0.2
