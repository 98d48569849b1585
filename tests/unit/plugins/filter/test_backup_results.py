# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.filter.backup_results import (
    FilterModule, backup_fleet_summary, backup_results)

VOLS = [{'device': '/data', 'image': '/b/data.img'}, {'device': '/dev/vdc', 'image': '/b/db.img', 'name': 'db'},
        {'device': '/srv', 'image': '/b/srv.img'}]


def test_summaries_and_missing_volume():
    registered = {'failed': True, 'msg': 'One or more items failed', 'results': [
        {'item': VOLS[0], 'changed': True, 'mode': 'incremental', 'blocks': 177, 'bytes': 724992,
         'seconds': 0.5, 'mb_per_s': 1.38, 'next_run': 'incremental', 'image_state': 'complete'},
        {'item': VOLS[1], 'failed': True, 'msg': 'Copying failed', 'step': 'copy', 'next_run': 'resume',
         'image_state': 'resumable'},
        'junk']}
    out = backup_results(registered, VOLS)
    assert [(e['name'], e['failed']) for e in out] == [('data.img', False), ('db', True), ('srv.img', True)]
    assert out[0]['blocks'] == 177 and out[0]['msg'] is None
    assert (out[1]['msg'], out[1]['next_run'], out[1]['image_state']) == ('Copying failed', 'resume', 'resumable')
    assert out[2]['msg'] == 'One or more items failed'


def test_nothing_registered():
    assert backup_results({}, []) == []
    assert backup_results({'results': None}) == []
    with pytest.raises(TypeError):
        backup_results(None)


def test_filter_exposed():
    assert FilterModule().filters() == {'backup_results': backup_results,
                                        'backup_fleet_summary': backup_fleet_summary}


def test_fleet_summary():
    ok = [{'name': 'data', 'failed': False, 'mode': 'incremental', 'blocks': 177, 'bytes': 724992,
           'seconds': 0.5, 'mb_per_s': 1.38}]
    bad = ok + [{'name': 'db', 'failed': True, 'step': 'copy', 'msg': 'EIO', 'image_state': 'resumable',
                 'next_run': 'resume'}]
    out = backup_fleet_summary({'web2': ok, 'off': None, 'db1': bad, 'empty': [], 'gone': None},
                               {'gone': 'ssh: connect to host gone port 22: No route to host', 'web2': None})
    assert out['ok'] == ['empty', 'web2']
    assert out['failed'] == ['db1']
    assert out['unreachable'] == ['gone']
    assert out['no_result'] == ['off']
    assert out['lines']['gone'] == 'UNREACHABLE: ssh: connect to host gone port 22: No route to host'
    assert out['lines']['off'].startswith('not backed up')
    assert out['lines']['web2'] == 'data: incremental, 177 blocks, 724992 bytes in 0.5 s (1.38 MB/s)'
    assert 'db: FAILED at copy (EIO); image resumable, next run resume' in out['lines']['db1']
    assert out['lines']['empty'] == 'no volume declared'
    with pytest.raises(TypeError):
        backup_fleet_summary([])
