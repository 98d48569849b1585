# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report for CI: JUnit read back by a real consumer (junitparser), the Markdown
summary, problem kinds (stale, kernel gate, unreachable mid-run), recovery points, history.

The backup playbook's input is synthesized the way the playbook builds it: per host the status
collection (``info``, ``records``, or ``unreachable``) plus ``backup``, the role's
``dattobd_backup_results`` made by the ``backup_results`` filter from the registered loop.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.snapfleet.dattobd.plugins.filter import fleet_report as fr
from ansible_collections.snapfleet.dattobd.plugins.filter.backup_results import backup_results

from .test_fleet_report import table_rows

junitparser = pytest.importorskip('junitparser')

NOW = '2026-01-02T12:00:00Z'
TRACKER = {'minor': 0, 'block_device': '/dev/vdb', 'state': 2, 'seq_id': 4}
VOL_DATA = {'name': 'data', 'device': '/dev/vdb', 'image': '/backup/data.img'}
VOL_LOGS = {'name': 'logs', 'device': '/dev/vdc', 'image': '/backup/logs.img'}


def record(**extra):
    out = {'name': 'data', 'device': '/dev/vdb', 'minor': 0, 'image': '/backup/data.img', 'last_result': 'ok',
           'finished': '2026-01-02T11:00:00Z', 'last_success': '2026-01-02T11:00:00Z', 'mode': 'incremental',
           'blocks': 177, 'bytes': 724992, 'read_bytes': 724992, 'seconds': 0.5, 'mb_per_s': 1.38,
           'cycle_seconds': 2.25, 'next_run': 'incremental', 'image_state': 'complete'}
    out.update(extra)
    return out


def ok_run(vol, **extra):
    res = {'item': vol, 'changed': True, 'mode': 'incremental', 'blocks': 10, 'bytes': 40960, 'read_bytes': 40960,
           'seconds': 0.25, 'mb_per_s': 0.16, 'next_run': 'incremental', 'image_state': 'complete', 'seq_id': 5}
    res.update(extra)
    return res


def fleet():
    """Five hosts as the backup playbook sees them at its end."""
    killed = backup_results({'results': [
        ok_run(VOL_DATA),
        # the host was powered off while this volume was copied: Ansible's unreachable task result
        {'item': VOL_LOGS, 'unreachable': True, 'changed': False,
         'msg': 'Failed to connect to the host via ssh: ssh: connect to host 10.0.0.7 port 22: Connection timed out'},
    ]}, [VOL_DATA, VOL_LOGS])
    return {
        'good': {'info': {'loaded': True, 'version': '0.12.1', 'trackers': [TRACKER],
                          'kernel_gate': {'running': '6.1.0-40', 'next_boot': '6.1.0-40', 'next_boot_ok': True,
                                          'kernels': [{'release': '6.1.0-40', 'build': True, 'loads': True,
                                                       'reason': ''}]}},
                 'records': [record(finished=NOW, last_success=NOW)], 'backup': backup_results(
                     {'results': [ok_run(VOL_DATA)]}, [VOL_DATA])},
        # stopped answering after its first volume: the status collection after the role is unreachable too
        'killed': {'unreachable': True, 'msg': 'Failed to connect to the host via ssh: Connection timed out',
                   'info': {}, 'records': [], 'backup': killed},
        'broken': {'info': {'loaded': True, 'trackers': [TRACKER]},
                   'records': [record(last_result='failed', msg='copy failed: EIO', step='copy')],
                   'backup': backup_results({'results': [{'item': VOL_DATA, 'failed': True, 'step': 'copy',
                                                          'msg': 'copy failed: EIO', 'image_state': 'resumable',
                                                          'next_run': 'resume'}]}, [VOL_DATA])},
        'old': {'info': {'loaded': True, 'trackers': [TRACKER]},
                'records': [record(last_success='2025-12-30T12:00:00Z', finished='2025-12-30T12:00:00Z')]},
        'gated': {'info': {'loaded': True, 'trackers': [TRACKER],
                           'kernel_gate': {'running': '6.1.0-40', 'next_boot': '6.1.0-41', 'next_boot_ok': False,
                                           'kernels': [{'release': '6.1.0-41', 'build': False, 'loads': None,
                                                        'reason': 'no kernel headers for 6.1.0-41'}]}},
                  'records': [record()]},
    }


def read_junit(tmp_path, report):
    path = tmp_path / 'report.xml'
    path.write_text(fr.fleet_report_junit(report), encoding='utf-8')
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    cases = {}
    for suite in suites:
        for case in suite:
            cases[(case.classname, case.name)] = case
    return suites, cases


def props(case):
    holder = case.child(junitparser.Properties)
    return dict((p.name, p.value) for p in holder) if holder is not None else {}


def test_junit_counts_and_reasons(tmp_path):
    report = fr.fleet_report(fleet(), generated=NOW)
    suites, cases = read_junit(tmp_path, report)
    assert len(suites) == 1
    suite = suites[0]
    # one test case per host and one per volume
    assert sorted(cases) == sorted([
        ('good', 'host'), ('good', 'data'), ('killed', 'host'), ('killed', 'data'), ('killed', 'logs'),
        ('broken', 'host'), ('broken', 'data'), ('old', 'host'), ('old', 'data'), ('gated', 'host'),
        ('gated', 'data')])
    assert (suite.tests, suite.failures, suite.errors) == (11, 5, 0)
    failed = dict((key, case.result[0]) for key, case in cases.items() if case.result)
    assert sorted(failed) == [('broken', 'data'), ('gated', 'host'), ('killed', 'host'), ('killed', 'logs'),
                              ('old', 'data')]
    # the host that went away mid-run is unreachable, and so is the volume it was copying
    assert failed[('killed', 'host')].type == 'unreachable'
    assert 'Connection timed out' in failed[('killed', 'host')].message
    assert failed[('killed', 'logs')].type == 'unreachable'
    assert 'stopped answering during the backup' in failed[('killed', 'logs')].message
    assert failed[('broken', 'data')].type == 'failed'
    assert failed[('broken', 'data')].message == 'backup failed at copy: copy failed: EIO'
    assert failed[('old', 'data')].type == 'stale'
    assert failed[('old', 'data')].message == 'last good backup is 3.0 days old (more than 26 hours)'
    assert failed[('gated', 'host')].type == 'kernel_gate'
    assert 'boots 6.1.0-41 next' in failed[('gated', 'host')].message
    assert 'no kernel headers for 6.1.0-41' in failed[('gated', 'host')].message
    # the volume the killed host copied before it went away passed, with this cycle's figures
    assert not cases[('killed', 'data')].result
    figures = props(cases[('killed', 'data')])
    assert (figures['this_run'], figures['bytes_written'], figures['blocks_read'], figures['mib_per_s']) == (
        'ok', '40960', '10', '0.16')
    assert 'device' not in figures and 'image' not in figures
    assert props(cases[('good', 'host')])['kernel_next_boot_ok'] == 'true'
    assert props(cases[('gated', 'host')])['kernel_next_boot_ok'] == 'false'
    assert props(suite)['outcome'] == 'problems'


def test_junit_warnings_pass_with_the_text_in_system_out(tmp_path):
    data = {'h': {'info': {'loaded': True, 'trackers': [dict(TRACKER, state=4)]}, 'records': [record()]}}
    suites, cases = read_junit(tmp_path, fr.fleet_report(data, generated=NOW))
    case = cases[('h', 'data')]
    assert case.is_passed
    assert 'still unverified' in case.system_out


def test_junit_survives_hostile_text(tmp_path):
    data = {'<h>&"\x01': {'unreachable': True, 'msg': 'bad \x00\x1b[31m <xml> & "quotes" ]]>'}}
    suites, cases = read_junit(tmp_path, fr.fleet_report(data, generated=NOW))
    assert len(cases) == 1
    key, case = list(cases.items())[0]
    assert key == ('<h>&"', 'host')
    assert case.result[0].message == 'unreachable: bad [31m <xml> & "quotes" ]]>'


def test_markdown_summary():
    md = fr.fleet_report_markdown(fr.fleet_report(fleet(), generated=NOW))
    lines = md.splitlines()
    assert lines[0] == '## snapfleet.dattobd fleet report: 4 of 5 hosts need attention'
    assert '| unreachable | error | warning | ok |' in lines
    assert '| 1 | 2 | 1 | 1 |' in lines
    assert any(line.startswith('### Needs attention (') and '1 kernel gate' in line and '1 stale' in line
               for line in lines)
    row = [line for line in lines if line.startswith('| killed | logs |')]
    assert row and 'stopped answering during the backup' in row[0]
    # no Python repr anywhere (the status playbook once printed "({'ok': 2})")
    assert "{'" not in md and 'None' not in md


def test_markdown_cells_cannot_break_the_table_or_inject_html():
    data = {'a|b': {'unreachable': True, 'msg': 'line1\nline2 <img src=x> | `code` *x*'}}
    md = fr.fleet_report_markdown(fr.fleet_report(data, generated=NOW))
    row = [line for line in md.splitlines() if line.startswith('| a')][0]
    assert row.startswith('| a\\|b | \u2014 | unreachable | ')
    assert '<img' not in md and '&lt;img src=x&gt;' in row
    assert row.count(' | ') == 3 and '\\`code\\` \\*x\\*' in row


@pytest.mark.parametrize('hosts, outcome, headline', [
    ({'a': {'info': {'loaded': True, 'trackers': [TRACKER]}, 'records': [record()]}}, 'all_good', 'all 1 hosts good'),
    ({'a': {'unreachable': True}, 'b': {'not_run': True}}, 'none_reached', 'no host reached (2 hosts)'),
    ({'a': {'unreachable': True}, 'b': {'info': {'loaded': True, 'trackers': []}}}, 'problems',
     '1 of 2 hosts need attention'),
])
def test_outcome(hosts, outcome, headline):
    report = fr.fleet_report(hosts, generated=NOW)
    assert report['summary']['outcome'] == outcome
    assert fr.fleet_report_markdown(report).splitlines()[0].endswith(': ' + headline)


@pytest.mark.parametrize('gate', [None, 'garbage', {}, {'next_boot_ok': None}, {'next_boot_ok': True},
                                  {'next_boot_ok': 'false'}, {'kernels': 'x', 'next_boot_ok': True}])
def test_kernel_gate_absent_unknown_or_fine_is_no_problem(gate):
    info = {'loaded': True, 'trackers': []}
    if gate is not None:
        info['kernel_gate'] = gate
    host = fr.fleet_report({'h': {'info': info}}, generated=NOW)['hosts'][0]
    assert host['status'] == 'ok' and host['problems'] == []
    assert host['kernel_gate'] is None or host['kernel_gate']['next_boot_ok'] in (True, None)


def test_kernel_gate_false_is_a_problem_of_the_host():
    report = fr.fleet_report(fleet(), generated=NOW)
    host = [h for h in report['hosts'] if h['name'] == 'gated'][0]
    assert host['status'] == 'error' and host['problem_kinds'] == ['kernel_gate']
    assert host['kernel_gate'] == {'running': '6.1.0-40', 'next_boot': '6.1.0-41', 'next_boot_ok': False,
                                   'kernels': [{'release': '6.1.0-41', 'build': False, 'loads': None,
                                                'reason': 'no kernel headers for 6.1.0-41'}]}
    # without a reason, the build/load flags say why
    info = {'loaded': True, 'kernel_gate': {'next_boot': 'k2', 'next_boot_ok': False,
                                            'kernels': [{'release': 'k2', 'build': True, 'loads': False}]}}
    host = fr.fleet_report({'h': {'info': info}}, generated=NOW)['hosts'][0]
    assert host['problems'] == ['kernel gate: the host boots k2 next, and dattobd would not be loaded there '
                                '(dattobd does not load on it)']


def test_problems_first_list_and_recovery_points():
    report = fr.fleet_report(fleet(), generated=NOW)
    kinds = [(p['host'], p['volume'], p['kind']) for p in report['problems']]
    assert kinds[:2] == [('killed', None, 'unreachable'), ('killed', 'logs', 'unreachable')]
    assert ('broken', 'data', 'failed') in kinds and ('gated', None, 'kernel_gate') in kinds
    assert ('old', 'data', 'stale') in kinds
    severities = [fr.STATUS_RANK[p['severity']] for p in report['problems']]
    assert severities == sorted(severities)
    vols = dict(((h['name'], v['name']), v) for h in report['hosts'] for v in h['volumes'])
    assert vols[('good', 'data')]['recovery_point_age_hours'] == 0.0
    assert vols[('old', 'data')]['recovery_point_age_hours'] == 72.0 and vols[('old', 'data')]['stale'] is True
    assert report['summary']['oldest_recovery_point_hours'] == 72.0
    assert report['summary']['by_kind']['unreachable'] == 2
    assert report['summary']['failures'] == 5
    # this run's figures win over the record's (the record may be the previous cycle's)
    assert (vols[('good', 'data')]['bytes_written'], vols[('good', 'data')]['this_run']) == (40960, 'ok')
    assert (vols[('old', 'data')]['bytes_written'], vols[('old', 'data')]['this_run']) == (724992, None)


def test_history_cut_and_charted():
    hist = [{'finished': '2026-01-%02dT03:00:00Z' % d, 'result': 'failed' if d == 2 else 'ok', 'mode': 'incremental',
             'bytes': d * 1048576, 'cycle_seconds': float(d)} for d in range(1, 3)]
    hist = [{'finished': '2025-12-01T00:00:00Z', 'result': 'ok', 'bytes': 1}] * 30 + hist + ['junk']
    data = {'h': {'info': {'loaded': True, 'trackers': [TRACKER]}, 'records': [record(history=hist)]}}
    report = fr.fleet_report(data, generated=NOW)
    vol = report['hosts'][0]['volumes'][0]
    hist = vol['history']
    assert set(hist) == {'finished', 'result', 'bytes_written', 'cycle_seconds'}
    assert all(len(column) == fr.HISTORY_CYCLES for column in hist.values())
    assert [hist[k][-1] for k in ('finished', 'result', 'bytes_written', 'cycle_seconds')] == [
        '2026-01-02T03:00:00Z', 'failed', 2097152, 2.0]
    page = fr.fleet_report_html(report)
    row = table_rows(page)[0]
    assert len(row['hist_w']) == fr.HISTORY_CYCLES and row['hist_w'][-2:] == [1048576, 2097152]
    assert row['hist_c'][-2:] == [1.0, 2.0] and row['fails'] == [fr.HISTORY_CYCLES - 1]  # the failed cycle
    # the fleet charts, per day
    assert '<title>2026-01-02: 2.0 MiB</title>' in page and '<title>2026-01-01: 1.0 MiB</title>' in page


def test_schema_v2_validates():
    jsonschema = pytest.importorskip('jsonschema')
    report = fr.fleet_report(fleet(), generated=NOW)
    data = json.loads(json.dumps(report))
    jsonschema.validate(data, fr.FLEET_REPORT_SCHEMA)
    assert data['schema'] == 'snapfleet.dattobd/fleet-report/v2' and data['schema_version'] == 2
    data['problems'][0]['kind'] = 'mystery'
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, fr.FLEET_REPORT_SCHEMA)


def test_html_labels_units_and_template_escaping():
    page = fr.fleet_report_html(fr.fleet_report(fleet(), generated=NOW))
    assert '>MiB/s</th>' in page and 'MB/s' not in page
    assert '>blocks read</th>' in page and '>written</th>' in page
    assert '4 of 5 hosts need attention' in page
    assert 'id="attention"' in page and page.index('id="attention"') < page.index('id="vt"')
    with pytest.raises(TypeError):
        fr.fleet_report_junit({'hosts': []})
    with pytest.raises(TypeError):
        fr.fleet_report_markdown(None)


def test_backup_results_merged_and_hosts_not_run():
    collected = fleet()
    per_host = dict((name, data.pop('backup', None)) for name, data in collected.items())
    collected.pop('old')
    per_host['late'] = None  # never started: max fail percentage stopped the batches
    report = fr.fleet_report(dict(collected, late=None), generated=NOW, backup=per_host)
    hosts = dict((h['name'], h) for h in report['hosts'])
    assert hosts['late']['problem_kinds'] == ['not_run'] and hosts['late']['status'] == 'error'
    assert [v['this_run'] for v in hosts['killed']['volumes']] == ['unreachable', 'ok']
    assert report['summary']['reached'] == 3
    with pytest.raises(TypeError):
        fr.fleet_report({}, backup=[])


def test_kernel_gate_beside_info_as_the_status_playbook_keeps_it():
    gate = {'running': 'k1', 'next_boot': 'k2', 'next_boot_ok': False, 'kernels': []}
    host = fr.fleet_report({'h': {'info': {'loaded': True}, 'kernel_gate': gate}}, generated=NOW)['hosts'][0]
    assert host['problem_kinds'] == ['kernel_gate'] and host['kernel_gate']['next_boot'] == 'k2'
