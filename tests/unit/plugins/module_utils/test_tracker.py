# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""tracker.ensure as a library call (the contract the backup module uses)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo, tracker
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from .fakehost import FakeHost
from ...conftest import GOLDEN


def sample(name):
    with open(os.path.join(GOLDEN, 'datto-info', 'datto-info.%s.json' % name)) as f:
        return f.read()


class FakeReload(object):
    DEFAULT_DIR = '/etc/datto/dla'

    def __init__(self, scans=()):
        self.calls = []
        self.scans = list(scans)

    def ensure(self, minor, block_device, cow_relative, mode, cache_size=None, directory=None, dbdctl=None,
               check_mode=False):
        self.calls.append(('ensure', minor, block_device, cow_relative, mode, cache_size, directory, dbdctl,
                           check_mode))
        path = '%s/reload_snapfleet_%d' % (directory, minor)
        return dict(changed=True, path=path, before=None, after='x', actions=['write %s' % path],
                    warnings=['w'], diff=dict(before='', after='x'))

    def remove(self, minor, directory=None, check_mode=False):
        self.calls.append(('remove', minor, directory, check_mode))
        path = '%s/reload_snapfleet_%d' % (directory, minor)
        return dict(changed=True, path=path, before='x', actions=['remove %s' % path])

    def scan(self, directory):
        return list(self.scans)


def ctx(procs, results=(), version='0.12.1', reload_module=None, max_devices=24, host=None):
    procs = list(procs)
    results = list(results)
    argvs = []

    def read(timeout):
        text = procs[0] if len(procs) == 1 else procs.pop(0)
        return procinfo.parse(text) if text is not None else procinfo.ProcInfo(False)

    def run(argv, timeout=None):
        argvs.append(argv)
        return results.pop(0)

    class W(object):
        def start(self):
            pass

        def collect(self):
            return []

    c = tracker.Context(host=host or FakeHost(), runner=run, watcher_factory=W, read_procinfo=read,
                        max_snap_devices=max_devices, driver_version=version,
                        reload_module=reload_module if reload_module is not None else FakeReload(),
                        dbdctl_path='/usr/bin/dbdctl')
    c.argvs = argvs
    return c


def test_contract_keys_and_reload_calls():
    rl = FakeReload()
    c = ctx([sample('empty'), sample('state-3').replace('/datto-relative.cow', '/.datto_0_1')], [(0, '', '')],
            reload_module=rl)
    res = tracker.ensure(c, '/data', 'snapshot')
    for key in ('changed', 'actions', 'before', 'after', 'tracker', 'previous_cow_file', 'rebaseline_required',
                'diff'):
        assert key in res
    assert res['actions'] == ['/usr/bin/dbdctl setup-snapshot /dev/vdb /data/.datto_0_1 0',
                              'write /etc/datto/dla/reload_snapfleet_0']
    assert rl.calls == [('ensure', 0, '/dev/disk/by-uuid/0b6c2f3e-5a1d-4c55-b1e2-a0f4c9d8e7b6', '/.datto_0_1',
                         'snapshot', None, '/etc/datto/dla', '/usr/bin/dbdctl', False)]
    assert res['tracker']['state'] == 3
    assert res['warnings'] == ['w']


def test_absent_removes_scripts_of_the_device():
    uuid_path = '/dev/disk/by-uuid/0b6c2f3e-5a1d-4c55-b1e2-a0f4c9d8e7b6'
    rl = FakeReload(scans=[dict(ours=True, minor=7, block_device=uuid_path),
                           dict(ours=True, minor=8, block_device='/dev/vda1'),
                           dict(ours=False, minor=9, block_device='/dev/vdb')])
    c = ctx([sample('empty')], reload_module=rl)
    res = tracker.ensure(c, '/data', 'absent')
    assert rl.calls == [('remove', 7, '/etc/datto/dla', False)]
    assert res['changed'] is True
    assert res['actions'] == ['remove /etc/datto/dla/reload_snapfleet_7']


def test_persist_false_touches_no_script():
    rl = FakeReload()
    c = ctx([sample('state-2'), sample('state-3')], [(0, '', '')], reload_module=rl)
    res = tracker.ensure(c, '/data', 'snapshot', persist=False)
    assert rl.calls == []
    assert res['previous_cow_file'] == '/data/.datto0'


def test_persist_needs_reload_library():
    c = ctx([sample('empty')])
    c.reload = None
    with pytest.raises(DattobdError, match='reload library'):
        tracker.ensure(c, '/data', 'snapshot')
    assert tracker.ensure(c, '/data', 'absent', persist=False)['changed'] is False


def test_auto_expand_allowed_on_fixed_driver():
    c = ctx([sample('empty'), sample('state-3')], [(0, '', ''), (0, '', '')], version='0.13.0')
    res = tracker.ensure(c, '/data', 'snapshot', auto_expand=dict(step_size=512, reserved_space=1024),
                         persist=False)
    assert res['actions'] == ['/usr/bin/dbdctl setup-snapshot /dev/vdb /data/.datto_0_1 0',
                              '/usr/bin/dbdctl reconfigure-auto-expand -r 1024 512 0']
    # already configured: nothing to do
    text = sample('state-3').replace('"state": 3', '"auto_expand": {\n\t\t\t\t"step_size_mib": 512,\n'
                                     '\t\t\t\t"reserved_space_mib": 1024\n\t\t\t},\n\t\t\t"state": 3')
    c = ctx([text], version='0.13.0')
    res = tracker.ensure(c, '/data', 'snapshot', auto_expand=dict(step_size=512, reserved_space=1024),
                         persist=False)
    assert res['actions'] == [] and res['changed'] is False


def test_several_trackers_on_one_device():
    text = sample('state-3').replace('\t\t}\n\t]', '\t\t},\n\t\t{\n\t\t\t"minor": 4,\n\t\t\t"cow_file": "/.x",\n'
                                     '\t\t\t"block_device": "/dev/vdb",\n\t\t\t"max_cache": 1,\n'
                                     '\t\t\t"state": 5\n\t\t}\n\t]')
    with pytest.raises(DattobdError, match='several minors'):
        tracker.ensure(ctx([text]), '/data', 'snapshot')


def test_all_minors_used():
    text = sample('state-3').replace('"block_device": "/dev/vdb"', '"block_device": "/dev/vda1"')
    with pytest.raises(DattobdError, match='All 1 dattobd minors'):
        tracker.ensure(ctx([text], max_devices=1), '/data', 'snapshot')


@pytest.mark.parametrize('kwargs, message', [
    (dict(state='frozen'), 'state must be'),
    (dict(recover='pray'), 'recover must be'),
    (dict(minor=True), 'minor must be an integer'),
    (dict(minor=300), 'between'),
    (dict(timeout=0), 'timeout'),
    (dict(auto_expand=dict(step_size=0)), 'step_size'),
    (dict(cow_dir='relative'), 'cow_dir must be an absolute path'),
])
def test_input_validation(kwargs, message):
    args = dict(state='snapshot')
    args.update(kwargs)
    with pytest.raises(DattobdError, match=message):
        tracker.ensure(ctx([sample('empty')]), '/data', **args)


def test_context_defaults(monkeypatch):
    c = tracker.Context()
    monkeypatch.setattr(tracker._procinfo, 'read', lambda timeout: procinfo.parse(sample('state-2')))
    assert c.procinfo(5).devices[0].state == 2
    monkeypatch.setattr(tracker._procinfo, 'max_snap_devices', lambda: 32)
    assert c.max_snap_devices() == 32
    monkeypatch.setattr(tracker._dbdctl, 'read_driver_version', lambda: None)
    assert c.driver_version(procinfo.parse(sample('state-2'))) == '0.12.1'
    monkeypatch.setattr(tracker._dbdctl, 'find', lambda module, path: path or '/found/dbdctl')
    assert c.find_dbdctl() == '/found/dbdctl'
    assert c.find_dbdctl('/x/dbdctl') == '/x/dbdctl'
    assert tracker.Context(dbdctl_path='/y').find_dbdctl() == '/y'


def test_absent_with_driver_unloaded_removes_the_boot_script():
    rl = FakeReload(scans=[dict(ours=True, minor=2, block_device='/dev/vdb')])
    res = tracker.ensure(ctx([None], reload_module=rl), '/dev/vdb', 'absent')
    assert res['actions'] == ['remove /etc/datto/dla/reload_snapfleet_2']
    assert res['changed'] is True
    # an unknown device: only the given minor
    rl = FakeReload()
    res = tracker.ensure(ctx([None], reload_module=rl), '/dev/gone', 'absent', minor=4, check_mode=True)
    assert rl.calls == [('remove', 4, '/etc/datto/dla', True)]


@pytest.mark.parametrize('param, expect_reconfigure', [
    ('314572800\n', False),   # parameter equals the tracker's stored cache: steady
    ('104857600\n', True),    # operator changed cow_max_memory_default: cache_size 0 is drift
    (None, False),            # parameter unreadable: the built-in 300 MiB default
    ('garbage\n', False),
])
def test_cache_size_zero_compares_with_the_module_parameter(param, expect_reconfigure):
    files = {tracker.DEFAULT_CACHE_PARAM: param} if param is not None else {}
    proc = sample('state-3').replace('/datto-relative.cow', '/.datto_0_1')
    c = ctx([proc], [(0, '', '')] * 3, host=FakeHost(files=files))
    res = tracker.ensure(c, '/data', 'snapshot', cache_size=0)
    reconfigured = any('reconfigure' in argv for argv in c.argvs)
    assert reconfigured == expect_reconfigure
    assert len(c.argvs) == (1 if expect_reconfigure else 0)
    assert res['minor'] == 0


# --- issue 23: one reload script per device, minors derived from the live state ------------------

UUID_PATH = '/dev/disk/by-uuid/0b6c2f3e-5a1d-4c55-b1e2-a0f4c9d8e7b6'   # /dev/vdb in FakeHost


def _ours(minor, bdev=UUID_PATH, cow='/.datto0'):
    return dict(ours=True, minor=minor, block_device=bdev, cow_file=cow, path='/etc/datto/dla/reload_snapfleet_%d' % minor)


def test_second_script_of_the_device_is_removed():
    """The measured state: the tracker is minor 0, reload_snapfleet_1 still names its device with an old COW file."""
    rl = FakeReload(scans=[_ours(0), _ours(1, cow='/.datto_1_4'), _ours(2, bdev='/dev/vda1'),
                           dict(_ours(3), ours=False, path='/etc/datto/dla/reload_agent')])
    res = tracker.ensure(ctx([sample('state-2')], reload_module=rl), '/data', 'incremental')
    assert [c[:2] for c in rl.calls] == [('ensure', 0), ('remove', 1)]
    assert res['changed'] is True and 'remove /etc/datto/dla/reload_snapfleet_1' in res['actions']
    assert any('Removed /etc/datto/dla/reload_snapfleet_1' in w and 'COW file /.datto_1_4' in w for w in res['warnings'])
    assert any('reload_agent also reloads' in w and 'Remove it by hand' in w for w in res['warnings'])
    # check mode plans the same removal
    rl = FakeReload(scans=[_ours(0), _ours(1, cow='/.datto_1_4')])
    tracker.ensure(ctx([sample('state-2')], reload_module=rl), '/data', 'incremental', check_mode=True)
    assert rl.calls[-1] == ('remove', 1, '/etc/datto/dla', True)


@pytest.mark.parametrize('scans, expected', [
    ([], 0),                                               # nothing claims a minor: the lowest free one
    ([_ours(0, bdev='/dev/vda1'), _ours(1)], 1),           # the device's own script: its old minor
    ([_ours(0, bdev='/dev/vda1')], 1),                     # minor 0 is another volume's: not taken
    ([_ours(m, bdev='/dev/vda1') for m in range(24)], 0),  # every free minor claimed: the lowest free one
])
def test_new_tracker_minor_derived_from_the_reload_scripts(scans, expected):
    """After a reboot lost every tracker, the second volume took minor 0 (the first volume's) and overwrote
    its reload script; the minor now comes from the live state, reload scripts included."""
    rl = FakeReload(scans=scans)
    c = ctx([sample('empty'), sample('state-3').replace('/datto-relative.cow', '/.datto_%d_1' % expected)
             .replace('"minor": 0', '"minor": %d' % expected)], [(0, '', '')], reload_module=rl)
    res = tracker.ensure(c, '/data', 'snapshot')
    assert res['minor'] == expected
    assert res['actions'][0] == '/usr/bin/dbdctl setup-snapshot /dev/vdb /data/.datto_%d_1 %d' % (expected, expected)
    assert rl.calls[0][:2] == ('ensure', expected)
