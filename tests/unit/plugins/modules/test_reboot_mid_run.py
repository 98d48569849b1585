# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23, measured: a host hard-reset during a backup run; the next volume of the interrupted loop
ran on the rebooted host, took minor 0 (the first volume's old minor) and rewrote reload_snapfleet_0,
while reload_snapfleet_1 still named the same device with an old COW file.

That state replayed through the info module (drift ``duplicate_device``), the boot hook (refuses both
scripts, says why) and the snapshot module (keeps the script of the live tracker, removes the other).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as reload_lib

from ..module_utils.fakehost import UUID_VDB
from ...roles import test_initramfs_boot as boot
from . import test_info, test_snapshot
from .utils import patch_exit_fail

DATA = '/dev/disk/by-uuid/' + UUID_VDB   # /dev/vdb, mounted at /data (FakeHost)


@pytest.fixture(autouse=True)
def patch_exit(monkeypatch):
    patch_exit_fail(monkeypatch, collect_warnings=True)
    # the info module's host: DATA is /dev/vdb (as FakeHost resolves it for the snapshot module)
    aliases = {DATA: '/dev/vdb'}
    monkeypatch.setattr(test_info.FakeHost, 'reload_compare', lambda self, scans, info: reload_lib.compare(
        scans, info, same_device=lambda a, b: aliases.get(a, a) == aliases.get(b, b)), raising=False)


@pytest.fixture
def measured(tmp_path):
    """The reload directory as measured: the live tracker is minor 0 on /dev/vdb with COW file /.datto0
    (golden state-2); reload_snapfleet_1 is the device's script from before the reset."""
    rdir = tmp_path / 'dla'
    rdir.mkdir(mode=0o700)
    reload_lib.ensure(0, DATA, '/.datto0', 'incremental', directory=str(rdir))
    reload_lib.ensure(1, DATA, '/.datto_1_4', 'incremental', directory=str(rdir))
    return rdir


def _info(rdir):
    result, dummy = test_info.run({'reload_dir': str(rdir), 'dkms': False}, proc=test_info.sample('state-2'),
                                  bins={}, runs={})
    return result


def test_info_reports_two_scripts_for_one_device(measured):
    result = _info(measured)
    assert result['reload']['in_sync'] is False
    drift = dict((d['problem'], d) for d in result['reload']['drift'])
    assert set(drift) == {'duplicate_device', 'script_without_tracker'}
    dup = drift['duplicate_device']
    assert dup['minor'] == 1 and dup['path'] == str(measured / 'reload_snapfleet_1')
    assert dup['script']['cow_file'] == '/.datto_1_4'
    assert 'reload_snapfleet_0 matches the live tracker 0' in dup['message']


def test_boot_hook_refuses_both_scripts(measured, tmp_path):
    root = boot._root_dev()
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for tool in ('modprobe', 'mount', 'umount', 'blkid', 'blockdev', 'udevadm'):
        (bindir / tool).write_text(boot.STUB)
        (bindir / tool).chmod(0o755)
    mnt = tmp_path / 'mnt'
    (mnt / 'etc' / 'datto').mkdir(parents=True)
    os.rename(str(measured), str(mnt / 'etc' / 'datto' / 'dla'))
    env = dict(os.environ, PATH='%s:%s' % (bindir, os.environ['PATH']), STUB_LOG=str(tmp_path / 'calls'),
               SNAPFLEET_DATTOBD_MNT=str(mnt), SNAPFLEET_DATTOBD_KMSG=str(tmp_path / 'kmsg'),
               SNAPFLEET_DATTOBD_RUNDIR=str(tmp_path / 'run'), SNAPFLEET_DATTOBD_SETTLE_TIMEOUT='1')
    proc = subprocess.run(['sh', boot.BOOT, root, 'ext4'], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / 'run' / 'boot-reload.log').read_text().splitlines()
    assert log[-3:] == ['script reload_snapfleet_0 refused duplicate-device reload_snapfleet_1',
                        'script reload_snapfleet_1 refused duplicate-device reload_snapfleet_0', 'done 0 0']
    assert 'also reload %s (one tracker per device, so one script is stale)' % DATA in (tmp_path / 'kmsg').read_text()


@pytest.mark.parametrize('check_mode', [True, False])
def test_snapshot_keeps_the_live_trackers_script_and_removes_the_other(measured, check_mode):
    before0 = (measured / 'reload_snapfleet_0').read_text()
    res = test_snapshot.run_module(dict(device='/data', state='incremental'), test_snapshot.FakeDriver([test_snapshot.S2], []),
                                   reload_dir=str(measured), check_mode=check_mode)
    assert not res.get('failed'), res
    assert res['changed'] is True
    assert res['actions'] == ['remove %s/reload_snapfleet_1' % measured]  # no driver call: the tracker is right
    assert any('COW file /.datto_1_4' in w and 'the live tracker is minor 0' in w for w in res['warnings'])
    assert (measured / 'reload_snapfleet_0').read_text() == before0
    assert (measured / 'reload_snapfleet_1').exists() is check_mode
    if not check_mode:
        assert _info(measured)['reload']['in_sync'] is True
        again = test_snapshot.run_module(dict(device='/data', state='incremental'),
                                         test_snapshot.FakeDriver([test_snapshot.S2], []), reload_dir=str(measured))
        assert again['changed'] is False and again['actions'] == []
