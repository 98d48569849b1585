# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup module, the host form as a whole (issue 18: one SSH round trip a host): ``create_dirs`` makes the
image directories, ``runner`` installs the host-local runner with the call's own volumes and options, ``status``
returns what the fleet report reads, all validated before any volume acts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import sys

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_record, hostapp, hostrun
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DriverTimeout
from ansible_collections.snapfleet.dattobd.plugins.modules import backup

from .test_backup_volumes import TOUCH, VolumeOps
from .test_info import BINS, RUNS, FakeHost, sample
from .utils import run_exiting


def call(capsys, args, ops, status_host=None, check=False, diff=False):
    """Run the module with one VolumeOps per volume (a list, handed out in order)."""
    given = []

    def factory(module):
        given.append(ops.pop(0))
        return given[-1]
    args = dict(args)
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    code, out = run_exiting(capsys, backup.main, args, ops_factory=factory, status_host=status_host)
    return code, out, given


def volumes(where, n=2):
    return [{'device': '/dev/vd%s' % 'bc'[i], 'image': str(where / ('dir%d' % i) / ('vol%d.img' % i)),
             'name': 'vol%d' % i} for i in range(n)]


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


@pytest.fixture
def runner_at(tmp_path):
    return dict(path=str(tmp_path / 'sbin' / 'snapfleet-dattobd'), config=str(tmp_path / 'etc' / 'backup.json'),
                python=sys.executable)


# --- create_dirs ---------------------------------------------------------------------------------

def test_create_dirs_makes_each_missing_image_directory_root_only_before_the_cycles(capsys, tmp_path):
    vols = volumes(tmp_path / 'backup')
    ops = [VolumeOps(v['image']) for v in vols]
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'create_dirs': True}, ops)
    assert code == 0, out
    assert out['created_dirs'] == [str(tmp_path / 'backup' / 'dir0'), str(tmp_path / 'backup' / 'dir1')]
    assert all(mode(d) == 0o700 for d in out['created_dirs'])
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'create_dirs': True},
                            [VolumeOps(v['image']) for v in vols])
    assert code == 0 and out['created_dirs'] == [], out  # there: nothing to do


def test_create_dirs_makes_an_existing_open_directory_root_only(capsys, tmp_path):
    """As the role's file task did (mode 0700): a backup disk mounted at /backup with mode 0755 is made 0700,
    else every volume would be refused at its destination check (the fleet scenario's guests)."""
    vols = volumes(tmp_path / 'backup', 1)
    parent = os.path.dirname(vols[0]['image'])
    os.makedirs(parent)
    os.chmod(parent, 0o755)
    args = {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'create_dirs': True}
    code, out, given = call(capsys, args, [VolumeOps(vols[0]['image'])], check=True)
    assert out['secured_dirs'] == [parent] and mode(parent) == 0o755, out  # check mode: listed only
    code, out, given = call(capsys, args, [VolumeOps(vols[0]['image'])])
    assert code == 0 and out['secured_dirs'] == [parent] and out['created_dirs'] == [], out
    assert mode(parent) == 0o700 and out['changed'] is True
    code, out, given = call(capsys, args, [VolumeOps(vols[0]['image'])])
    assert out['secured_dirs'] == [], out  # root-only now: nothing to do
    os.chmod(parent, 0o755)
    code, out, given = call(capsys, dict(args, create_dirs=False), [VolumeOps(vols[0]['image'])])
    assert out['secured_dirs'] == [] and mode(parent) == 0o755, out  # without create_dirs: left alone


def test_create_dirs_in_check_mode_lists_them_and_plans_the_volumes(capsys, tmp_path):
    vols = volumes(tmp_path / 'backup')
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'create_dirs': True},
                            [VolumeOps(v['image']) for v in vols], check=True)
    assert code == 0, out
    assert out['created_dirs'] == [str(tmp_path / 'backup' / 'dir0'), str(tmp_path / 'backup' / 'dir1')]
    assert out['changed'] is True and not (tmp_path / 'backup').exists()
    assert [v['failed'] for v in out['volumes']] == [False, False], out


def test_without_create_dirs_a_missing_directory_is_left_alone(capsys, tmp_path):
    vols = volumes(tmp_path / 'backup', 1)
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state')},
                            [VolumeOps(vols[0]['image'])])
    assert out['created_dirs'] == [] and not (tmp_path / 'backup').exists(), out


def test_a_directory_that_cannot_be_made_fails_the_call_before_any_volume(capsys, tmp_path):
    (tmp_path / 'backup').write_text('a file where the directory should be\n')
    canary = tmp_path / 'canary'
    vols = volumes(tmp_path / 'backup', 1)
    ops = [VolumeOps(vols[0]['image'])]
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'create_dirs': True,
                                     'pre_hooks': [{'argv': [TOUCH, str(canary)]}]}, ops)
    assert code == 1 and out['failed'] is True, out
    assert out['msg'].startswith('The image directory %s could not be created' % os.path.dirname(vols[0]['image']))
    assert out['step'] == 'destination' and out['image_state'] == 'untouched'
    assert given == [] and not canary.exists()


@pytest.mark.parametrize('option, value', [('create_dirs', True), ('status', True), ('runner', {})])
def test_the_host_options_need_volumes(capsys, tmp_path, option, value):
    ops = [VolumeOps('/backup/data.img')]
    code, out, given = call(capsys, {'device': '/data', 'image': '/backup/data.img', 'state_dir': '/state',
                                     option: value}, ops)
    assert code == 1 and out['msg'] == '%s: only with volumes (a host\'s whole backup in one call).' % option, out
    assert out['step'] == 'parameters' and given == []


# --- runner --------------------------------------------------------------------------------------

def test_the_runner_is_installed_with_the_calls_own_volumes_and_options(capsys, tmp_path, runner_at):
    vols = volumes(tmp_path)
    vols[1].update(full=True, verify='full')
    os.makedirs(str(tmp_path / 'dir0'))
    os.makedirs(str(tmp_path / 'dir1'))
    args = {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'verify': 'changed', 'retention': 3,
            'runner': runner_at}
    code, out, given = call(capsys, args, [VolumeOps(v['image']) for v in vols], diff=True)
    assert code == 0, out
    assert out['runner']['changed'] is True and out['runner']['volumes'] == ['vol0', 'vol1']
    with open(runner_at['config']) as f:
        config = json.load(f)
    assert [v['image'] for v in config['volumes']] == [v['image'] for v in vols]
    assert 'full' not in config['volumes'][1] and config['volumes'][1]['verify'] == 'full'  # each run sets full
    assert config['defaults']['verify'] == 'changed' and config['defaults']['retention'] == 3
    assert config['defaults']['state_dir'] == str(tmp_path / 'state')
    # the module's own defaults are left out (the runner applies them): the runner module writes the same file
    assert 'verify_sample_min' not in config['defaults'] and 'full_verify_every_days' not in config['defaults']
    assert 'check_free_space' not in config['defaults'] and 'timeout' not in config['defaults']
    assert not set(config['defaults']) & {'volumes', 'status', 'runner', 'full', 'run_boot_id', 'device', 'image'}
    assert mode(runner_at['config']) == 0o600 and mode(runner_at['path']) == 0o755
    with open(runner_at['path'], 'rb') as f:
        assert f.read() == hostapp.build(sys.executable)
    assert [d['before_header'] for d in out['diff']] == [runner_at['path'], runner_at['config']]
    # the same call again: the runner is as wanted
    code, out, given = call(capsys, args, [VolumeOps(v['image']) for v in vols])
    assert code == 0 and out['runner']['changed'] is False and out['runner']['actions'] == [], out


def test_check_mode_plans_the_runner_and_writes_nothing(capsys, tmp_path, runner_at):
    vols = volumes(tmp_path, 1)
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'runner': runner_at},
                            [VolumeOps(vols[0]['image'])], check=True)
    assert code == 0, out
    assert [a.split(' ')[0] for a in out['runner']['actions']] == ['create', 'write', 'create', 'write']
    assert not (tmp_path / 'sbin').exists() and not (tmp_path / 'etc').exists()


def test_a_volume_the_runner_could_not_run_refuses_the_call_before_anything(capsys, tmp_path, runner_at):
    """Two volumes of one name: the module's cycles could run them, the runner's configuration could not."""
    canary = tmp_path / 'canary'
    vols = volumes(tmp_path)
    vols[1]['name'] = vols[0]['name']
    ops = [VolumeOps(v['image']) for v in vols]
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'runner': runner_at,
                                     'pre_hooks': [{'argv': [TOUCH, str(canary)]}], 'create_dirs': True}, ops)
    assert code == 1 and out['msg'].startswith('The runner configuration is invalid: '), out
    assert out['step'] == 'parameters' and out['image_state'] == 'untouched'
    assert given == [] and not canary.exists() and not (tmp_path / 'dir0').exists()
    assert not (tmp_path / 'sbin').exists() and not (tmp_path / 'etc').exists()


def test_a_runner_that_cannot_be_written_fails_the_call_after_the_backups(capsys, tmp_path, runner_at):
    (tmp_path / 'sbin').write_text('a file where the runner directory should be\n')
    vols = volumes(tmp_path, 1)
    os.makedirs(str(tmp_path / 'dir0'))
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'runner': runner_at},
                            [VolumeOps(vols[0]['image'])])
    assert code == 1 and out['failed'] is True, out
    assert out['volumes'][0]['failed'] is False and out['volumes'][0]['mode'] == 'incremental'  # the backup stands
    assert out['runner']['failed'] is True and 'The runner was not installed: ' in out['msg'], out
    assert out['msg'].startswith('1 of 1 volume(s) backed up.'), out


def test_runner_absent_removes_it(capsys, tmp_path, runner_at):
    vols = volumes(tmp_path, 1)
    os.makedirs(str(tmp_path / 'dir0'))
    args = {'volumes': vols, 'state_dir': str(tmp_path / 'state'), 'runner': runner_at}
    call(capsys, args, [VolumeOps(vols[0]['image'])])
    assert os.path.exists(runner_at['path'])
    code, out, given = call(capsys, dict(args, runner=dict(runner_at, state='absent')), [VolumeOps(vols[0]['image'])])
    assert code == 0 and out['runner']['changed'] is True, out
    assert not os.path.exists(runner_at['path']) and not os.path.exists(runner_at['config'])


def test_runner_params_leave_out_what_each_run_sets():
    params = dict((name, spec.get('default')) for name, spec in hostrun.argument_spec().items())
    params.update(volumes=[{'device': '/d', 'image': '/b/d.img', 'full': True, 'verify': None}],
                  runner={'state': 'present', 'path': '/p', 'config': '/c', 'python': None}, full=True,
                  run_boot_id='abc', ping_url='https://hc.example/x', status=True)
    p = hostrun.runner_params(params)
    assert p['volumes'] == [{'device': '/d', 'image': '/b/d.img'}]
    assert p['ping_url'] == 'https://hc.example/x' and p['path'] == '/p'
    assert not set(p['defaults']) & set(hostrun.NOT_CONFIGURED)


# --- status --------------------------------------------------------------------------------------

def test_status_returns_the_driver_and_every_record_read_after_the_cycles(capsys, tmp_path):
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    os.chmod(str(state), 0o700)
    (state / 'backup_x.img.json').write_text(json.dumps({'image': '/b/x.img', 'last_result': 'ok'}))
    (state / 'junk.json').write_text('[1, 2]')  # not a record: left out
    vols = volumes(tmp_path, 1)
    os.makedirs(str(tmp_path / 'dir0'))
    host = FakeHost(None, proc=sample('state-3'), bins=BINS, runs=RUNS)
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(state), 'status': True},
                            [VolumeOps(vols[0]['image'])], status_host=host)
    assert code == 0, out
    st = out['status']
    assert st['failed'] is False and st['wedged'] is False and st['msg'] == ''
    assert st['info']['loaded'] is True and [t['state'] for t in st['info']['trackers']] == [3]
    assert st['info']['tools']['version'] == '0.12.1-1' and 'summary' in st['info']
    assert {'image': '/b/x.img', 'last_result': 'ok'} in st['records']
    assert all(isinstance(r, dict) for r in st['records'])
    assert [r['image'] for r in st['records'] if r.get('image') == '/b/x.img'] == ['/b/x.img']


def test_status_of_a_wedged_driver_still_holds_the_records(capsys, tmp_path, monkeypatch):
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    os.chmod(str(state), 0o700)
    (state / 'backup_x.img.json').write_text(json.dumps({'image': '/b/x.img', 'last_result': 'ok'}))
    vols = volumes(tmp_path, 1)
    os.makedirs(str(tmp_path / 'dir0'))

    def wedged(*a, **k):
        raise DriverTimeout('reading /proc/datto-info did not finish within 60 s.')
    monkeypatch.setattr(hostrun.host_status, 'gather', wedged)
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(state), 'status': True},
                            [VolumeOps(vols[0]['image'])], status_host=FakeHost(None))
    st = out['status']
    assert (st['failed'], st['wedged'], st['info']) == (True, True, None), st
    assert 'did not finish within 60 s' in st['msg']
    assert st['records'] == [{'image': '/b/x.img', 'last_result': 'ok'}]


def test_a_refused_call_still_returns_the_status_and_writes_nothing(capsys, tmp_path):
    """The fleet report of a host whose call was refused still shows its volumes from their records."""
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    os.chmod(str(state), 0o700)
    (state / 'backup_x.img.json').write_text(json.dumps({'image': '/b/x.img', 'last_result': 'ok'}))
    before = sorted(os.listdir(str(tmp_path)))
    vols = volumes(tmp_path, 1)
    vols[0]['verify_sample_budget'] = -1
    code, out, given = call(capsys, {'volumes': vols, 'state_dir': str(state), 'status': True, 'create_dirs': True},
                            [VolumeOps(vols[0]['image'])], status_host=FakeHost(None, proc=sample('empty')))
    assert code == 1 and out['step'] == 'parameters', out
    assert out['status']['records'] == [{'image': '/b/x.img', 'last_result': 'ok'}]
    assert out['status']['info']['loaded'] is True and out['status']['failed'] is False
    assert given == [] and sorted(os.listdir(str(tmp_path))) == before  # no image directory made


def test_records_are_read_from_the_state_dir_only():
    assert backup_record.read_records('/nonexistent-snapfleet-state') == []
