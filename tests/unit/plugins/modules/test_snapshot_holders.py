# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapshot module: a busy /dev/datto0 names its holders; release_holders removes only the stale ones.

The driver replays the golden EBUSY records (seq 56 transition-to-incremental, seq 81 destroy); what
holds /dev/datto0 is a fixture /sys and /proc tree under tmp_path; dmsetup and losetup go through the
same fake runner as dbdctl, and removing a holder removes it from the tree, as on a real host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import tracker
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import snapshot_run
from ansible_collections.snapfleet.dattobd.plugins.modules import snapshot

from ..module_utils.fakehost import MOUNTINFO, FakeHost
from ..module_utils.test_holders import KPARTX, LOOP, build
# no_busy_retries and patch_exit are fixtures of test_snapshot, used here by name
from .test_snapshot import DBDCTL, EMPTY, OK, S2, S3, FakeDriver, no_busy_retries, patch_exit, rec  # noqa: F401 pylint: disable=unused-import
from .utils import run_patched

DMSETUP = '/usr/sbin/dmsetup'
LOSETUP = '/usr/sbin/losetup'
MOUNTED_DM = ('dm-4', '253:4', 'snapfs', 'CRYPT-plain-snapfs', ['datto0'], [])
DM_MOUNT = '60 21 253:4 / /mnt/x rw,relatime - ext4 /dev/mapper/snapfs rw\n'
DMSETUP_BUSY = (1, '', 'device-mapper: remove ioctl on datto0p1  failed: Device or resource busy\nCommand failed.\n', [])


class Tree(object):
    """The fixture tree and a runner that removes a holder when dmsetup/losetup removes it."""

    def __init__(self, base, **spec):
        spec.setdefault('mounts', MOUNTINFO.split('\n', 1)[1])
        self.sys_root, self.proc_root = build(base, **spec)
        self.block = os.path.join(self.sys_root, 'block')

    def add_holder(self, dm):
        kname, dev, name, uuid, slaves, held = dm
        d = os.path.join(self.block, kname)
        for sub, text in (('dev', dev), ('dm/name', name), ('dm/uuid', uuid)):
            os.makedirs(os.path.dirname(os.path.join(d, sub)), exist_ok=True)
            with open(os.path.join(d, sub), 'w') as f:
                f.write(text + '\n')
        os.makedirs(os.path.join(d, 'slaves'), exist_ok=True)
        open(os.path.join(d, 'slaves', 'datto0'), 'w').close()
        os.makedirs(os.path.join(d, 'holders'), exist_ok=True)
        open(os.path.join(self.block, 'datto0', 'holders', kname), 'w').close()

    def wrap(self, driver, on_first_dbdctl=None):
        def run(argv, timeout=None):
            if argv[0] == DBDCTL and on_first_dbdctl:
                on_first_dbdctl()
                del hooks[:]
            result = driver.run(argv, timeout)
            if argv[:2] == [DMSETUP, 'remove'] and result[0] == 0:
                remove_dm_target(self.block, argv[2])
            if argv[:2] == [LOSETUP, '-d'] and result[0] == 0:
                shutil.rmtree(os.path.join(self.block, os.path.basename(argv[2])))
            return result
        hooks = [on_first_dbdctl] if on_first_dbdctl else []
        on_first_dbdctl = (lambda: hooks and hooks[0]()) if on_first_dbdctl else None
        return run


def remove_dm_target(block, name, minor=0):
    """What a successful ``dmsetup remove <name>`` does to the fixture /sys/block tree: the target's
    directory and its entry in ``datto<minor>/holders`` go."""
    for kname in os.listdir(block):
        if _read(os.path.join(block, kname, 'dm', 'name')) == name:
            os.remove(os.path.join(block, 'datto%d' % minor, 'holders', kname))
            shutil.rmtree(os.path.join(block, kname))


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def run_module(args, driver, tree, check_mode=False, on_first_dbdctl=None):
    args = dict(args, persist=False)
    if check_mode:
        args['_ansible_check_mode'] = True
    runner = tree.wrap(driver, on_first_dbdctl)

    def ctx(module):
        return tracker.Context(module=module, host=FakeHost(), runner=runner, watcher_factory=driver.watcher,
                               read_procinfo=driver.read, max_snap_devices=24, driver_version='0.12.1',
                               dbdctl_path=DBDCTL, sys_root=tree.sys_root, proc_root=tree.proc_root,
                               tools={'dmsetup': DMSETUP, 'losetup': LOSETUP})

    saved = snapshot_run.make_context
    snapshot_run.make_context = ctx
    try:
        return run_patched(snapshot.main, args)
    finally:
        snapshot_run.make_context = saved


def cmds(driver):
    return [' '.join(a) for a in driver.argvs]


def test_busy_destroy_names_each_holder_and_its_release_command(tmp_path):
    tree = Tree(str(tmp_path), dms=[('dm-3', '253:3', 'vgdata-snap', '', ['datto0'], []), MOUNTED_DM],
                mounts=MOUNTINFO.split('\n', 1)[1] + DM_MOUNT)
    driver = FakeDriver([S3], [rec(81)])
    result = run_module(dict(device='/data', state='absent'), driver, tree)
    assert result['failed'] is True
    assert result['msg'].startswith(
        "dbdctl destroy 0 failed: device busy: /dev/datto0 is held by dm-3 (device-mapper 'vgdata-snap', "
        "remove with: dmsetup remove vgdata-snap); dm-4 (device-mapper 'snapfs', mounted at /mnt/x: unmount "
        "with: umount /mnt/x, then remove with: dmsetup remove snapfs). Release them (the commands above) and "
        "run again; release_holders: true removes the stale one(s) (dm-3) and retries."), result['msg']
    assert [(h['device'], h['releasable'], h['released']) for h in result['holders']] == [
        ('dm-3', True, False), ('dm-4', False, False)]
    assert cmds(driver) == [DBDCTL + ' destroy 0']     # nothing removed without release_holders
    assert 'Traceback' not in result['msg']


def test_busy_without_holders_keeps_the_driver_explanation(tmp_path):
    tree = Tree(str(tmp_path))
    result = run_module(dict(device='/data', state='incremental'), FakeDriver([S3], [rec(56)]), tree)
    assert result['failed'] is True
    assert '/dev/datto0 is busy: the snapshot device is mounted or held open' in result['msg']
    assert 'no holder was found' in result['msg'] and result['holders'] == []


@pytest.mark.parametrize('check_mode', [False, True])
def test_release_holders_removes_only_the_stale_ones_before_the_call(tmp_path, check_mode):
    tree = Tree(str(tmp_path), dms=[KPARTX], loops=[LOOP])
    driver = FakeDriver([S3, EMPTY], [] if check_mode else [OK, OK, rec(160)])
    result = run_module(dict(device='/data', state='absent', release_holders=True), driver, tree,
                        check_mode=check_mode)
    assert not result.get('failed'), result
    assert result['actions'] == [DMSETUP + ' remove datto0p1', LOSETUP + ' -d /dev/loop0', DBDCTL + ' destroy 0']
    assert cmds(driver) == ([] if check_mode else result['actions'])
    assert [(h['device'], h['released']) for h in result['holders']] == [('dm-3', not check_mode),
                                                                         ('loop0', not check_mode)]
    assert os.path.isdir(os.path.join(tree.block, 'dm-3')) is check_mode   # check mode removes nothing


def test_release_holders_never_unmounts_and_reports_what_is_left(tmp_path):
    tree = Tree(str(tmp_path), dms=[KPARTX, MOUNTED_DM], mounts=MOUNTINFO.split('\n', 1)[1] + DM_MOUNT)
    driver = FakeDriver([S3], [OK, rec(81)])
    result = run_module(dict(device='/data', state='absent', release_holders=True), driver, tree)
    assert result['failed'] is True
    assert cmds(driver) == [DMSETUP + ' remove datto0p1', DBDCTL + ' destroy 0']
    assert not any('umount' in c or 'snapfs' in c for c in cmds(driver))
    assert result['msg'].startswith("dbdctl destroy 0 failed: device busy: /dev/datto0 is held by dm-4 "
                                    "(device-mapper 'snapfs', mounted at /mnt/x: unmount with: umount /mnt/x"), \
        result['msg']
    assert 'never unmounts' in result['msg']
    assert [(h['device'], h['released']) for h in result['holders']] == [('dm-3', True), ('dm-4', False)]


def test_holder_that_appears_after_the_check_is_released_and_the_call_retried_once(tmp_path):
    """LVM activates a volume group it found on the snapshot while the call runs."""
    tree = Tree(str(tmp_path))
    lvm = ('dm-9', '253:9', 'vgdata-snap', 'LVM-abcdef', ['datto0'], [])
    driver = FakeDriver([S3, S2], [rec(56), OK, rec(135)])
    result = run_module(dict(device='/data', state='incremental', release_holders=True), driver, tree,
                        on_first_dbdctl=lambda: tree.add_holder(lvm))
    assert not result.get('failed'), result
    assert cmds(driver) == [DBDCTL + ' transition-to-incremental 0', DMSETUP + ' remove vgdata-snap',
                            DBDCTL + ' transition-to-incremental 0']
    assert result['holders'][0]['lvm'] == 'vgdata/snap' and result['holders'][0]['released'] is True


def test_retry_is_once_only(tmp_path):
    tree = Tree(str(tmp_path))
    lvm = ('dm-9', '253:9', 'vgdata-snap', 'LVM-abcdef', ['datto0'], [])
    driver = FakeDriver([S3], [rec(56), OK, rec(56)])
    result = run_module(dict(device='/data', state='incremental', release_holders=True), driver, tree,
                        on_first_dbdctl=lambda: tree.add_holder(lvm))
    assert result['failed'] is True
    assert cmds(driver) == [DBDCTL + ' transition-to-incremental 0', DMSETUP + ' remove vgdata-snap',
                            DBDCTL + ' transition-to-incremental 0']
    assert 'no holder was found' in result['msg']


def test_dmsetup_failure_is_reported_without_a_traceback(tmp_path):
    tree = Tree(str(tmp_path), dms=[KPARTX])
    driver = FakeDriver([S3], [DMSETUP_BUSY])
    result = run_module(dict(device='/data', state='absent', release_holders=True), driver, tree)
    assert result['failed'] is True
    assert result['msg'].startswith('Releasing dm-3 failed: /usr/sbin/dmsetup remove datto0p1 exited 1: '
                                    'device-mapper: remove ioctl'), result['msg']
    assert 'Traceback' not in result['msg']
    assert cmds(driver) == [DMSETUP + ' remove datto0p1']   # dbdctl was not run
    assert result['holders'][0]['released'] is False


def test_check_mode_without_release_warns_that_the_run_would_fail(tmp_path):
    tree = Tree(str(tmp_path), loops=[LOOP])
    driver = FakeDriver([S3], [])
    result = run_module(dict(device='/data', state='absent'), driver, tree, check_mode=True)
    assert not result.get('failed'), result
    assert result['actions'] == [DBDCTL + ' destroy 0'] and driver.argvs == []
    assert any(w.startswith('/dev/datto0 is held by loop0 (loop device backed by /dev/datto0, detach with: '
                            'losetup -d /dev/loop0): the real run fails with EBUSY') for w in result['warnings'])
    assert result['holders'][0]['device'] == 'loop0'


@pytest.mark.parametrize('value', ['maybe', 2])
def test_bad_release_holders_changes_nothing(tmp_path, value):
    tree = Tree(str(tmp_path), dms=[KPARTX])
    driver = FakeDriver([S3], [])
    result = run_module(dict(device='/data', state='absent', release_holders=value), driver, tree)
    assert result['failed'] is True and driver.argvs == []
    assert os.path.isdir(os.path.join(tree.block, 'dm-3'))


def test_library_refuses_a_non_boolean_release_holders(tmp_path):
    driver = FakeDriver([S3], [])
    ctx = tracker.Context(host=FakeHost(), runner=driver.run, read_procinfo=driver.read, max_snap_devices=24,
                          dbdctl_path=DBDCTL, reload_module=None)
    with pytest.raises(Exception) as exc:
        tracker.ensure(ctx, '/data', 'absent', persist=False, release_holders='yes')
    assert 'release_holders must be true or false' in str(exc.value) and driver.argvs == []
