# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""COW files left behind by a re-baseline or a destroy are removed by the next good cycle (issue 23, item 7).

The search (``Ops.leftover_cow_files``) runs on a sandbox directory standing for the volume's
filesystem: only regular files named like the collection's COW files that no live tracker, no
reload script and no backup record needs are listed. The cycle removes them after it succeeded,
reports them (``leftover_cow_files``, ``removed_cow_files``, ``actions``), and check mode lists them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import devices
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as reload_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.test_backup import (
    FakeOps, INCR, META1, P1, REC_OK, params, started)

WHY = ' (left behind by an earlier tracker of this volume)'


class Mounted(object):
    """What ``devices.resolve`` gives for the sandbox volume."""

    def __init__(self, mount_point):
        self.mount_point = mount_point


@pytest.fixture
def volume(tmp_path, monkeypatch):
    """A sandbox filesystem at ``mnt``: tracker 1 live on .datto_1_3, a reload script, a record, other files."""
    mnt = tmp_path / 'mnt'
    (mnt / 'cow').mkdir(parents=True)
    for name in ('.datto_0_4', '.datto_1_3', '.datto_0_2', '.datto_1_2', '.datto_3_9', 'cow/.datto_0_7',
                 '.datto_0_x', 'data.txt', 'kept-by-caller/.datto_0_8'):
        path = mnt / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'x' * 4096)
    (mnt / '.datto_5_5').mkdir()  # a directory: never listed
    os.symlink(str(mnt / 'data.txt'), str(mnt / '.datto_6_6'))  # a symlink: never listed
    reload_dir = tmp_path / 'dla'
    reload_dir.mkdir(mode=0o700)
    reload_lib.ensure(0, '/dev/disk/by-uuid/u1', '/.datto_0_2', 'incremental', directory=str(reload_dir))
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    (state / 'other.json').write_text(json.dumps({'pending_cow_files': [{'path': str(mnt / '.datto_1_2'),
                                                                         'seq_id': 2}]}))
    live = procinfo.ProcInfo(True, devices=[procinfo.Tracker(1, '/.datto_1_3', '/dev/vdb', 2)])
    monkeypatch.setattr(devices, 'resolve', lambda device, host=None: Mounted(str(mnt)))
    monkeypatch.setattr(procinfo, 'read', lambda timeout=10: live)
    return {'mnt': str(mnt), 'reload_dir': str(reload_dir), 'state': str(state), 'live': live}


def find(volume, keep=(), cow_dir=None, cow_name=None):
    return bk.Ops(timeout=5).leftover_cow_files('/dev/vdb', cow_name, cow_dir, list(keep), volume['state'],
                                                volume['reload_dir'])


def test_only_unused_files_of_the_collections_naming_are_listed(volume):
    mnt = volume['mnt']
    assert find(volume, keep=[mnt + '/.datto_3_9']) == [mnt + '/.datto_0_4']
    # cow_dir (under the mount point) is looked in as well
    found = find(volume, keep=[mnt + '/.datto_3_9'], cow_dir=mnt + '/cow')
    assert found == [mnt + '/.datto_0_4', mnt + '/cow/.datto_0_7']
    # another naming scheme: only its own files
    assert find(volume, cow_name='snap-{minor}-{seq}.cow') == []


def test_nothing_is_listed_when_the_driver_is_not_loaded_or_the_volume_not_mounted(volume, monkeypatch):
    monkeypatch.setattr(procinfo, 'read', lambda timeout=10: procinfo.ProcInfo(False))
    assert find(volume) == []
    monkeypatch.setattr(devices, 'resolve', lambda device, host=None: Mounted(None))
    assert find(volume) == []


def test_every_live_tracker_protects_its_file(volume, monkeypatch):
    mnt = volume['mnt']
    live = procinfo.ProcInfo(True, devices=[procinfo.Tracker(1, '/.datto_1_3', '/dev/vdb', 2),
                                            procinfo.Tracker(7, '/.datto_0_4', '/dev/vdc', 2)])
    monkeypatch.setattr(procinfo, 'read', lambda timeout=10: live)
    assert find(volume) == [mnt + '/.datto_3_9']


class SandboxOps(FakeOps):
    """The scripted host, with the real search and real unlinks on the sandbox volume."""

    def __init__(self, volume, **kw):
        super(SandboxOps, self).__init__(**kw)
        self.volume = volume

    def leftover_cow_files(self, device, cow_name, cow_dir, keep, state_dir, reload_dir=None):
        self.keep_seen = list(keep)
        return bk.Ops(timeout=5).leftover_cow_files(device, cow_name, cow_dir, keep, self.volume['state'],
                                                    self.volume['reload_dir'])

    def unlink(self, path):
        self.calls.append('unlink %s' % path)
        if path.startswith(self.volume['mnt']):
            os.unlink(path)

    def exists(self, path):
        return super(SandboxOps, self).exists(path) or (path.startswith(self.volume['mnt']) and os.path.lexists(path))


def test_a_good_cycle_removes_the_leftovers_and_reports_them(volume):
    mnt = volume['mnt']
    ops = SandboxOps(volume, meta=META1, record=REC_OK)
    result = bk.run_cycle(params(), ops=ops)
    assert result['leftover_cow_files'] == [mnt + '/.datto_0_4', mnt + '/.datto_3_9']
    assert result['removed_cow_files'] == [P1, mnt + '/.datto_0_4', mnt + '/.datto_3_9']
    assert result['actions'][-3:] == ['remove %s' % P1, 'remove %s%s' % (mnt + '/.datto_0_4', WHY),
                                      'remove %s%s' % (mnt + '/.datto_3_9', WHY)]
    assert started(ops) == INCR + ['unlink %s/.datto_0_4' % mnt, 'unlink %s/.datto_3_9' % mnt]
    assert sorted(os.listdir(mnt)) == ['.datto_0_2', '.datto_0_x', '.datto_1_2', '.datto_1_3', '.datto_5_5',
                                       '.datto_6_6', 'cow', 'data.txt', 'kept-by-caller']
    assert P1 in ops.keep_seen  # the consumed COW file is never a leftover
    # the next cycle finds nothing more
    ops = SandboxOps(volume, meta=META1, record=REC_OK)
    assert bk.run_cycle(params(), ops=ops)['leftover_cow_files'] == []


def test_check_mode_lists_the_leftovers_without_removing_them(volume):
    mnt = volume['mnt']
    ops = SandboxOps(volume, meta=META1, record=REC_OK)
    result = bk.run_cycle(params(), ops=ops, check_mode=True)
    assert result['leftover_cow_files'] == [mnt + '/.datto_0_4', mnt + '/.datto_3_9']
    assert result['removed_cow_files'] == [P1, mnt + '/.datto_0_4', mnt + '/.datto_3_9']
    assert 'remove %s%s' % (mnt + '/.datto_0_4', WHY) in result['actions']
    assert os.path.exists(mnt + '/.datto_0_4') and not any(c.startswith('unlink') for c in ops.calls)


def test_a_failed_cycle_removes_no_leftover(volume):
    ops = SandboxOps(volume, meta=META1, record=REC_OK, fail={'sync': DattobdError('EIO')})
    with pytest.raises(bk.BackupError):
        bk.run_cycle(params(), ops=ops)
    assert os.path.exists(volume['mnt'] + '/.datto_0_4')


def test_a_leftover_that_cannot_be_removed_is_a_warning():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'unlink': OSError(1, 'Operation not permitted')})
    ops.leftovers = ['/data/.datto_0_4']
    ops.exists = lambda path: True
    result = bk.run_cycle(params(), ops=ops)
    assert result['image_state'] == 'complete' and result['leftover_cow_files'] == ['/data/.datto_0_4']
    assert any('Cannot remove' in w for w in result['warnings'])


def test_a_search_that_fails_is_a_warning():
    ops = FakeOps(meta=META1, record=REC_OK, fail={'leftover_cow_files': DattobdError('device gone')})
    result = bk.run_cycle(params(), ops=ops)
    assert result['image_state'] == 'complete' and result['leftover_cow_files'] == []
    assert any('were not looked for: device gone' in w for w in result['warnings'])
