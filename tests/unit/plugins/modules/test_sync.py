# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapfleet.dattobd.sync: the real AnsibleModule with /proc/datto-info mocked and a regular file
standing in for /dev/datto<minor>."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os

import pytest


from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as im
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_lib
from ansible_collections.snapfleet.dattobd.plugins.modules import sync
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.cowfile import write_cow
from .utils import run_exiting

B = 4096
UUID = '0123456789abcdef0123456789abcdef'
N = 64


def _blocks(path, seed):
    with open(path, 'wb') as f:
        for i in range(N):
            f.write(hashlib.sha256(b'%d:%d' % (seed, i)).digest() * (B // 32))
    os.chmod(path, 0o600)


@pytest.fixture
def world(tmp_path, monkeypatch):
    d = tmp_path / 'backups'
    d.mkdir(mode=0o700)
    w = {'snap': str(tmp_path / 'datto2'), 'image': str(d / 'img'), 'cow': str(tmp_path / 'cow1')}
    _blocks(w['snap'], 1)
    _blocks(w['image'], 2)
    write_cow(w['cow'], N * B, [1, 2, 3, 40], seq_id=4, uuid=UUID)
    im.init(w['image'], UUID, 4, N * B)
    tracker = procinfo.Tracker(minor=2, cow_file='/.c', block_device='/dev/vdb', state=3, seq_id=5, uuid=UUID)
    monkeypatch.setattr(sync_lib.procinfo, 'read',
                        lambda timeout=10: procinfo.ProcInfo(loaded=True, version='0.12.1', devices=[tracker]))
    monkeypatch.setattr(sync_lib, 'SNAPSHOT_DEVICE', str(tmp_path / 'datto%d'))
    return w


def run_module(capsys, args, check=False, diff=False):
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    return run_exiting(capsys, sync.main, args)[1]


def _read(path, block):
    with open(path, 'rb') as f:
        f.seek(block * B)
        return f.read(B)


def test_sync_runs_and_reports(world, capsys):
    res = run_module(capsys, dict(snapshot='/dev/datto2', cow_file=world['cow'], image=world['image'],
                                  verify='changed'), diff=True)
    assert not res.get('failed'), res
    assert res['changed'] and (res['blocks'], res['runs'], res['bytes']) == (4, 2, 4 * B)
    assert res['seq_id_from'] == 4 and res['seq_id_to'] == 5 and res['verified']
    assert res['diff'] == {'before': {'seq_id': 4, 'pending': None}, 'after': {'seq_id': 5, 'pending': None}}
    assert [_read(world['image'], b) == _read(world['snap'], b) for b in (0, 1, 2, 3, 4, 40)] == \
        [False, True, True, True, False, True]
    assert 'seconds' in res and 'mb_per_s' in res
    meta = im.load(world['image'])
    image = open(world['image'], 'rb').read()
    # The same task again (check mode, then for real): ok, nothing changed, nothing written.
    for check in (True, False):
        again = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image']), check=check,
                           diff=True)
        assert not again.get('failed') and again['changed'] is False, again
        assert again['blocks'] == 0 and again['actions'][0].startswith('nothing to do: ')
        assert again['diff']['before'] == again['diff']['after'] == {'seq_id': 5, 'pending': None}
        assert im.load(world['image']) == meta and open(world['image'], 'rb').read() == image


def test_check_mode_reports_plan_without_writing(world, capsys):
    before = open(world['image'], 'rb').read()
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image']), check=True)
    assert res['changed'] and res['blocks'] == 4 and 'diff' not in res
    assert res['actions'][1].startswith('copy 4 changed blocks (2 runs, 16.0 KiB) from ')
    assert open(world['image'], 'rb').read() == before and im.load(world['image'])['seq_id'] == 4


@pytest.mark.parametrize('args,message', [
    (dict(snapshot='/dev/sdb'), 'minor number or /dev/datto'),
    (dict(timeout=0), 'timeout must be a positive'),
    (dict(engine='upstream', update_img_path=None), 'update-img binary'),
    (dict(snapshot='9'), 'No dattobd tracker uses minor 9'),
])
def test_failures_are_clean(world, capsys, monkeypatch, args, message):
    monkeypatch.setattr(sync.AnsibleModule, 'get_bin_path', lambda self, *a, **k: None)
    base = dict(snapshot='2', cow_file=world['cow'], image=world['image'])
    base.update(args)
    res = run_module(capsys, base)
    assert res['failed'] and message in res['msg'], res
    assert im.load(world['image'])['seq_id'] == 4


def test_unexpected_oserror_is_caught(world, capsys, monkeypatch):
    def boom(*a, **k):
        raise OSError(13, 'Permission denied')
    monkeypatch.setattr(sync.sync_lib, 'run', boom)
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image']))
    assert res['failed'] and res['msg'].startswith('Sync failed:')


def test_permission_refusal_names_the_chmod(world, capsys):
    os.chmod(world['image'], 0o640)
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image']))
    assert res['failed'] and 'chmod 0600 %s' % world['image'] in res['msg']


def test_rerun_into_an_image_at_another_seq_id_is_still_refused(world, capsys):
    """Finding 5 of issue 15: only the same finished sync is a no-op."""
    im.init(world['image'], UUID, 6, N * B)
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image']), check=True)
    assert res['failed'] and 'holds snapshot 6 but the COW file lists the changes since snapshot 4' in res['msg']
    im.init(world['image'], 'ff' * 16, 5, N * B)
    res = run_module(capsys, dict(snapshot='2', cow_file=world['cow'], image=world['image']))
    assert res['failed'] and 'another snapshot series' in res['msg']


@pytest.mark.parametrize('snapshot', [u'\u00b2', u'\u0661', u'\u0662', u'/dev/datto\u0661', u'1\u00b2', u'\uff11',
                                      '9' * 5000, '/dev/datto' + '9' * 5000, '/dev/datto\x00'])
def test_snapshot_with_non_ascii_digits_is_refused(world, capsys, snapshot):
    """Finding 6 (sync part): '²' gave a traceback (isdigit() then int()); '١' was minor 1."""
    before = open(world['image'], 'rb').read(), im.load(world['image'])
    res = run_module(capsys, dict(snapshot=snapshot, cow_file=world['cow'], image=world['image']))
    assert res['failed'] and 'exception' not in res, res
    assert 'ASCII digits' in res['msg'] or 'out of range' in res['msg'], res['msg']
    assert (open(world['image'], 'rb').read(), im.load(world['image'])) == before
