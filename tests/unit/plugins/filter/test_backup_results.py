# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.filter.backup_results import (
    FilterModule, backup_cycles, backup_fleet_results, backup_fleet_summary, backup_host_results, backup_host_status,
    backup_results)

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
                                        'backup_fleet_summary': backup_fleet_summary,
                                        'backup_cycles': backup_cycles, 'backup_host_results': backup_host_results,
                                        'backup_fleet_results': backup_fleet_results,
                                        'backup_host_status': backup_host_status}


def test_host_results_are_the_cycles_then_the_results():
    call = {'failed': True, 'msg': 'x', 'volumes': [
        {'name': 'data', 'device': '/d', 'image': '/b/d.img', 'volume': 0, 'failed': False, 'mode': 'full'}]}
    vols = [{'device': '/d', 'image': '/b/d.img'}, {'device': '/e', 'image': '/b/e.img'}]
    assert backup_host_results(call, vols) == backup_results(backup_cycles(call, vols), vols)
    out = backup_host_results(call, vols, check_mode=True)
    assert [(v['image'], v['failed'], v['check_mode']) for v in out] == [('/b/d.img', False, True), ('/b/e.img', True, True)]


def test_fleet_results_leave_a_host_without_a_call_out():
    call = {'changed': True, 'volumes': [{'name': 'd', 'device': '/d', 'image': '/b/d.img', 'failed': False}]}
    out = backup_fleet_results({'a': call, 'b': None}, {'a': [{'device': '/d', 'image': '/b/d.img'}]})
    assert out['b'] is None and [v['name'] for v in out['a']] == ['d.img']
    with pytest.raises(TypeError):
        backup_fleet_results([call])


def test_host_status_from_the_call():
    assert backup_host_status(None) is None and backup_host_status({'skipped': True}) is None
    lost = backup_host_status({'unreachable': True, 'msg': 'Connection reset'})
    assert (lost['unreachable'], lost['msg'], lost['records']) == (True, 'Connection reset', [])
    refused = backup_host_status({'failed': True, 'msg': 'MODULE FAILURE'})
    assert refused['failed'] is True and refused['msg'] == 'the host status was not read: MODULE FAILURE'
    gate = {'next_boot_ok': False}
    got = backup_host_status({'status': {'info': {'loaded': True, 'kernel_gate': gate}, 'records': [{'image': '/i'}, 3],
                                         'failed': False, 'wedged': False, 'msg': ''}})
    assert got == {'unreachable': False, 'failed': False, 'wedged': False, 'msg': '', 'kernel_gate': gate,
                   'info': {'loaded': True, 'kernel_gate': gate}, 'records': [{'image': '/i'}]}
    wedged = backup_host_status({'status': {'info': None, 'records': [], 'failed': True, 'wedged': True, 'msg': 'hang'}})
    assert (wedged['failed'], wedged['wedged'], wedged['info'], wedged['msg']) == (True, True, {}, 'hang')


def test_one_call_shaped_as_the_former_loop():
    """Issue 18: the role's one call with volumes -> results with item = the declared volume, read as before."""
    call = {'failed': True, 'changed': True, 'msg': '1 of 2 volume(s) backed up; failed: db (at copy): EIO.',
            'volumes': [{'name': 'data.img', 'device': '/data', 'image': '/b/data.img', 'volume': 0, 'failed': False,
                         'changed': True, 'mode': 'incremental', 'blocks': 177, 'restore_point': {'made': True}},
                        {'name': 'db', 'device': '/dev/vdc', 'image': '/b/db.img', 'volume': 1, 'failed': True,
                         'changed': False, 'msg': 'EIO', 'step': 'copy', 'image_state': 'untouched'}]}
    cycles = backup_cycles(call, VOLS)
    assert [r['item'] for r in cycles['results']] == VOLS[:2]
    assert cycles['failed'] is True and cycles['results'][0]['blocks'] == 177
    out = backup_results(cycles, VOLS)
    want = [('data.img', False, None), ('db', True, 'copy'), ('srv.img', True, None)]
    assert [(e['name'], e['failed'], e['step']) for e in out] == want
    assert out[0]['restore_point'] == {'made': True} and out[1]['msg'] == 'EIO'
    assert out[2]['msg'] == call['msg']  # the volume the call did not report


def test_a_call_that_reported_no_volume():
    unreachable = backup_cycles({'unreachable': True, 'msg': 'Connection reset', 'changed': False}, VOLS[:1])
    assert unreachable['results'] == [] and unreachable['unreachable'] is True
    out = backup_results(unreachable, VOLS[:1])
    assert out[0]['failed'] and out[0]['unreachable'] and out[0]['msg'] == 'Connection reset'
    refused = backup_cycles({'failed': True, 'msg': 'volumes[0] (data.img): bad'}, VOLS[:1])
    assert refused['failed'] is True and backup_results(refused, VOLS[:1])[0]['msg'] == 'volumes[0] (data.img): bad'
    with pytest.raises(TypeError):
        backup_cycles(None)


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
    assert out['lines']['web2'] == 'data: incremental, 177 blocks read, 724992 bytes written in 0.5 s (1.38 MiB/s)'
    assert 'db: FAILED at copy (EIO); image resumable, next run resume' in out['lines']['db1']
    assert out['lines']['empty'] == 'no volume declared'
    with pytest.raises(TypeError):
        backup_fleet_summary([])


def test_host_unreachable_during_the_backup_task_is_listed_unreachable():
    """Issue 15: a VM powered off while its backup task ran was listed as 'not run (max fail
    percentage)' with 'Unreachable: none'."""
    registered = {'results': [
        {'item': VOLS[0], 'unreachable': True, 'changed': False,
         'msg': 'Failed to connect to the host via ssh: Connection timed out'}]}
    vols = backup_results(registered, VOLS[:1])
    assert vols[0]['unreachable'] and vols[0]['failed']
    assert 'Connection timed out' in vols[0]['msg']
    out = backup_fleet_summary({'vm1': vols, 'vm2': []})
    assert out['unreachable'] == ['vm1']
    assert out['no_result'] == [] and out['failed'] == [] and out['ok'] == ['vm2']
    assert out['lines']['vm1'].startswith('data.img: UNREACHABLE during the backup (Failed to connect')
    # the whole looped task unreachable (no per-item results)
    vols = backup_results({'unreachable': True, 'msg': 'Data could not be sent to remote host'}, VOLS[:1])
    assert backup_fleet_summary({'vm1': vols})['unreachable'] == ['vm1']


def test_check_mode_says_what_would_run_and_never_none():
    """Issue 15: --check printed 'None blocks, None bytes in None s' and 'Backed up: 1 host(s)'."""
    registered = {'results': [
        {'item': VOLS[0], 'changed': True, 'mode': 'full', 'reason': 'no image yet',
         'actions': ['set up tracking of /dev/vdb', 'copy /dev/datto0 into /b/data.img.partial'],
         'image_state': 'untouched', 'next_run': 'full'}]}
    vols = backup_results(registered, VOLS[:1], check_mode=True)
    assert vols[0]['check_mode'] and vols[0]['actions'][0] == 'set up tracking of /dev/vdb'
    out = backup_fleet_summary({'h': vols}, check_mode=True)
    line = out['lines']['h']
    assert out['check_mode'] is True and out['ok'] == ['h']
    assert line == ('check mode, nothing written: data.img: would run a full backup (no image yet): '
                    'set up tracking of /dev/vdb; copy /dev/datto0 into /b/data.img.partial')
    assert 'None' not in line
    # a real run that did not report figures prints '?', not None
    plain = backup_fleet_summary({'h': backup_results({'results': [{'item': VOLS[0], 'mode': 'incremental'}]})})
    assert plain['lines']['h'] == 'data.img: incremental, ? blocks read, ? bytes written in ? s (? MiB/s)'
    assert backup_fleet_summary({'h': []})['check_mode'] is False


@pytest.mark.parametrize('check_mode', [False, True])
def test_backup_playbook_summary_wording(check_mode):
    """The playbook's Summarise task says 'Would back up' in check mode, never 'Backed up'."""
    import os
    import yaml
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, '..', '..', '..', '..', 'playbooks', 'backup.yml')) as f:
        plays = yaml.safe_load(f)
    task = [t for t in plays[1]['tasks'] if t['name'] == 'Summarise'][0]
    fleet = backup_fleet_summary({'h': []}, check_mode=check_mode)
    msg = Templar(loader=DataLoader(), variables={'ansible_check_mode': check_mode, '__dattobd_backup_fleet': fleet}
                  ).template(trust_as_template(task['ansible.builtin.debug']['msg']))
    if check_mode:
        assert msg.startswith('Check mode, nothing written. Would back up: 1 host(s).') and 'Backed up' not in msg
    else:
        assert msg.startswith('Backed up: 1 host(s).')


SAMPLE = {'seed': 3141592653, 'sample_size': 4096, 'blocks_compared': 4000, 'mismatches': 0, 'result': 'ok',
          'mismatched_blocks': [], 'unstable_blocks': [5], 'seconds': 0.42, 'miss_chance_5pct': 1e-90}


def test_verification_per_volume_and_in_the_summary_line():
    """Issue 15 (Deliver 1): the sample's seed, size and mismatches, or the full verification, per volume."""
    registered = {'results': [
        {'item': VOLS[0], 'mode': 'incremental', 'blocks': 177, 'bytes': 724992, 'seconds': 0.5, 'mb_per_s': 1.38,
         'verification': {'sample': SAMPLE, 'full': None, 'full_verify_due': False,
                          'full_verify_reason': 'next full verification in 12.5 day(s)'}},
        {'item': VOLS[1], 'mode': 'incremental', 'blocks': 3, 'bytes': 12288, 'seconds': 0.1, 'mb_per_s': 0.1,
         'verification': {'sample': None, 'full': {'trigger': 'every 30 day(s)', 'result': 'ok', 'mismatches': 0,
                                                   'seconds': 9.5}, 'full_verify_due': True}},
        {'item': VOLS[2], 'failed': True, 'step': 'verify', 'msg': 'The sampled verification found 2 block(s)',
         'next_run': 'full', 'image_state': 'resumable',
         'verification': {'sample': dict(SAMPLE, mismatches=2, result='failed', mismatched_blocks=[7, 9]),
                          'full': None}}]}
    vols = backup_results(registered, VOLS)
    assert vols[0]['verification'] == {'sample': {'seed': 3141592653, 'sample_size': 4096, 'blocks_compared': 4000,
                                                  'mismatches': 0, 'result': 'ok'}, 'full': None}
    assert vols[1]['verification'] == {'sample': None, 'full': {'trigger': 'every 30 day(s)', 'result': 'ok',
                                                                'mismatches': 0}}
    assert vols[2]['verification']['sample']['mismatches'] == 2
    line = backup_fleet_summary({'h': vols})['lines']['h']
    lines = line.split('; ')
    assert lines[0] == ('data.img: incremental, 177 blocks read, 724992 bytes written in 0.5 s (1.38 MiB/s), verified a sample '
                        'of 4000 block(s) outside the change list (seed 3141592653): 0 mismatches')
    assert lines[1] == ('db: incremental, 3 blocks read, 12288 bytes written in 0.1 s (0.1 MiB/s), full verification '
                        '(every 30 day(s)): 0 mismatches')
    assert line.endswith('; srv.img: FAILED at verify (The sampled verification found 2 block(s)); image resumable, '
                         'next run full, sample of 4000 block(s) (seed 3141592653): 2 mismatches')
    # no verification reported (an older module, a full copy): the line is unchanged, never 'None'
    plain = backup_results({'results': [{'item': VOLS[0], 'mode': 'full', 'verification': None}]})
    assert plain[0]['verification'] is None
    assert 'verif' not in backup_fleet_summary({'h': plain})['lines']['h']


def test_host_failed_before_its_backup_is_failed_not_not_run():
    """Issue 23: a host whose ping (or another step outside the cycle) failed was listed as 'not run (max fail
    percentage)'; with its failure message it is failed, and the line says why."""
    out = backup_fleet_summary({'h1': None, 'h2': None}, failed={'h1': 'MODULE FAILURE', 'h2': None})
    assert out['failed'] == ['h1'] and out['no_result'] == ['h2']
    assert out['lines']['h1'] == 'FAILED before the backup ran: MODULE FAILURE'


def test_reboot_during_the_run_in_the_line():
    vols = backup_results({'results': [{'item': VOLS[0], 'mode': 'full', 'rebooted_during_run': False},
                                       {'item': VOLS[1], 'mode': 'full', 'rebooted_during_run': True}]})
    assert [v['rebooted_during_run'] for v in vols] == [False, True]
    line = backup_fleet_summary({'h': vols})['lines']['h']
    assert line.endswith('; the host rebooted during this run (noticed at %s: minors, COW files and reload scripts '
                         'derived again from the live state)' % vols[1]['name'])


def test_the_line_says_why_a_backup_is_full_and_what_was_left_behind():
    """Issue 23: a full backup's line carries its reason; a failure says why the next run is full."""
    registered = {'failed': True, 'results': [
        {'item': VOLS[0], 'changed': True, 'mode': 'full', 'reason': 'unclean shutdown: tracker lost at boot',
         'blocks': 16384, 'bytes': 5000000, 'seconds': 2.0, 'mb_per_s': 2.4, 'next_run': 'incremental',
         'image_state': 'complete', 'leftover_cow_files': ['/data/.datto_0_4']},
        {'item': VOLS[1], 'failed': True, 'msg': 'The dattobd driver is wedged since 10:00', 'step': 'driver',
         'next_run': 'full', 'next_full_reason': 'driver wedged', 'image_state': 'untouched',
         'driver_wedged': {'since': '10:00'}},
        {'item': VOLS[2], 'changed': True, 'mode': 'incremental', 'reason': 'tracker and image are in step',
         'blocks': 1, 'bytes': 4096, 'seconds': 0.1, 'mb_per_s': 1.0, 'next_run': 'incremental'}]}
    out = backup_results(registered, VOLS)
    assert out[0]['reason'] == 'unclean shutdown: tracker lost at boot'
    assert out[1]['next_full_reason'] == 'driver wedged' and out[1]['driver_wedged'] == {'since': '10:00'}
    line = backup_fleet_summary({'h': out})['lines']['h']
    assert 'data.img: full (unclean shutdown: tracker lost at boot), 16384 blocks read' in line
    assert 'removed 1 COW file(s) left by earlier trackers (/data/.datto_0_4)' in line
    assert 'db: FAILED at driver (The dattobd driver is wedged since 10:00); image untouched, next run full ' \
           '(driver wedged)' in line
    assert 'srv.img: incremental, 1 blocks read' in line  # an incremental's reason stays in the result


def test_fleet_summary_says_what_was_done_about_a_wedged_driver():
    """Issue 23: a reset host took no backup (failed, the next run re-baselines), one that did not come back is
    unreachable; would_reset (check mode) and none (report) only add their message."""
    wedged = [{'name': 'data', 'failed': True, 'step': 'driver', 'msg': 'The dattobd driver is wedged',
               'image_state': 'untouched', 'next_run': 'full', 'next_full_reason': 'driver wedged'}]
    per_host = {'reset': wedged, 'gone': wedged, 'check': wedged, 'report': wedged, 'healthy': [], 'bad': wedged}
    recovery = {'reset': {'action': 'reset', 'msg': 'driver wedged (x); reset by the playbook at T; back after 40 s'},
                'gone': {'action': 'not_back', 'msg': 'driver wedged (x); it did not answer within 600 s after'},
                'check': {'action': 'would_reset', 'msg': 'driver wedged (x); check mode: would reset the host'},
                'report': {'action': 'none', 'msg': 'driver wedged (x); not reset'},
                'healthy': None, 'bad': {'action': 'bogus', 'msg': 'ignored'}}
    out = backup_fleet_summary(per_host, recovery=recovery)
    assert out['failed'] == ['bad', 'check', 'report', 'reset'] and out['unreachable'] == ['gone']
    assert out['ok'] == ['healthy']
    assert out['lines']['reset'].endswith('; driver wedged (x); reset by the playbook at T; back after 40 s; '
                                          'no backup this run: the next run re-baselines each volume')
    assert out['lines']['reset'].startswith('data: FAILED at driver')
    assert out['lines']['gone'].endswith('; driver wedged (x); it did not answer within 600 s after')
    assert out['lines']['check'].endswith('; driver wedged (x); check mode: would reset the host')
    assert out['lines']['report'].endswith('; driver wedged (x); not reset')
    assert 'ignored' not in out['lines']['bad'] and out['lines']['healthy'] == 'no volume declared'
    # a reset host whose volumes did not fail (none declared) took no backup either
    assert backup_fleet_summary({'h': []}, recovery={'h': recovery['reset']})['failed'] == ['h']
