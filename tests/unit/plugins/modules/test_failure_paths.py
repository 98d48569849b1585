# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module fails through one path (errors.fail_module) that keeps the warnings gathered before
the failure, its hint and its details; integer options written in non-ASCII digits are refused."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


import pytest

from ansible.module_utils.common import warnings as warnings_mod

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as backup_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import tracker
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import engine_run, host_status
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout
from ansible_collections.snapfleet.dattobd.plugins.modules import backup, engine, info, snapshot, sync
from .utils import run_exiting

# module, args that pass AnsibleModule's own checks, (object, attribute) whose call fails the run
CASES = {
    'backup': (backup, {'device': '/dev/vdb', 'image': '/backup/vdb.img'}, (backup_lib, 'run_cycle')),
    'engine': (engine, {'version': '0.12.1'}, (engine_run, 'module_runner')),
    'info': (info, {}, (host_status, 'gather')),
    'snapshot': (snapshot, {'device': '/dev/vdb'}, (tracker, 'ensure')),
    'sync': (sync, {'snapshot': '1', 'cow_file': '/c', 'image': '/i'}, (sync_lib, 'run')),
}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """ansible-core keeps a module's warnings in a global: each test starts with none. Once the
    controller side of ansible-core is imported (the filter tests do), ``warn`` goes to the display
    instead: this is module code, so say so."""
    monkeypatch.setattr(warnings_mod, '_global_warnings', type(warnings_mod._global_warnings)())
    internal = getattr(__import__('ansible.module_utils', fromlist=['_internal']), '_internal', None)
    if internal is not None and hasattr(internal, 'is_controller'):
        monkeypatch.setattr(internal, 'is_controller', False)


def warning_texts(out):
    """The warnings of a module result (plain strings, or ansible-core 2.19's WarningSummary)."""
    return [w if isinstance(w, str) else w['event']['msg'] for w in out.get('warnings', [])]


def run_main(capsys, mod, args):
    return run_exiting(capsys, mod.main, args)[1]


@pytest.mark.parametrize('name', sorted(CASES))
def test_failure_keeps_earlier_warnings_hint_and_details(name, capsys, monkeypatch):
    mod, args, (obj, attr) = CASES[name]

    def boom(*a, **k):
        raise DattobdError('It broke.', hint='Fix it.', warnings=['an earlier warning'], device='/dev/vdb')
    monkeypatch.setattr(obj, attr, boom)
    out = run_main(capsys, mod, args)
    assert out['failed'] is True
    assert out['msg'] == 'It broke. Fix it.' and out['hint'] == 'Fix it.'
    assert out['device'] == '/dev/vdb'
    assert 'an earlier warning' in warning_texts(out), out


def test_info_wedged_keeps_warnings(capsys, monkeypatch):
    def wedged(*a, **k):
        raise DriverTimeout('No answer.', warnings=['seen before'])
    monkeypatch.setattr(host_status, 'gather', wedged)
    out = run_main(capsys, info, {})
    assert out['failed'] and out['wedged'] is True and out['msg'].startswith('No answer.')
    assert warning_texts(out) == ['seen before']


def test_engine_apply_failure_keeps_plan_and_warnings(capsys, monkeypatch):
    def boom(module, ctx=None):
        module.warn('planned with a warning')
        raise DattobdError('apply failed', warnings=['from the library'])
    monkeypatch.setattr(engine_run, 'module_runner', boom)
    out = run_main(capsys, engine, {'version': '0.12.1'})
    assert out['failed'] and {'planned with a warning', 'from the library'} <= set(warning_texts(out))


@pytest.mark.parametrize('name, option', [
    ('backup', 'timeout'), ('backup', 'minor'), ('engine', 'timeout'), ('info', 'timeout'),
    ('snapshot', 'minor'), ('snapshot', 'cache_size'), ('sync', 'timeout'),
])
@pytest.mark.parametrize('value', [u'\u0661', u'\uff16\uff10', '1e3'])
def test_integer_options_refuse_non_ascii_digits(name, option, value, capsys, monkeypatch):
    mod, args, (obj, attr) = CASES[name]
    called = []
    monkeypatch.setattr(obj, attr, lambda *a, **k: called.append(1))
    out = run_main(capsys, mod, dict(args, **{option: value}))
    assert out['failed'] is True and 'ASCII digits' in out['msg'] and option in out['msg']
    assert called == []


def test_engine_nested_integer_option_refuses_unicode_digits(capsys, monkeypatch):
    monkeypatch.setattr(engine_run, 'module_runner', lambda *a, **k: pytest.fail('ran'))
    out = run_main(capsys, engine, {'version': '0.12.1', 'parameters': {'max_snap_devices': u'\u0662\u0664'}})
    assert out['failed'] and 'parameters.max_snap_devices' in out['msg']
