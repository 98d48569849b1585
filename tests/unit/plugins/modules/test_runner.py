# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""runner module: writes snapfleet-dattobd and its configuration idempotently (content compared), check mode
and diff, refuses a bad volume before writing anything, removes both."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import sys

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hostapp
from ansible_collections.snapfleet.dattobd.plugins.modules import runner

from .utils import run_exiting

VOLUME = {'device': '/data', 'image': '/backup/data.img'}


@pytest.fixture
def where(tmp_path):
    return dict(path=str(tmp_path / 'sbin' / 'snapfleet-dattobd'), config=str(tmp_path / 'etc' / 'dattobd' / 'backup.json'),
                python=sys.executable)


def call(capsys, args, check=False, diff=False):
    args = dict(args)
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    return run_exiting(capsys, runner.main, args)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_present_writes_both_files_once(capsys, where, tmp_path):
    args = dict(where, volumes=[VOLUME], defaults={'state_dir': '/var/lib/x', 'verify': 'changed'})
    code, out = call(capsys, args, check=True, diff=True)
    assert code == 0 and out['changed'] is True
    assert [a.split(' (')[0] for a in out['actions']] == [
        'create directory %s' % os.path.dirname(where['path']), 'write %s' % where['path'],
        'create directory %s' % os.path.dirname(where['config']), 'write %s' % where['config']]
    assert not (tmp_path / 'sbin').exists() and not (tmp_path / 'etc').exists()  # check mode wrote nothing
    assert out['diff'][1]['before'] == '' and '"verify": "changed"' in out['diff'][1]['after']
    assert out['diff'][0]['after'] == 'sha256 %s\n' % out['sha256']
    code, out = call(capsys, args)
    assert code == 0 and out['changed'] is True and out['volumes'] == ['data.img']
    assert mode(where['path']) == 0o755 and mode(where['config']) == 0o600
    assert mode(os.path.dirname(where['config'])) == 0o700
    with open(where['path'], 'rb') as f:
        assert f.read() == hostapp.build(sys.executable)
    assert out['sha256'] in out['actions'][1]
    with open(where['config']) as f:
        doc = json.load(f)
    assert doc == {'format': 1, 'defaults': {'state_dir': '/var/lib/x', 'verify': 'changed'}, 'volumes': [VOLUME]}
    for check in (True, False):
        code, out = call(capsys, args, check=check)
        assert code == 0 and out['changed'] is False and out['actions'] == []


def test_only_what_differs_is_written(capsys, where):
    call(capsys, dict(where, volumes=[VOLUME]))
    before = os.stat(where['path'])
    code, out = call(capsys, dict(where, volumes=[dict(VOLUME, name='data')]), diff=True)
    assert out['changed'] is True
    assert [a.split(' (')[0] for a in out['actions']] == ['write %s' % where['config']]
    assert os.stat(where['path']).st_ino == before.st_ino
    assert '"name": "data"' in out['diff'][1]['after'] and '"name"' not in out['diff'][1]['before']
    assert out['diff'][0]['before'] == out['diff'][0]['after']
    os.chmod(where['path'], 0o777)
    os.chmod(where['config'], 0o644)
    code, out = call(capsys, dict(where, volumes=[dict(VOLUME, name='data')]))
    assert out['actions'] == ['chmod 0755 %s' % where['path'], 'chmod 0600 %s' % where['config']]
    assert mode(where['path']) == 0o755 and mode(where['config']) == 0o600


@pytest.mark.parametrize('volumes, defaults, fragment', [
    ([{'device': '/data'}], {}, 'volumes[0].image is required'),
    ([dict(VOLUME, verify='sometimes')], {}, 'volumes[0].verify must be one of'),
    ([dict(VOLUME, retain=2)], {}, 'Unsupported option volumes[0].retain'),
    ([dict(VOLUME, retention='many')], {}, 'volumes[0].retention must be an integer'),
    ([VOLUME], {'timeout': u'\u0661'}, 'timeout must be an integer'),
    ([VOLUME, dict(VOLUME, device='/home')], {}, 'have the same image'),
    ([dict(VOLUME, pre_hooks=[{'argv': ['fsfreeze']}])], {}, 'argv[0] must be an absolute path'),
])
def test_a_bad_volume_fails_and_writes_nothing(capsys, where, tmp_path, volumes, defaults, fragment):
    code, out = call(capsys, dict(where, volumes=volumes, defaults=defaults))
    assert code == 1 and out['failed'] is True
    assert fragment in out['msg'] and 'nothing was written' in out['msg'] + out.get('hint', '')
    assert not (tmp_path / 'sbin').exists() and not (tmp_path / 'etc').exists()


@pytest.mark.parametrize('over, fragment', [
    (dict(path='relative/x'), 'path must be an absolute file path'),
    (dict(config='/etc/snapfleet/'), 'config must be an absolute file path'),
    (dict(python='/usr/bin/python3 -S'), 'python must be an absolute path'),
])
def test_bad_paths_are_refused(capsys, where, tmp_path, over, fragment):
    code, out = call(capsys, dict(where, volumes=[VOLUME], **over))
    assert code == 1 and fragment in out['msg']
    assert not (tmp_path / 'sbin').exists() and not (tmp_path / 'etc').exists()


def test_absent_removes_both_and_the_configuration_directory(capsys, where, tmp_path):
    call(capsys, dict(where, volumes=[VOLUME]))
    code, out = call(capsys, dict(where, state='absent'), check=True)
    assert out['changed'] is True and os.path.exists(where['path'])
    assert out['actions'] == ['remove %s' % where['path'], 'remove %s' % where['config'],
                              'remove directory %s' % os.path.dirname(where['config'])]
    code, out = call(capsys, dict(where, state='absent'))
    assert out['changed'] is True
    assert not os.path.exists(where['path']) and not (tmp_path / 'etc' / 'dattobd').exists()
    assert (tmp_path / 'sbin').exists()
    code, out = call(capsys, dict(where, state='absent'))
    assert code == 0 and out['changed'] is False and out['actions'] == []


def test_the_ping_url_goes_into_the_configuration_and_not_into_the_output(capsys, where):
    secret = 'https://hc.example/6a1f-secret-id'
    code, out = call(capsys, dict(where, volumes=[VOLUME], ping_url=secret), diff=True)
    assert code == 0 and out['changed'] is True
    with open(where['config']) as f:
        assert json.load(f)['defaults']['ping_url'] == secret
    assert '6a1f-secret-id' not in json.dumps(out)  # no_log: the diff of the configuration is masked
    code, out = call(capsys, dict(where, volumes=[VOLUME], ping_url='https://hc.example/k?x=1'))
    assert code == 1 and 'ping_url must be an http:// or https:// URL' in out['msg']
