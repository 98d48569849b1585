# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup module: arguments -> library call -> exit_json / fail_json (never a traceback)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import metrics
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.plugins.modules import backup

from ..module_utils.test_backup import FakeOps, META1, REC_OK, P1
from .utils import run_exiting


def run_module(capsys, args, ops):
    return run_exiting(capsys, backup.main, args, ops_factory=lambda module: ops)


BASE = {'device': '/data', 'image': '/backup/data.img', 'state_dir': '/state'}


def test_incremental_success(capsys):
    code, out = run_module(capsys, dict(BASE, pre_hooks=[{'argv': ['/bin/freeze', 'pre1']}]),
                           FakeOps(meta=META1, record=REC_OK))
    assert code == 0
    assert out['changed'] is True
    assert out['mode'] == 'incremental'
    assert out['next_run'] == 'incremental'
    assert out['blocks'] == 177
    assert out['hooks'][0]['argv'] == ['/bin/freeze', 'pre1']
    assert out['hooks'][0]['stdout'] == 'out-pre1'
    assert out['removed_cow_files'] == [P1]
    assert 'diff' not in out


def test_failure_reports_state(capsys):
    ops = FakeOps(meta=META1, record=REC_OK, fail={'sync': DattobdError('EIO reading /dev/datto0')})
    code, out = run_module(capsys, dict(BASE), ops)
    assert code == 1
    assert out['failed'] is True
    assert out['step'] == 'copy'
    assert out['image_state'] == 'untouched'
    assert out['next_run'] == 'resume'
    assert 'EIO reading /dev/datto0' in out['msg']
    assert 'ensure incremental' in ops.calls


def test_check_mode_plan(capsys):
    ops = FakeOps(meta=META1, record=REC_OK)
    code, out = run_module(capsys, dict(BASE, _ansible_check_mode=True, _ansible_diff=True), ops)
    assert code == 0
    assert out['mode'] == 'incremental'
    assert ops.calls == ['ensure snapshot (check)', 'check_destination full=False']  # no lock, no write
    assert out['diff'] == {'before': {}, 'after': {}}
    assert ops.saved == []


def test_warnings_surface(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(backup.AnsibleModule, 'warn', lambda self, msg: seen.append(msg))
    ops = FakeOps(meta=META1, record=REC_OK, fail={'unlink': OSError(1, 'Operation not permitted')})
    ops.exists = lambda path: True
    code, out = run_module(capsys, dict(BASE), ops)
    assert code == 0
    assert any('Cannot remove the old COW file /data/.datto_0_1' in w for w in seen)


def test_unexpected_oserror_is_a_message(capsys):
    ops = FakeOps(meta=META1, record=REC_OK)

    def boom(*a):
        raise OSError(13, 'Permission denied')
    ops.find_record = boom
    code, out = run_module(capsys, dict(BASE), ops)
    assert code == 1
    assert 'Backup cycle failed unexpectedly' in out['msg']


def test_hook_spec_validated(capsys):
    with patch_module_args(dict(BASE, pre_hooks=[{'timeout': 5}])):
        with pytest.raises(SystemExit):
            backup.main(ops_factory=lambda module: FakeOps(meta=META1))
    out = json.loads(capsys.readouterr().out)
    assert out['failed'] is True
    assert 'argv' in out['msg']


def test_default_ops_built(capsys, monkeypatch):
    seen = {}

    def fake_run_cycle(params, ops=None, check_mode=False, handle_signals=False):
        seen['ops'] = ops
        seen['signals'] = handle_signals
        return dict(changed=False, mode='incremental', actions=[], warnings=[])
    monkeypatch.setattr(backup.backup_lib, 'run_cycle', fake_run_cycle)
    with patch_module_args(dict(BASE, timeout=7)):
        with pytest.raises(SystemExit):
            backup.main()
    capsys.readouterr()
    assert isinstance(seen['ops'], backup.backup_lib.Ops)
    assert seen['ops'].timeout == 7
    assert seen['signals'] is True  # SIGTERM during the copy goes back to incremental


def test_metrics_file_written_and_reported(capsys, tmp_path):
    ops = FakeOps(meta=META1, record=REC_OK)
    code, out = run_module(capsys, dict(BASE, metrics_dir=str(tmp_path)), ops)
    assert code == 0
    assert out['metrics_file'] == str(tmp_path / metrics.file_name('/backup/data.img'))
    with open(out['metrics_file']) as handle:
        text = handle.read()
    assert 'snapfleet_dattobd_last_run_success{volume="/data",image="/backup/data.img",minor="0"} 1\n' in text


def test_metrics_check_mode_names_the_file_writes_nothing(capsys, tmp_path):
    ops = FakeOps(meta=META1, record=REC_OK)
    code, out = run_module(capsys, dict(BASE, metrics_dir=str(tmp_path), _ansible_check_mode=True), ops)
    assert code == 0
    assert out['metrics_file'] == str(tmp_path / metrics.file_name('/backup/data.img'))
    assert list(tmp_path.iterdir()) == []


def test_missing_metrics_dir_refused_before_anything(capsys, tmp_path):
    ops = FakeOps(meta=META1, record=REC_OK)
    code, out = run_module(capsys, dict(BASE, metrics_dir=str(tmp_path / 'absent'),
                                        pre_hooks=[{'argv': ['/bin/freeze', 'pre1']}]), ops)
    assert code == 1
    assert out['step'] == 'parameters'
    assert 'The metrics directory %s does not exist' % (tmp_path / 'absent') in out['msg']
    assert 'prometheus-node-exporter' in out['hint']
    assert ops.calls == [] and ops.saved == []
    assert list(tmp_path.iterdir()) == []
