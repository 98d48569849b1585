# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""read_depth of the sync and backup modules: validated (ASCII digits, 1..64) before anything runs, passed on."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


import pytest


from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as im
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_lib
from ansible_collections.snapfleet.dattobd.plugins.modules import backup

from ..module_utils.test_backup import FakeOps, META1, REC_OK
from . import test_sync as sync_tests
from .utils import run_exiting

run_module = sync_tests.run_module
world = sync_tests.world  # the fixture

BAD = [0, 65, '0', '65', u'\u0663', u'\uff18', '1_6', '16.0', 'deep', True, [4]]


@pytest.mark.parametrize('depth', BAD)
def test_sync_module_refuses_a_bad_read_depth_and_writes_nothing(world, capsys, depth):
    before = open(world['image'], 'rb').read(), im.load(world['image'])
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image'], read_depth=depth))
    assert res['failed'] and 'exception' not in res, res
    assert 'read_depth' in res['msg'] and ('ASCII digits' in res['msg'] or 'convert to int' in res['msg']), res['msg']
    assert (open(world['image'], 'rb').read(), im.load(world['image'])) == before


@pytest.mark.parametrize('depth', [1, '1', 8, '64'])
def test_sync_module_passes_read_depth_on(world, capsys, monkeypatch, depth):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as cp
    seen = []
    real = cp.copy_runs

    def spy(*a, **kw):
        seen.append(kw['read_depth'])
        return real(*a, **kw)
    monkeypatch.setattr(cp, 'copy_runs', spy)
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image'], read_depth=depth))
    assert not res.get('failed'), res
    assert seen == [int(depth)]


def _backup(capsys, args, ops_factory=None):
    return run_exiting(capsys, backup.main, args, ops_factory=ops_factory)


@pytest.mark.parametrize('depth', BAD)
def test_backup_module_refuses_a_bad_read_depth_before_the_cycle(capsys, depth):
    ops = FakeOps(meta=META1, record=REC_OK)
    code, out = _backup(capsys, {'device': '/data', 'image': '/backup/data.img', 'state_dir': '/state',
                                 'read_depth': depth}, ops_factory=lambda module: ops)
    assert code == 1 and out['failed'] and 'read_depth' in out['msg'] and 'exception' not in out, out
    assert ops.calls == []


def test_backup_module_gives_read_depth_to_its_ops(capsys, monkeypatch):
    seen = {}

    def fake_run_cycle(params, ops=None, check_mode=False, handle_signals=False):
        seen['depth'] = ops.read_depth
        return dict(changed=False, mode='incremental', actions=[], warnings=[])
    monkeypatch.setattr(backup.backup_lib, 'run_cycle', fake_run_cycle)
    code, out = _backup(capsys, {'device': '/data', 'image': '/backup/data.img', 'state_dir': '/state',
                                 'read_depth': '4'})
    assert code == 0 and seen['depth'] == 4
    _backup(capsys, {'device': '/data', 'image': '/backup/data.img', 'state_dir': '/state'})
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as cp
    assert seen['depth'] == cp.DEFAULT_READ_DEPTH  # the module's default is the engine's


def test_backup_ops_pass_read_depth_to_sync(monkeypatch, tmp_path):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as backup_lib
    seen = []
    monkeypatch.setattr(sync_lib, 'run', lambda *a, **kw: seen.append(('sync', kw['read_depth'])))
    ops = backup_lib.Ops(read_depth=3)
    ops.sync(1, '/c', '/i', 'none')
    assert seen == [('sync', 3)]
