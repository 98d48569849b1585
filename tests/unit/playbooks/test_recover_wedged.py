# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23: the status and backup playbooks reset a host whose driver is wedged, only when asked
(``dattobd_recover_wedged: reset``).

Every host here answers through the faulty connection (connection_plugins/faulty.py), which never lets
a write to /proc/sysrq-trigger run: it records it (``<host>.sysrq``) and plays the reset (the host is
gone for a second, or for good, then answers with a new boot id). Three playbook runs, each shared by
the tests of its module-scoped fixture: status, backup and backup in check mode.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import sys

import pytest

from .test_playbook_flow import pytestmark as _needs_ansible_playbook
from .test_playbook_flow import run_playbook

pytestmark = _needs_ansible_playbook

WEDGE = {'since': '2026-12-05T10:15:02Z', 'reason': 'reading /proc/datto-info did not finish within 60 seconds',
         'boot_id': 'b0', 'call': 'reading /proc/datto-info', 'path': '/run/snapfleet-dattobd/driver-wedged.json',
         'clears': 'a hard reset (a clean reboot hangs): see docs/troubleshooting.md'}
# the info module on a wedged driver: no failure, driver_wedged and no tracker
INFO_WEDGED = {'changed': False, 'loaded': True, 'driver_version': '0.12.1', 'trackers': [], 'driver_wedged': WEDGE,
               'summary': 'dattobd 0.12.1 is wedged', 'kernel_gate': None, 'reload': {'drift': [], 'in_sync': None}}
# the info module on a healthy driver (the real module takes a minute on a busy test machine: never run here)
INFO_OK = dict(INFO_WEDGED, driver_wedged=None, summary='dattobd 0.12.1 loaded, 0 trackers',
               reload={'drift': [], 'in_sync': True})
# the backup module refusing a volume on a wedged driver
BACKUP_WEDGED = {'failed': True, 'step': 'driver', 'driver_wedged': WEDGE, 'next_run': 'full',
                 'next_full_reason': 'driver wedged', 'image_state': 'untouched',
                 'msg': 'The dattobd driver is wedged since 2026-12-05T10:15:02Z; no driver call was made.'}


def backup_wedged(volumes):
    """The backup module's result, one call for the host's ``volumes``, each refused on the wedged driver."""
    entries = [dict(BACKUP_WEDGED, name=v['name'], device=v['device'], image=v['image'], volume=i, changed=False)
               for i, v in enumerate(volumes)]
    return {'failed': True, 'changed': False, 'volumes': entries,
            'msg': '0 of %d volume(s) backed up; failed: ...' % len(entries)}


SYNC_OK = {'changed': True, 'rc': 0, 'stdout': '', 'stderr': '', 'cmd': ['timeout', '60', 'sync']}
SYNC_TIMED_OUT = dict(SYNC_OK, rc=124)
# a fault that never fires but counts the calls of the module (<host>.<module>.count)
COUNT = {'nth': 0, 'result': {}}


def faulty(name, **hostvars):
    return name, dict({'ansible_connection': 'faulty', 'ansible_host': name, 'ansible_become': False,
                       'ansible_python_interpreter': sys.executable, 'dattobd_backup_volumes': []}, **hostvars)


def sysrq_writes(tmp, host):
    path = tmp / 'faults' / ('%s.sysrq' % host)
    return len(path.read_text().splitlines()) if path.exists() else 0


def calls(tmp, host, module):
    path = tmp / 'faults' / ('%s.%s.count' % (host, module))
    return int(path.read_text()) if path.exists() else 0


def hosts_of(report):
    return dict((h['name'], h) for h in report['hosts'])


@pytest.fixture(scope='module')
def status_run(tmp_path_factory):
    """status.yml on: flaky (wedged, reset, back after 1 s), gone (wedged, reset, never back; its sync times out),
    steady (healthy, reset asked) and typo (a bad dattobd_recover_wedged). (The default, report, on a wedged
    host: test_playbook_flow.test_status_playbook_wedged_host_keeps_its_volumes.)"""
    tmp = tmp_path_factory.mktemp('status')
    more = dict([faulty('flaky', dattobd_recover_wedged='reset'),
                 faulty('gone', dattobd_recover_wedged='reset', dattobd_recover_wedged_timeout=2),
                 faulty('steady', dattobd_recover_wedged='reset'),
                 faulty('typo', dattobd_recover_wedged='rest')])
    faults = {'flaky': {'info': [{'nth': 1, 'result': INFO_WEDGED}, {'nth': 2, 'result': INFO_OK}],
                        'command': {'nth': 1, 'result': SYNC_OK}},
              'gone': {'info': {'nth': 1, 'result': INFO_WEDGED}, 'command': {'nth': 1, 'result': SYNC_TIMED_OUT},
                       'reset': {'after': 'down'}},
              'steady': {'info': {'nth': 1, 'result': INFO_OK}, 'command': COUNT},
              'typo': {'info': COUNT, 'ping': COUNT, 'find': COUNT}}
    rc, out = run_playbook(tmp, 'status.yml', '-e', 'dattobd_status_state_dir=%s' % (tmp / 'state'),
                           hosts=sorted(more), more_hosts=more, host_faults=faults)
    report = json.loads((tmp / 'dattobd-report' / 'fleet-report.json').read_text())
    return tmp, rc, out, hosts_of(report)


def test_status_reset_writes_the_trigger_once_and_reports_the_state_after(status_run):
    tmp, rc, out, hosts = status_run
    assert sysrq_writes(tmp, 'flaky') == 1, out
    assert calls(tmp, 'flaky', 'command') == 1 and calls(tmp, 'flaky', 'info') == 2, out  # the sync; info after
    host = hosts['flaky']
    recovery = host['recovery']
    assert recovery['action'] == 'reset' and recovery['sync'] == 'done', host
    assert 'reset by the playbook at %s' % recovery['at'] in recovery['msg'], recovery
    assert 'back after %d s with a new boot id' % recovery['seconds'] in recovery['msg'], recovery
    assert 'trackers lost: the next backup of each volume is full' in recovery['msg'], recovery
    assert 'driver_reset' in host['problem_kinds'] and recovery['msg'] in host['problems'], host
    # the state after the reset: info read again (no longer wedged), the volume of the records still listed
    assert host['driver_wedged'] is None and 'driver_wedged' not in host['problem_kinds'], host
    assert [v['name'] for v in host['volumes']] == ['data'], host


def test_status_reset_host_that_does_not_come_back_is_unreachable(status_run):
    tmp, rc, out, hosts = status_run
    assert sysrq_writes(tmp, 'gone') == 1, out
    host = hosts['gone']
    assert host['status'] == 'unreachable' and host['recovery']['action'] == 'not_back', host
    assert 'did not answer within 2 s after (unreachable)' in host['problems'][0], host
    assert 'sync did not finish within 60 s' in host['problems'][0], host


def test_status_reset_never_resets_a_healthy_host(status_run):
    tmp, rc, out, hosts = status_run
    assert sysrq_writes(tmp, 'steady') == 0 and calls(tmp, 'steady', 'command') == 0, out
    assert hosts['steady']['recovery'] is None, hosts['steady']


def test_status_bad_value_is_refused_before_anything_runs_on_the_host(status_run):
    tmp, rc, out, hosts = status_run
    assert rc == 2, out  # the refused host failed (the others were reported)
    assert calls(tmp, 'typo', 'info') == calls(tmp, 'typo', 'find') == 0 and sysrq_writes(tmp, 'typo') == 0, out
    host = hosts['typo']
    assert host['status'] == 'error', host
    assert 'refused before anything ran: dattobd_recover_wedged must be report or reset (got rest)' in \
        host['problems'][0], host


@pytest.fixture(scope='module')
def backup_run(tmp_path_factory):
    """backup.yml on flaky (its two volumes refused on a wedged driver, reset asked, back after 1 s) and steady
    (healthy, reset asked)."""
    tmp = tmp_path_factory.mktemp('backup')
    volumes = [{'device': '/nonexistent-snapfleet-dev%d' % i, 'name': 'vol%d' % i,
                'image': str(tmp / 'img' / ('flaky%d.img' % i))} for i in (1, 2)]
    more = dict([faulty('flaky', dattobd_recover_wedged='reset', dattobd_backup_state_dir=str(tmp / 'state-flaky'),
                        dattobd_backup_volumes=volumes),
                 faulty('steady', dattobd_recover_wedged='reset')])
    faults = {'flaky': {'backup': [{'nth': 1, 'result': backup_wedged(volumes)}],
                        'info': [{'nth': 1, 'result': INFO_WEDGED}, {'nth': 2, 'result': INFO_OK}],
                        'command': {'nth': 1, 'result': SYNC_OK}},
              'steady': {'info': {'nth': 1, 'result': INFO_OK}, 'command': COUNT}}
    summary = tmp / 'summary.json'
    rc, out = run_playbook(tmp, 'backup.yml', '-e', 'dattobd_backup_summary_file=%s' % summary,
                           hosts=sorted(more), more_hosts=more, host_faults=faults)
    report = json.loads((tmp / 'dattobd-report' / 'backup-report.json').read_text())
    return tmp, rc, out, json.loads(summary.read_text())['summary'], hosts_of(report)


def test_backup_reset_host_takes_no_backup_in_the_same_run(backup_run):
    tmp, rc, out, summary, hosts = backup_run
    assert sysrq_writes(tmp, 'flaky') == 1 and sysrq_writes(tmp, 'steady') == 0, out
    assert calls(tmp, 'flaky', 'backup') == 1, out  # one call for the host's volumes, none after the reset
    assert rc == 2 and summary['failed'] == ['flaky'] and summary['ok'] == ['steady'], out
    line = summary['lines']['flaky']
    assert 'reset by the playbook at' in line and 'back after' in line, line
    assert line.endswith('no backup this run: the next run re-baselines each volume'), line
    host = hosts['flaky']
    assert host['recovery']['action'] == 'reset' and 'driver_reset' in host['problem_kinds'], host
    assert host['driver_wedged'] is None, host  # the status collected after the reset


@pytest.fixture(scope='module')
def check_run(tmp_path_factory):
    """backup.yml --check on flaky (wedged, reset asked) and wedged (wedged, the default: report)."""
    tmp = tmp_path_factory.mktemp('check')
    volume = {'device': '/nonexistent-snapfleet-dev', 'name': 'vol', 'image': str(tmp / 'img' / 'vol.img')}
    more = dict([faulty('flaky', dattobd_recover_wedged='reset', dattobd_backup_volumes=[volume]),
                 faulty('wedged', dattobd_backup_volumes=[volume])])
    faults = dict((name, {'backup': {'nth': 1, 'result': backup_wedged([volume])}, 'command': COUNT})
                  for name in more)
    rc, out = run_playbook(tmp, 'backup.yml', '--check', hosts=sorted(more), more_hosts=more, host_faults=faults)
    return tmp, rc, out


def test_backup_check_mode_says_it_would_reset_and_does_not(check_run):
    tmp, rc, out = check_run
    assert sysrq_writes(tmp, 'flaky') == 0 and calls(tmp, 'flaky', 'command') == 0, out
    assert 'check mode: would reset the host (sync for at most 60 s, then sysrq b' in out, out


def test_backup_report_mode_never_resets_and_says_what_clears_it(check_run):
    tmp, rc, out = check_run
    assert sysrq_writes(tmp, 'wedged') == 0 and calls(tmp, 'wedged', 'command') == 0, out
    line = [l for l in out.splitlines() if '"msg": "wedged: ' in l]
    assert len(line) == 1 and 'not reset: only a hard reset clears it' in line[0], out
    assert '-e dattobd_recover_wedged=reset has this playbook do it' in line[0], out
