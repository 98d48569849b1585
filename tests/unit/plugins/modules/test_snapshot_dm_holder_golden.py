# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapshot module: the device-mapper holder field case, replayed from its recording on the real driver.

tests/fixtures/golden/dm-holder/ was recorded on a lab guest (dattobd 0.12.1, kernel 6.1.0-57) with
its ``record.py``: /dev/vde tracked at minor 9, a ``dmsetup create sfhold`` linear target over
/dev/datto9, then ``transition-to-incremental`` and ``destroy`` refused with EBUSY while no process
had either device open (``transcript.jsonl``; ``sysfs.json`` holds the /sys/block entries and the
mounts of that moment). The snapshot module then ran twice (``module-absent.json``: state absent;
``module-release.json``: with release_holders). Here the module runs on a /sys and /proc tree
rebuilt from ``sysfs.json``, with the recorded dbdctl results, and must say and do what it did on
the guest.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import snapshot_run, tracker
from ansible_collections.snapfleet.dattobd.plugins.modules import snapshot

from ..module_utils.fakehost import MOUNTINFO, FakeHost, FakeStat
from ...conftest import GOLDEN
# no_busy_retries and patch_exit are fixtures of test_snapshot, used here by name
from .test_snapshot import DBDCTL, FakeDriver, no_busy_retries, patch_exit  # noqa: F401 pylint: disable=unused-import
from .test_snapshot_holders import DMSETUP, LOSETUP, remove_dm_target
from .utils import run_patched

HERE = os.path.join(GOLDEN, 'dm-holder')
VDE = os.makedev(254, 64)


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return json.load(f) if name.endswith('.json') else [json.loads(line) for line in f if line.strip()]


SYSFS = load('sysfs.json')
STEPS = dict((r['step'], r) for r in load('transcript.jsonl'))
ABSENT = load('module-absent.json')
RELEASE = load('module-release.json')
MINOR = SYSFS['minor']
MOUNT = SYSFS['mount_point']


def recorded(step):
    r = STEPS[step]
    return (r['rc'], r['stdout'], r['stderr'], r['dmesg'])


def build_tree(base):
    """/sys/block and /proc/self/mountinfo as sysfs.json recorded them while the target held datto<N>."""
    sys_root, proc_root = os.path.join(base, 'sys'), os.path.join(base, 'proc')
    for kname, entry in SYSFS['held']['block'].items():
        d = os.path.join(sys_root, 'block', kname)
        for sub in ('slaves', 'holders'):
            os.makedirs(os.path.join(d, sub))
            for name in entry[sub]:
                open(os.path.join(d, sub, name), 'w').close()
        for sub, text in entry.items():
            if sub not in ('slaves', 'holders'):
                os.makedirs(os.path.dirname(os.path.join(d, sub)), exist_ok=True)
                with open(os.path.join(d, sub), 'w') as f:
                    f.write(text + '\n')
    os.makedirs(os.path.join(proc_root, 'self'))
    with open(os.path.join(proc_root, 'self', 'mountinfo'), 'w') as f:
        f.write(MOUNTINFO + ''.join(line + '\n' for line in SYSFS['held']['mountinfo']))
    return sys_root, proc_root


def guest_host():
    """The fake host with the recorded data volume: /dev/vde (254:64) mounted at the mount point."""
    device = RELEASE['device']
    return FakeHost(
        mountinfo=MOUNTINFO + ''.join(line + '\n' for line in SYSFS['held']['mountinfo']),
        extra={'/dev/vde': FakeStat('blk', rdev=VDE, dev=1), MOUNT: FakeStat('dir', dev=VDE)},
        links={device['stable_name']: '/dev/vde'},
        files={'/sys/dev/block/254:64/uevent': 'MAJOR=254\nMINOR=64\nDEVNAME=vde\nDEVTYPE=disk\n',
               '/sys/dev/block/254:64/size': '%d\n' % (device['size'] // 512)})


def run(tmp_path, args, results):
    sys_root, proc_root = build_tree(str(tmp_path))
    before, after = STEPS['destroy']['proc_before'], STEPS['datto-info']['proc_after']
    driver = FakeDriver([before, after], results)
    block = os.path.join(sys_root, 'block')

    def runner(argv, timeout=None):
        result = driver.run(argv, timeout)
        if argv[:2] == [DMSETUP, 'remove'] and result[0] == 0:     # as on the guest: the target goes away
            remove_dm_target(block, argv[2], MINOR)
        return result

    def ctx(module):
        return tracker.Context(module=module, host=guest_host(), runner=runner, watcher_factory=driver.watcher,
                               read_procinfo=driver.read, max_snap_devices=24, driver_version='0.12.1',
                               dbdctl_path=DBDCTL, sys_root=sys_root, proc_root=proc_root,
                               tools={'dmsetup': DMSETUP, 'losetup': LOSETUP})

    saved = snapshot_run.make_context
    snapshot_run.make_context = ctx
    try:
        result = run_patched(snapshot.main, dict(args, persist=False))
    finally:
        snapshot_run.make_context = saved
    return result, driver, block


def test_the_recording_is_the_field_case():
    """EBUSY for both operations with nobody holding either device open, a dm target on datto<N>."""
    for step in ('transition-to-incremental', 'destroy'):
        rc, _out, err, dmesg = recorded(step)
        assert rc != 0 and 'Device or resource busy' in err, STEPS[step]
        assert any('device specified is busy: -16' in line for line in dmesg), dmesg
    held = SYSFS['held']
    assert held['openers'] == []
    holders = held['block']['datto%d' % MINOR]['holders']
    assert len(holders) == 1 and held['block'][holders[0]]['dm/name'] == 'sfhold'
    assert held['block'][holders[0]]['slaves'] == ['datto%d' % MINOR]
    assert 'datto%d' % MINOR not in SYSFS['after']['block']            # destroyed in the end


def test_busy_destroy_names_the_dm_target_as_on_the_guest(tmp_path):
    result, driver, block = run(tmp_path, dict(device='/dev/vde', minor=MINOR, state='absent'), [recorded('destroy')])
    assert result['failed'] is True
    assert result['msg'] == ABSENT['msg']
    assert result['holders'] == ABSENT['holders']
    assert result['errno_name'] == ABSENT['errno_name'] == 'EBUSY'
    assert [' '.join(a) for a in driver.argvs] == ['%s destroy %d' % (DBDCTL, MINOR)]
    assert os.path.isdir(os.path.join(block, 'dm-0'))                  # nothing released without release_holders


def test_release_holders_removes_the_stale_target_and_destroys_as_on_the_guest(tmp_path):
    ok = (0, '', '', [])
    result, driver, block = run(tmp_path, dict(device='/dev/vde', minor=MINOR, state='absent', release_holders=True),
                                [ok, ok])
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert result['actions'] == RELEASE['actions'] == [DMSETUP + ' remove sfhold', '%s destroy %d' % (DBDCTL, MINOR)]
    assert result['holders'] == RELEASE['holders']
    assert [' '.join(a) for a in driver.argvs] == RELEASE['actions']
    assert not os.path.exists(os.path.join(block, 'dm-0'))
