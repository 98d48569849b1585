# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup and status playbooks on a local three-host inventory (no driver needed).

``good`` declares no volume, ``bad`` declares a volume whose device does not exist (the backup
module refuses it before anything runs), ``offline`` is unreachable (ssh to a closed port). The
backup playbook must finish the others and report each host in its summary; the status playbook
must write the JSON and HTML reports with the unreachable host first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import ansible_collections.snapfleet.dattobd as collection

junitparser = pytest.importorskip('junitparser')

ROOT = os.path.dirname(collection.__file__) if getattr(collection, '__file__', None) else list(collection.__path__)[0]
# ROOT is <base>/ansible_collections/snapfleet/dattobd: the collections path is <base>.
COLLECTIONS_PATH = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(ROOT))))
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

pytestmark = pytest.mark.skipif(not os.path.exists(PLAYBOOK) and not shutil.which('ansible-playbook'),
                                reason='ansible-playbook not installed')


def inventory(tmp_path, hosts=None, more=None):
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    os.chmod(str(state), 0o700)
    (state / 'backup_data.img.json').write_text(json.dumps({
        'name': 'data', 'device': '/dev/vdb', 'minor': 0, 'image': '/backup/data.img', 'last_result': 'ok',
        'last_success': '2026-01-01T00:00:00Z', 'mode': 'incremental', 'blocks': 177, 'bytes': 724992,
        'seconds': 0.5, 'mb_per_s': 1.4, 'next_run': 'incremental', 'image_state': 'complete'}))
    (tmp_path / 'metrics').mkdir()  # node_exporter's directory of these hosts (the role passes it to the module)
    local = {'ansible_connection': 'local', 'ansible_become': False, 'ansible_python_interpreter': sys.executable}
    inv = {'all': {'hosts': {
        'good': dict(local, dattobd_backup_volumes=[]),
        'bad': dict(local, dattobd_backup_state_dir=str(tmp_path / 'state-bad'),
                    dattobd_backup_volumes=[{'device': '/nonexistent-snapfleet-dev',
                                             'image': str(tmp_path / 'img' / 'bad.img')}]),
        'offline': {'ansible_host': '127.0.0.1', 'ansible_port': 1, 'ansible_user': 'nobody',
                    'ansible_ssh_common_args': '-o ConnectTimeout=3 -o BatchMode=yes',
                    'dattobd_backup_volumes': [{'device': '/data', 'image': '/backup/data.img'}]},
    }, 'vars': {'dattobd_status_state_dir': str(state), 'dattobd_backup_metrics_dir': str(tmp_path / 'metrics'),
                # the backup role's host-local runner of each (local) host, in the test's directory
                'dattobd_backup_runner_path': str(tmp_path / 'runner') + '/{{ inventory_hostname }}/snapfleet-dattobd',
                'dattobd_backup_runner_config': str(tmp_path / 'runner') + '/{{ inventory_hostname }}/etc/backup.json'}}}
    # 'flaky' answers through the faulty connection (connection_plugins/faulty.py): the faults of a
    # test (SNAPFLEET_FAULTS) make it stop answering, or its driver look wedged, in the middle of a run.
    inv['all']['hosts']['flaky'] = dict(
        local, ansible_connection='faulty', ansible_host='flaky', dattobd_backup_state_dir=str(tmp_path / 'state-flaky'),
        dattobd_backup_volumes=[{'device': '/nonexistent-snapfleet-dev%d' % i, 'name': 'vol%d' % i,
                                 'image': str(tmp_path / 'img' / ('flaky%d.img' % i))} for i in (1, 2)])
    inv['all']['hosts'].update(more or {})
    if hosts is None:
        del inv['all']['hosts']['flaky']
    else:
        inv['all']['hosts'] = dict((name, inv['all']['hosts'][name]) for name in hosts)
    path = tmp_path / 'inventory.json'
    path.write_text(json.dumps(inv))
    return str(path)


def run_playbook(tmp_path, name, *extra, **kwargs):
    faults = tmp_path / 'faults'
    faults.mkdir(exist_ok=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'),
               ANSIBLE_RETRY_FILES_ENABLED='False', PWD=str(tmp_path),
               ANSIBLE_CONNECTION_PLUGINS=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'connection_plugins'),
               SNAPFLEET_FAULTS=json.dumps(dict({'flaky': kwargs.get('faults') or {}},
                                                **kwargs.get('host_faults', {}))),
               SNAPFLEET_FAULTS_DIR=str(faults))
    exe = PLAYBOOK if os.path.exists(PLAYBOOK) else shutil.which('ansible-playbook')
    cmd = [exe, '-i', inventory(tmp_path, kwargs.get('hosts'), kwargs.get('more_hosts')),
           os.path.join(ROOT, 'playbooks', name)] + list(extra)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                          timeout=600, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


def test_backup_playbook_reports_every_host(tmp_path):
    summary = tmp_path / 'summary.json'
    rc, out = run_playbook(tmp_path, 'backup.yml', '-e', 'dattobd_backup_summary_file=%s' % summary)
    assert rc != 0, out  # a host failed
    assert summary.exists(), out
    data = json.loads(summary.read_text())['summary']
    assert data['ok'] == ['good'], out
    assert data['failed'] == ['bad'], out
    assert data['unreachable'] == ['offline'], out
    assert data['no_result'] == [], out
    # refused before anything ran (its device does not exist, and no driver here): nothing written, next run full
    assert 'FAILED at snapshot' in data['lines']['bad']
    assert 'next run full' in data['lines']['bad']
    assert not (tmp_path / 'state-bad').exists()  # a refused run writes no record, no lock, no state directory
    # ... but its metrics say it failed (dattobd_backup_metrics_dir reached the module)
    metrics = [p.read_text() for p in (tmp_path / 'metrics').iterdir()]
    assert len(metrics) == 1 and 'snapfleet_dattobd_last_run_success{volume="/nonexistent-snapfleet-dev",image="%s",' \
        'minor=""} 0\n' % (tmp_path / 'img' / 'bad.img') in metrics[0], metrics
    assert 'Failed: bad. Unreachable: offline. Not run: none.' in out
    assert 'Not every host was backed up' in out
    assert rc == 2, out  # documented: some hosts failed or were unreachable
    # the reports beside the summary: JUnit with one failing test case per failed / unreachable host
    junit = junitparser.JUnitXml.fromfile(str(tmp_path / 'dattobd-report' / 'backup-report.xml'))
    cases = dict(((c.classname, c.name), c) for suite in junit for c in suite)
    assert cases[('offline', 'host')].result[0].type == 'unreachable'
    bad = [c for (host, name), c in cases.items() if host == 'bad' and name != 'host']
    assert len(bad) == 1 and bad[0].result[0].type == 'failed' and 'at snapshot' in bad[0].result[0].message
    assert not any(c.result and c.result[0].type in ('failed', 'unreachable')
                   for (host, name), c in cases.items() if host == 'good')
    report = json.loads((tmp_path / 'dattobd-report' / 'backup-report.json').read_text())
    assert report['summary']['reached'] == 2
    md = (tmp_path / 'dattobd-report' / 'backup-report.md').read_text()
    assert md.startswith('## snapfleet.dattobd backup report: ') and '| offline |' in md
    assert (tmp_path / 'dattobd-report' / 'backup-report.html').exists()


@pytest.mark.parametrize('playbook, hosts, extra, expected', [
    ('backup.yml', ['good'], [], 0),                 # every host backed up
    ('backup.yml', ['offline'], [], 4),              # no host answered
    ('status.yml', ['offline'], [], 4),              # no host answered: a report of nothing
    ('status.yml', ['good', 'offline'], ['-e', 'dattobd_status_fail_on_problems=true'], 2),
])
def test_documented_exit_codes(tmp_path, playbook, hosts, extra, expected):
    rc, out = run_playbook(tmp_path, playbook, *extra, hosts=hosts)
    assert rc == expected, out
    assert list((tmp_path / 'dattobd-report').glob('*.xml')), out  # the reports are written in every case


@pytest.mark.parametrize('serial', ['1'])
def test_backup_playbook_serial_batches_all_run(tmp_path, serial):
    """With one host per batch, a failing batch does not stop the later batches or the report."""
    summary = tmp_path / 'summary.json'
    rc, out = run_playbook(tmp_path, 'backup.yml', '-e', 'dattobd_backup_serial=%s' % serial,
                           '-e', 'dattobd_backup_summary_file=%s' % summary)
    assert rc != 0, out
    data = json.loads(summary.read_text())['summary']
    assert (data['ok'], data['failed'], data['unreachable']) == (['good'], ['bad'], ['offline']), out


def test_backup_playbook_max_fail_percentage_stops_batches(tmp_path):
    summary = tmp_path / 'summary.json'
    rc, out = run_playbook(tmp_path, 'backup.yml', '-e', 'dattobd_backup_serial=1',
                           '-e', 'dattobd_backup_max_fail_percentage=0', '-e', 'dattobd_backup_summary_file=%s' % summary)
    assert rc != 0, out
    data = json.loads(summary.read_text())['summary']
    # Inventory order: good, bad, offline; the batch of "bad" fails, so "offline" is never started.
    assert (data['ok'], data['failed'], data['no_result']) == (['good'], ['bad'], ['offline']), out


def test_backup_playbook_unreachable_host_does_not_stop_batches(tmp_path):
    """A powered-off host is reported, but it is no failed backup: even with max fail percentage 0
    the later batches run."""
    summary = tmp_path / 'summary.json'
    rc, out = run_playbook(tmp_path, 'backup.yml', '-e', 'dattobd_backup_serial=1',
                           '-e', 'dattobd_backup_max_fail_percentage=0', '-e', 'dattobd_backup_summary_file=%s' % summary,
                           hosts=['offline', 'good'])
    assert rc != 0, out  # the unreachable host still fails the run at its end
    data = json.loads(summary.read_text())['summary']
    assert (data['ok'], data['unreachable'], data['failed'], data['no_result']) == (['good'], ['offline'], [], []), out
    assert 'Unreachable: offline. Not run: none.' in out


def test_backup_playbook_check_mode_says_what_would_run(tmp_path):
    """Issue 15: --check --diff printed 'None blocks, None bytes in None s' and 'Backed up: 1 host(s)'."""
    summary = tmp_path / 'summary.json'
    rc, out = run_playbook(tmp_path, 'backup.yml', '--check', '--diff', '-e', 'dattobd_backup_summary_file=%s' % summary,
                           hosts=['good'])
    assert rc == 0, out
    assert 'Check mode, nothing written. Would back up: 1 host(s).' in out
    assert 'Backed up:' not in out and 'None blocks' not in out


def test_status_playbook_writes_reports(tmp_path):
    report_dir = tmp_path / 'report'
    rc, out = run_playbook(tmp_path, 'status.yml', '-e', 'dattobd_status_report_dir=%s' % report_dir)
    assert rc == 0, out
    report = json.loads((report_dir / 'fleet-report.json').read_text())
    assert [h['name'] for h in report['hosts']][0] == 'offline'
    assert report['hosts'][0]['status'] == 'unreachable'
    assert sorted(h['name'] for h in report['hosts']) == ['bad', 'good', 'offline']
    good = [h for h in report['hosts'] if h['name'] == 'good'][0]
    assert good['volumes'][0]['blocks_read'] == 177
    assert report['schema'] == 'snapfleet.dattobd/fleet-report/v2'
    page = (report_dir / 'fleet-report.html').read_text()
    junit = (report_dir / 'fleet-report.xml').read_text()
    assert '<testcase classname="offline" name="host"' in junit and '<failure type="unreachable"' in junit
    assert (report_dir / 'fleet-report.md').read_text().startswith('## snapfleet.dattobd fleet report: ')
    # the page's script draws one row per volume from the data embedded in the page
    rows = json.loads(re.search(r'<script id="rows" type="application/json">(.*?)</script>', page, re.S).group(1))
    for host in ('good', 'bad', 'offline'):
        assert '"%s"' % host in json.dumps(rows)
    assert oct(os.stat(str(report_dir / 'fleet-report.json')).st_mode & 0o777) == '0o600'
    # the summary line says it in words, not as a Python dict ("({'ok': 2})" once)
    assert "{'" not in out and "({" not in out, out
    assert '3 hosts (2 reached): 1 unreachable, ' in out, out


def _report(tmp_path, name):
    return json.loads((tmp_path / 'dattobd-report' / name).read_text())


@pytest.mark.parametrize('after', ['down', 'back'])
def test_backup_playbook_only_host_lost_mid_task_still_reports(tmp_path, after):
    """Issue 23: with only that host targeted, a host that stops answering during the backup task (powered
    off: ``down``; hard reset and back: ``back``) still gets the summary and the fleet report."""
    summary = tmp_path / 'summary.json'
    faults = {'backup': {'unreachable': 'Connection reset by peer (hard reset)', 'after': after}}
    rc, out = run_playbook(tmp_path, 'backup.yml', '-e', 'dattobd_backup_summary_file=%s' % summary,
                           hosts=['flaky'], faults=faults)
    assert rc == 2, out  # documented: a host was unreachable (it answered at first: not 4, "no host answered")
    data = json.loads(summary.read_text())['summary']
    assert (data['ok'], data['failed'], data['unreachable'], data['no_result']) == ([], [], ['flaky'], []), out
    assert 'UNREACHABLE during the backup' in data['lines']['flaky'], out
    report = _report(tmp_path, 'backup-report.json')
    host = report['hosts'][0]
    assert host['name'] == 'flaky' and host['status'] == 'unreachable', out
    assert sorted(v['name'] for v in host['volumes']) == ['vol1', 'vol2'], out
    assert (tmp_path / 'dattobd-report' / 'backup-report.xml').exists(), out
    assert 'Unreachable: flaky. Not run: none.' in out


def test_status_playbook_wedged_host_keeps_its_volumes(tmp_path):
    """Issue 23: the info task of a host fails (its driver looks wedged): the report still lists the host's
    volumes from its backup records, each carrying the host's problem."""
    wedged = {'failed': True, 'wedged': True, 'msg': 'The dattobd driver looks wedged: reading /proc/datto-info '
              'did not finish within 60 s.'}
    rc, out = run_playbook(tmp_path, 'status.yml', hosts=['flaky'], faults={'info': {'result': wedged}},
                           *['-e', 'dattobd_status_state_dir=%s' % (tmp_path / 'state')])
    assert rc == 0, out
    report = _report(tmp_path, 'fleet-report.json')
    host = report['hosts'][0]
    assert host['status'] == 'error' and host['problem_kinds'] == ['collection_failed'], out
    assert host['problems'][0].startswith('driver wedged: The dattobd driver looks wedged'), host
    # dattobd_recover_wedged is report (the default): never reset, but the problem says what clears it
    assert not (tmp_path / 'faults' / 'flaky.sysrq').exists(), out
    assert 'only a hard reset clears it' in host['problems'][0], host
    assert '-e dattobd_recover_wedged=reset' in host['problems'][0], host
    assert [v['name'] for v in host['volumes']] == ['data'], host
    vol = host['volumes'][0]
    assert vol['problem_kinds'][0] == 'collection_failed' and 'driver wedged' in vol['problems'][0], vol
    assert 'tracker_lost' not in vol['problem_kinds'], vol  # unknown, not lost
    assert vol['blocks_read'] == 177 and vol['last_result'] == 'ok', vol


@pytest.mark.parametrize('playbook, module, report', [
    ('backup.yml', 'ping', 'backup-report.json'),
    ('status.yml', 'find', 'fleet-report.json'),
])
def test_report_written_when_the_only_host_fails_outside_the_cycle(tmp_path, playbook, module, report):
    """A failure Ansible counts against the host (not rescued) on the only host of a batch made
    ansible-playbook end the whole run before the report play: no summary, no report."""
    summary = tmp_path / 'summary.json'
    faults = {module: {'result': {'failed': True, 'msg': 'MODULE FAILURE: python went away'}}}
    rc, out = run_playbook(tmp_path, playbook, '-e', 'dattobd_backup_summary_file=%s' % summary,
                           hosts=['flaky'], faults=faults)
    assert rc == 2 if playbook == 'backup.yml' else rc == 0, out
    host = _report(tmp_path, report)['hosts'][0]
    assert host['name'] == 'flaky' and host['status'] == 'error', out
    assert 'python went away' in ' '.join(host['problems']), host
    if playbook == 'backup.yml':
        data = json.loads(summary.read_text())['summary']
        assert data['failed'] == ['flaky'] and data['no_result'] == [], out
        assert data['lines']['flaky'] == 'FAILED before the backup ran: MODULE FAILURE: python went away', out


def test_backup_playbook_one_module_call_per_host_whatever_the_volumes(tmp_path):
    """Issue 18: a host's whole cycle is one backup module call. Every module call on ``flaky`` (two
    volumes) is counted: the host runs 2 (ping, the backup, which also makes the image directories and
    installs the runner), and its recap shows as many tasks as the one of ``bad`` (one volume)."""
    count = {'nth': 0, 'result': {}}  # counts the calls of the module, fakes none
    faults = dict((name, count) for name in ('ping', 'file', 'backup', 'slurp', 'stat', 'command', 'copy', 'find',
                                             'info', 'setup'))
    rc, out = run_playbook(tmp_path, 'backup.yml', '-e', 'dattobd_backup_report=false', hosts=['bad', 'flaky'],
                           faults=faults)
    assert rc == 2, out  # both hosts fail: their devices do not exist
    counted = dict((p.name.split('.')[1], int(p.read_text())) for p in (tmp_path / 'faults').glob('flaky.*.count'))
    assert counted == {'ping': 1, 'backup': 1}, (counted, out)
    # (``changed`` left out: the two hosts share the image directory, the first one creates it)
    recap = dict((host, re.sub(r'changed=[0-9]+ +', '', line.strip()))
                 for host, line in re.findall(r'^(bad|flaky) +: (.*)$', out, re.M))
    assert recap['bad'] == recap['flaky'], (recap, out)
    assert 'FAILED at snapshot' in out and 'vol1' in out and 'vol2' in out, out


def test_backup_playbook_recap_shows_three_tasks_per_host_with_the_report(tmp_path):
    """Issue 18: with the fleet report on, a host that backs up runs 3 tasks (the ping, the role's argument
    check, the backup call, which returns the host's status for the report): no status, directory, runner or
    publishing task of its own. The report still holds what the status tasks collected."""
    count = {'nth': 0, 'result': {}}
    faults = dict((name, count) for name in ('ping', 'file', 'backup', 'slurp', 'stat', 'command', 'copy', 'find',
                                             'info', 'setup', 'runner'))
    rc, out = run_playbook(tmp_path, 'backup.yml', hosts=['good', 'flaky'], faults=faults, host_faults={'good': faults},
                           more_hosts={'good': {'ansible_connection': 'faulty', 'ansible_host': 'good',
                                                'ansible_become': False, 'ansible_python_interpreter': sys.executable,
                                                'dattobd_backup_volumes': []}})
    assert rc == 2, out  # flaky fails (its devices do not exist); good backs up its (no) volumes
    recap = dict(re.findall(r'^(good|flaky) +: (.*)$', out, re.M))
    assert re.match(r'ok=3 +changed=[01] +unreachable=0 +failed=0 ', recap['good']), (recap, out)
    counted = dict((p.name.split('.')[1], int(p.read_text())) for p in (tmp_path / 'faults').glob('good.*.count'))
    assert counted == {'ping': 1, 'backup': 1}, (counted, out)
    assert os.path.exists(str(tmp_path / 'runner' / 'good' / 'snapfleet-dattobd')), out  # installed by the call
    report = _report(tmp_path, 'backup-report.json')
    good = [h for h in report['hosts'] if h['name'] == 'good'][0]
    assert 'collection_failed' not in good['problem_kinds'], good  # the status came with the call
    flaky = [h for h in report['hosts'] if h['name'] == 'flaky'][0]
    assert sorted(v['name'] for v in flaky['volumes']) == ['vol1', 'vol2'], flaky
