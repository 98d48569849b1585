# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report filters: schema, ordering (problems first), HTML escaping."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

import pytest

from ansible_collections.snapfleet.dattobd.plugins.filter import fleet_report as fr

NOW = '2026-01-02T12:00:00Z'

HEALTHY_TRACKER = {'minor': 0, 'block_device': '/dev/vdb', 'state': 2, 'seq_id': 4, 'uuid': 'ab' * 16}
RECORD_OK = {'name': 'data', 'device': '/dev/vdb', 'minor': 0, 'image': '/backup/vdb.img',
             'last_result': 'ok', 'finished': '2026-01-02T11:00:00Z', 'last_success': '2026-01-02T11:00:00Z',
             'mode': 'incremental', 'blocks': 177, 'bytes': 724992, 'seconds': 0.5, 'mb_per_s': 1.4,
             'next_run': 'incremental', 'image_state': 'complete'}


def table_rows(page):
    """The rows of the page's volume table: the JSON data its script draws, as dicts."""
    found = re.search(r'<script id="rows" type="application/json">(.*?)</script>', page, re.S)
    data = json.loads(found.group(1))
    return [dict(zip(data['columns'], row)) for row in data['rows']]


def collected():
    return {
        'web1': {'info': {'loaded': True, 'version': '0.12.1', 'trackers': [HEALTHY_TRACKER]},
                 'records': [RECORD_OK]},
        'db1': {'info': {'loaded': True, 'version': '0.12.1',
                         'trackers': [{'minor': 1, 'block_device': '/dev/vdc', 'state': 3, 'error': -27,
                                       'error_name': 'EFBIG'}]},
                'records': [dict(RECORD_OK, minor=1, device='/dev/vdc', last_result='failed',
                                 msg='sync failed: EIO', next_run='full', image_state='untouched')]},
        'off1': {'unreachable': True, 'msg': 'ssh: connect to host off1 port 22: No route to host'},
        'aaa-old': {'info': {'loaded': True, 'version': '0.12.1', 'trackers': [HEALTHY_TRACKER]},
                    'records': [dict(RECORD_OK, last_success='2025-12-25T00:00:00Z')]},
        'nodrv': {'info': {'loaded': False, 'trackers': []}, 'records': []},
    }


# (host, expected status, expected problem fragment or None)
HOST_CASES = [
    ('off1', 'unreachable', 'No route to host'),
    ('db1', 'error', 'tracker failed (EFBIG)'),
    ('nodrv', 'error', 'not loaded'),
    ('aaa-old', 'warning', 'last good backup is 8.5 days old (more than 26 hours)'),
    ('web1', 'ok', None),
]


@pytest.mark.parametrize('host, status, fragment', HOST_CASES)
def test_host_status(host, status, fragment):
    report = fr.fleet_report(collected(), generated=NOW)
    entry = [h for h in report['hosts'] if h['name'] == host][0]
    assert entry['status'] == status
    texts = entry['problems'] + [p for v in entry['volumes'] for p in v['problems']]
    if fragment is None:
        assert texts == []
    else:
        assert any(fragment in t for t in texts), texts


def test_problems_first_order_and_summary():
    report = fr.fleet_report(collected(), generated=NOW)
    assert [h['name'] for h in report['hosts']] == ['off1', 'db1', 'nodrv', 'aaa-old', 'web1']
    assert report['summary']['hosts'] == 5
    assert report['summary']['volumes'] == 3
    assert report['summary']['by_status'] == {'unreachable': 1, 'error': 2, 'warning': 1, 'ok': 1}
    assert report['generated'] == NOW


def test_volume_fields_from_record_and_tracker():
    report = fr.fleet_report(collected(), generated=NOW)
    vol = [h for h in report['hosts'] if h['name'] == 'web1'][0]['volumes'][0]
    assert vol['blocks_read'] == 177
    assert vol['bytes_written'] == 724992
    assert vol['mib_per_s'] == 1.4
    assert vol['recovery_point_age_hours'] == 1.0 and vol['stale'] is False
    assert vol['tracker_state'] == 'active incremental'
    assert vol['seq_id'] == 4
    assert vol['last_backup'] == '2026-01-02T11:00:00Z'


def test_untracked_record_and_unrecorded_tracker():
    data = {'h': {'info': {'loaded': True, 'trackers': [{'minor': 5, 'block_device': '/dev/sdz', 'state': 4}]},
                  'records': [dict(RECORD_OK, minor=2, device='/dev/sdy')]}}
    host = fr.fleet_report(data, generated=NOW)['hosts'][0]
    texts = {v['name']: v['problems'] for v in host['volumes']}
    assert any('no tracker' in p for p in texts['data'])
    assert any('never backed up' in p for p in texts['/dev/sdz'])
    assert host['volumes'][0]['status'] == 'warning'
    assert any('unverified' in p for p in texts['/dev/sdz'])
    assert host['status'] == 'warning'


def test_reload_drift_and_info_problems():
    data = {'h': {'info': {'loaded': True, 'driver_version': '0.12.1', 'trackers': [],
                           'reload': {'drift': [{'minor': 2, 'problem': 'missing-tracker',
                                                 'message': 'reload_snapfleet_2 has no live tracker'}]},
                           'problems': ['dkms: not built for 6.1.0-57']}}}
    host = fr.fleet_report(data, generated=NOW)['hosts'][0]
    assert host['status'] == 'warning'
    assert host['driver_version'] == '0.12.1'
    assert host['problems'] == ['boot reload script drift: minor 2: reload_snapfleet_2 has no live tracker',
                                'dkms: not built for 6.1.0-57']


def test_json_schema_valid():
    jsonschema = pytest.importorskip('jsonschema')
    report = fr.fleet_report(collected(), generated=NOW)
    jsonschema.validate(json.loads(json.dumps(report)), fr.FLEET_REPORT_SCHEMA)
    broken = json.loads(json.dumps(report))
    broken['hosts'][0]['status'] = 'fine'
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, fr.FLEET_REPORT_SCHEMA)


def test_bad_input_rejected():
    with pytest.raises(TypeError):
        fr.fleet_report('web1')
    with pytest.raises(TypeError):
        fr.fleet_report_html({'no': 'hosts'})


def test_list_input():
    report = fr.fleet_report([dict(collected()['web1'], host='web1')], generated=NOW)
    assert report['hosts'][0]['name'] == 'web1'


def test_html_self_contained_and_ordered():
    page = fr.fleet_report_html(fr.fleet_report(collected(), generated=NOW))
    assert page.startswith('<!DOCTYPE html>')
    assert '<style>' in page
    # one static file: inline style and script, no external asset
    assert not re.search(r'<(link|img|iframe|object|embed)\b', page)
    assert not re.search(r'(src|href)\s*=', page)
    assert page.count('<script>') == 1 and page.count('<script') == 2  # the script, and its data
    assert 'http' not in page.split('<script>')[1].replace("'http://www.w3.org/2000/svg'", '')
    rows = table_rows(page)
    assert [r['host'] for r in rows] == ['off1', 'db1', 'nodrv', 'aaa-old', 'web1']  # problems first
    web1 = rows[-1]
    assert (web1['device'], web1['image'], web1['blocks'], web1['written_text'], web1['status']) == (
        '/dev/vdb', '/backup/vdb.img', 177, '708.0 KiB', 'ok')
    assert rows[1]['problems'][0].startswith('last backup failed: sync failed: EIO')
    assert 'No route to host' in page.split('<script')[0]  # the problem list is in the page itself


def test_html_escapes_hostile_names():
    evil = '<script>alert("x")</script>'
    data = {evil: {'info': {'loaded': True, 'version': '"><img src=x>', 'trackers': [
        {'minor': 0, 'block_device': '/dev/<b>', 'state': 2}]},
        'records': [dict(RECORD_OK, device='/dev/<b>', name='<i>vol</i>', image='/b/&img"',
                         last_result='failed', msg='<marquee>')]}}
    page = fr.fleet_report_html(fr.fleet_report(data, generated=NOW), title='<t>')
    assert page.count('<script') == 2  # the table's data and the page's own script, at the end
    rows = table_rows(page)
    assert rows[0]['host'] == evil and rows[0]['problems'] == ['last backup failed: <marquee>']
    data = page.split('<script id="rows" type="application/json">')[1].split('</script>')[0]
    assert '<' not in data and '>' not in data and '&' not in data  # \u003c: nothing closes the script element
    page = page.split('<script')[0]
    assert '<script' not in page
    assert '<img' not in page
    assert '<marquee>' not in page
    assert '<i>vol' not in page
    assert '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;' in page
    assert rows[0]['image'] == '/b/&img"'
    assert '&lt;t&gt;' in page


def test_filter_module_exposes_both():
    assert set(fr.FilterModule().filters()) == {'fleet_report', 'fleet_report_html', 'fleet_report_junit',
                                                'fleet_report_markdown'}


# --- full verification: age and overdue (records written by the backup module) ---------------------

def _epoch(text):
    return fr._parse_time(text).timestamp()


@pytest.mark.parametrize('extra, overdue, age, fragment', [
    # No schedule in the record (written before the schedule existed): nothing said.
    ({}, None, None, None),
    ({'full_verify_every_days': 0, 'full_verify_every_cycles': 0}, False, None, None),
    # Verified 10 days ago, every 30 days.
    ({'full_verify_every_days': 30, 'last_full_verify': {'result': 'ok', 'epoch': _epoch('2025-12-23T12:00:00Z'),
                                                         'time': '2025-12-23T12:00:00Z'}}, False, 10.0, None),
    # 31 days: due yesterday, and the daily cycle (26 h) should have run it by now.
    ({'full_verify_every_days': 30, 'last_full_verify': {'result': 'ok', 'epoch': _epoch('2025-12-02T12:00:00Z')}},
     False, 31.0, None),
    ({'full_verify_every_days': 30, 'last_full_verify': {'result': 'ok', 'epoch': _epoch('2025-11-30T00:00:00Z')}},
     True, 33.5, 'the last one or the last full copy is 33.5 days old (every 30 days)'),
    # Never verified, but a full copy 5 days ago is the reference.
    ({'full_verify_every_days': 30, 'last_full_epoch': _epoch('2025-12-28T12:00:00Z')}, False, 5.0, None),
    ({'full_verify_every_days': 30}, True, None, 'never run'),
    ({'full_verify_every_days': 30, 'last_full_verify': {'result': 'failed', 'epoch': _epoch('2026-01-02T11:00:00Z')},
      'last_full_epoch': _epoch('2026-01-01T12:00:00Z')}, True, 1.0, 'the last one failed'),
    ({'full_verify_every_cycles': 5, 'full_verify_every_days': 0, 'cycles_since_full_verify': 5}, True, None,
     'every 5 cycles'),
    ({'full_verify_every_cycles': 5, 'full_verify_every_days': 0, 'cycles_since_full_verify': 3}, False, None, None),
    ({'full_verify_every_days': 30, 'last_full_epoch': 1e300}, True, None, 'never run'),
])
def test_full_verification_age_and_overdue(extra, overdue, age, fragment):
    data = {'web1': {'info': {'loaded': True, 'trackers': [HEALTHY_TRACKER]}, 'records': [dict(RECORD_OK, **extra)]}}
    vol = fr.fleet_report(data, generated=NOW)['hosts'][0]['volumes'][0]
    assert vol['full_verify_overdue'] is overdue
    assert vol['full_verify_age_days'] == age
    if fragment:
        assert vol['status'] == 'warning'
        assert any(p.startswith('full verification overdue') and fragment in p for p in vol['problems']), vol['problems']
    else:
        assert vol['status'] == 'ok' and vol['problems'] == []


def test_full_verification_in_json_and_html():
    jsonschema = pytest.importorskip('jsonschema')
    record = dict(RECORD_OK, full_verify_every_days=30, cycles_since_full_verify=2,
                  last_full_verify={'result': 'ok', 'epoch': _epoch('2025-11-01T12:00:00Z'),
                                    'time': '2025-11-01T12:00:00Z'},
                  last_verify_sample={'result': 'ok', 'blocks_compared': 512, 'seed': 7})
    recent = dict(record['last_full_verify'], epoch=_epoch('2026-01-01T12:00:00Z'))
    data = {'web1': {'info': {'loaded': True, 'trackers': [HEALTHY_TRACKER]}, 'records': [record]},
            'web2': {'info': {'loaded': True, 'trackers': [dict(HEALTHY_TRACKER, minor=1)]},
                     'records': [dict(record, minor=1, last_full_verify=recent)]}}
    report = fr.fleet_report(data, generated=NOW)
    jsonschema.validate(json.loads(json.dumps(report)), fr.FLEET_REPORT_SCHEMA)
    old = [h for h in report['hosts'] if h['name'] == 'web1'][0]['volumes'][0]
    assert (old['last_full_verify'], old['last_full_verify_result'], old['full_verify_overdue']) == (
        '2025-11-01T12:00:00Z', 'ok', True)
    assert (old['last_sample_result'], old['last_sample_blocks']) == ('ok', 512)
    page = fr.fleet_report_html(report)
    assert '>full verification</th>' in page
    rows = dict((r['host'], r) for r in table_rows(page))
    assert (rows['web1']['verify'], rows['web1']['overdue']) == ('62.0 days ago', 1)
    assert (rows['web2']['verify'], rows['web2']['overdue']) == ('1.0 days ago', 0)


@pytest.mark.parametrize('data, host_text', [
    # the info task failed: the driver looks wedged (the collection keeps the records it read anyway)
    ({'failed': True, 'wedged': True, 'msg': 'The dattobd driver looks wedged: reading /proc/datto-info did not '
      'finish within 60 s.', 'info': {}}, 'driver wedged: The dattobd driver looks wedged'),
    # the info module failed for another reason
    ({'failed': True, 'msg': 'dbdctl: Input/output error', 'info': {}}, 'status collection failed: dbdctl'),
])
def test_host_with_a_failed_driver_keeps_its_volumes(data, host_text):
    """Issue 23: a wedged or failing driver dropped the host's volumes from the report (volumes: [])."""
    data = dict(data, records=[RECORD_OK, dict(RECORD_OK, name='logs', device='/dev/vdc', minor=1,
                                               image='/backup/vdc.img')])
    report = fr.fleet_report({'h': data}, generated=NOW)
    host = report['hosts'][0]
    assert host['status'] == 'error' and host['problems'][0].startswith(host_text)
    assert [v['name'] for v in host['volumes']] == ['data', 'logs']
    for vol in host['volumes']:
        assert vol['problem_kinds'] == ['collection_failed'], vol   # not "tracker lost": it is unknown
        assert vol['problems'] == ['host problem, tracker state unknown: %s' % host['problems'][0]]
        assert vol['status'] == 'error' and vol['blocks_read'] == 177 and vol['last_result'] == 'ok'
    assert report['summary']['volumes'] == 2
    assert [p['volume'] for p in report['problems'] if p['kind'] == 'collection_failed'] == [None, 'data', 'logs']
    fr.fleet_report_markdown(report)
    fr.fleet_report_html(report)
    fr.fleet_report_junit(report)


def test_backup_results_of_a_host_lost_mid_run_carry_no_second_problem():
    """A host that stopped answering during its cycle: its volumes say so once (this run), not twice."""
    runs = [{'name': 'data', 'image': '/backup/vdb.img', 'device': '/dev/vdb', 'failed': True, 'unreachable': True,
             'msg': 'Connection reset'}]
    report = fr.fleet_report({'h': {'unreachable': True, 'msg': 'gone'}}, generated=NOW, backup={'h': runs})
    vol = report['hosts'][0]['volumes'][0]
    # its records were not read: whether it ever had a good backup is unknown, so no "no successful backup yet"
    # (the lab fleet's host powered off mid-run had a good full backup from the cycle before)
    assert vol['problem_kinds'] == ['unreachable']
    assert not any('no successful backup' in p for p in vol['problems'])


def test_a_host_lost_mid_run_whose_record_has_no_success_says_so():
    runs = [{'name': 'data', 'image': '/backup/vdb.img', 'device': '/dev/vdb', 'failed': True, 'unreachable': True,
             'msg': 'Connection reset'}]
    record = dict(RECORD_OK, last_result='failed', last_success=None, msg='copy failed')
    report = fr.fleet_report({'h': {'unreachable': True, 'msg': 'gone', 'records': [record]}}, generated=NOW,
                             backup={'h': runs})
    kinds = [k for v in report['hosts'][0]['volumes'] for k in v['problem_kinds']]
    assert 'no_backup' in kinds and 'unreachable' in kinds


WEDGED = {'since': '2026-01-02T10:00:00Z', 'reason': 'reading /proc/datto-info did not finish within 60 seconds',
          'clears': 'a hard reset (a clean reboot hangs): see docs/troubleshooting.md'}


def test_wedged_host_keeps_its_volumes_and_says_what_clears_it():
    """Issue 23: info reports the wedge; the host is an error and its volumes stay, from the records."""
    records = [RECORD_OK, dict(RECORD_OK, name='db', image='/backup/db.img', minor=1, device='/dev/vdc',
                               last_result='failed', msg='The dattobd driver is wedged', next_run='full',
                               next_full_reason='driver wedged', image_state='untouched')]
    report = fr.fleet_report({'w1': {'info': {'loaded': True, 'version': '0.12.1', 'trackers': [],
                                              'driver_wedged': dict(WEDGED, boot_id='b', path='/run/x')},
                                     'records': records}}, generated=NOW)
    host = report['hosts'][0]
    assert host['status'] == 'error' and host['problem_kinds'] == ['driver_wedged']
    assert host['driver_wedged'] == WEDGED
    assert 'only a hard reset clears it' in host['problems'][0]
    assert sorted(v['name'] for v in host['volumes']) == ['data', 'db']
    db = [v for v in host['volumes'] if v['name'] == 'db'][0]
    assert db['next_full_reason'] == 'driver wedged' and 'tracker_lost' not in db['problem_kinds']
    # the host's problem, carried by each of its 2 volumes (their trackers are unknown, not lost)
    assert report['summary']['by_kind']['driver_wedged'] == 3 and report['summary']['failures'] >= 1
    jsonschema = pytest.importorskip('jsonschema')
    jsonschema.validate(json.loads(json.dumps(report)), fr.FLEET_REPORT_SCHEMA)


def test_full_backup_reason_in_the_report_and_the_page():
    record = dict(RECORD_OK, mode='full', reason='unclean shutdown: tracker lost at boot')
    failed = dict(RECORD_OK, name='db', image='/backup/db.img', minor=1, device='/dev/vdc', last_result='failed',
                  next_run='full', next_full_reason='the COW file was damaged')
    report = fr.fleet_report({'web1': {'info': {'loaded': True, 'trackers': [
        HEALTHY_TRACKER, dict(HEALTHY_TRACKER, minor=1, block_device='/dev/vdc')]}, 'records': [record, failed]}},
        generated=NOW)
    vols = dict((v['name'], v) for v in report['hosts'][0]['volumes'])
    assert (vols['data']['mode'], vols['data']['reason']) == ('full', 'unclean shutdown: tracker lost at boot')
    assert vols['db']['next_full_reason'] == 'the COW file was damaged'
    rows = dict((r['volume'], r) for r in table_rows(fr.fleet_report_html(report)))
    assert rows['data']['mode'] == 'full (unclean shutdown: tracker lost at boot)'
    assert rows['db']['next_run'] == 'full (the COW file was damaged)'
    assert 'name="reason" value="unclean shutdown: tracker lost at boot"' in fr.fleet_report_junit(report)


@pytest.mark.parametrize('action, kind, severity', [
    ('reset', 'driver_reset', 'warning'),
    ('would_reset', 'driver_reset', 'warning'),
    ('failed', 'driver_reset', 'error'),
    ('none', None, None),
])
def test_recovery_of_a_wedged_driver_in_the_host_entry(action, kind, severity):
    """Issue 23: what the playbook did about a wedged driver (dattobd_recover_wedged) is the host's ``recovery``
    and, but for ``none`` (only the advice, in the wedged problem), a problem of kind driver_reset."""
    msg = 'driver wedged (since x); %s' % action
    recovery = {'action': action, 'at': '2026-01-02T11:00:00Z', 'seconds': 41, 'sync': 'done', 'msg': msg,
                'boot_id_before': 'a', 'boot_id_after': 'b'}
    info = {'loaded': True, 'version': '0.12.1', 'trackers': []}
    if action != 'reset':
        info['driver_wedged'] = WEDGED
    report = fr.fleet_report({'w1': {'info': info, 'records': [RECORD_OK], 'recovery': recovery}}, generated=NOW)
    host = report['hosts'][0]
    assert host['recovery'] == {'action': action, 'at': '2026-01-02T11:00:00Z', 'seconds': 41.0, 'sync': 'done',
                                'msg': msg}
    if kind:
        at = host['problem_kinds'].index(kind)
        assert host['problems'][at] == msg
        assert [p['severity'] for p in report['problems'] if p['kind'] == kind] == [severity]
    else:
        assert 'driver_reset' not in host['problem_kinds']
        assert '-e dattobd_recover_wedged=reset' in host['problems'][host['problem_kinds'].index('driver_wedged')]
    jsonschema = pytest.importorskip('jsonschema')
    jsonschema.validate(report, fr.FLEET_REPORT_SCHEMA)


def test_recovery_unknown_action_is_ignored():
    report = fr.fleet_report({'w1': {'info': {'loaded': True, 'trackers': []}, 'recovery': {'action': 'bogus'}}},
                             generated=NOW)
    assert report['hosts'][0]['recovery'] is None and report['hosts'][0]['problem_kinds'] == []


def test_how_a_full_backup_wrote_the_image_is_in_the_report_and_the_junit_properties():
    """Issue 23 item 6: a re-baseline by comparison says so, with the blocks that differed."""
    record = dict(RECORD_OK, mode='full', reason='unclean shutdown: tracker lost at boot', bytes=12288,
                  rebaseline={'method': 'compare', 'why': 'the image holds seq_id 3 of a successful cycle',
                              'blocks_read': 16384, 'blocks_differing': 3, 'bytes_written': 12288})
    report = fr.fleet_report({'web1': {'info': {'loaded': True, 'trackers': [HEALTHY_TRACKER]}, 'records': [record]}},
                             generated=NOW)
    vol = report['hosts'][0]['volumes'][0]
    assert (vol['rebaseline'], vol['blocks_differing'], vol['bytes_written']) == ('compare', 3, 12288)
    junit = fr.fleet_report_junit(report)
    assert 'name="rebaseline" value="compare"' in junit and 'name="blocks_differing" value="3"' in junit
    plain = fr.fleet_report({'web1': {'info': {'loaded': True, 'trackers': [HEALTHY_TRACKER]},
                                      'records': [dict(RECORD_OK, rebaseline=None)]}}, generated=NOW)
    assert (plain['hosts'][0]['volumes'][0]['rebaseline'], plain['hosts'][0]['volumes'][0]['blocks_differing']) == (
        None, None)
