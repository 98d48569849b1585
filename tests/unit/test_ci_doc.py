# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/ci.md: its example pipelines parse, name real playbooks and variables, and their command
lines work: build the tarball, install it into an empty collections path, run the backup playbook
from there (a local host without volumes, and an unreachable one), read the reports back."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

import ansible_collections.snapfleet.dattobd as collection

junitparser = pytest.importorskip('junitparser')

ROOT = os.path.dirname(collection.__file__) if getattr(collection, '__file__', None) else list(collection.__path__)[0]
BIN = os.path.dirname(sys.executable)


def pipelines():
    with open(os.path.join(ROOT, 'docs', 'ci.md'), encoding='utf-8') as handle:
        text = handle.read()
    docs = [yaml.safe_load(block) for block in re.findall(r'```yaml\n(.*?)```', text, re.S)]
    gitlab = [d for d in docs if 'fleet-backup' in d][0]
    github = [d for d in docs if 'jobs' in d][0]
    return gitlab, github


def playbook_variables(name):
    with open(os.path.join(ROOT, 'playbooks', name), encoding='utf-8') as handle:
        return set(re.findall(r'\b(dattobd_[a-z_]+)', handle.read()))


def test_pipelines_parse_and_name_real_playbooks_and_variables():
    gitlab, github = pipelines()
    job = gitlab['fleet-backup']
    assert job['rules'] == [{'if': '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert job['artifacts']['when'] == 'always'
    trigger = github.get('on', github.get(True))  # YAML 1.1 reads the key "on" as true
    assert trigger['schedule'][0]['cron'] and 'workflow_dispatch' in trigger
    steps = github['jobs']['backup']['steps']
    commands = ' '.join(job['before_script'] + job['script'] + [s.get('run', '') for s in steps])
    for playbook in re.findall(r'snapfleet\.dattobd\.(\w+)', commands):
        assert os.path.exists(os.path.join(ROOT, 'playbooks', playbook + '.yml')), playbook
    known = playbook_variables('backup.yml')
    for var in re.findall(r'-e (dattobd_\w+)=', commands):
        assert var in known, var
    # the JUnit artifact is where the playbook writes it (report dir + default name)
    assert job['artifacts']['reports']['junit'] == 'dattobd-report/backup-report.xml'
    assert "backup-report.md" in [s for s in steps if s.get('name') == 'Job summary'][0]['run']
    assert [s for s in steps if s.get('name') == 'Keep the reports'][0]['if'] == 'always()'


def _expand(text, env):
    return re.sub(r'\$\{?(\w+)\}?', lambda m: env[m.group(1)], text)


@pytest.mark.skipif(not os.path.exists(os.path.join(BIN, 'ansible-galaxy')), reason='ansible-galaxy not installed')
def test_pipeline_command_lines_run(tmp_path):
    """The GitHub job's own command lines (shell variables expanded, run as argument lists)."""
    dummy, github = pipelines()
    steps = dict((s['name'], s) for s in github['jobs']['backup']['steps'] if 'name' in s)
    work = tmp_path / 'workspace'
    shutil.copytree(ROOT, str(work), ignore=shutil.ignore_patterns('.git', 'tests', '__pycache__', '*.pyc', 'build'))
    key = tmp_path / 'id_backup'
    key.write_text('not a key\n')
    os.chmod(str(key), 0o600)
    env = dict(os.environ, GITHUB_WORKSPACE=str(work), RUNNER_TEMP=str(tmp_path), PWD=str(work),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_NOCOLOR='1', ANSIBLE_HOST_KEY_CHECKING='False',
               PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    # like a fresh CI runner: no other copy of the collection anywhere (this test's own staging
    # puts one on the Python path, which ansible-galaxy would find "already installed")
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    env.pop('PYTHONPATH', None)
    env['ANSIBLE_COLLECTIONS_SCAN_SYS_PATH'] = 'false'
    env['HOME'] = str(tmp_path)
    for line in steps['Build and install the collection']['run'].strip().splitlines():
        argv = [_expand(a, env) for a in shlex.split(line)]
        argv = [x for a in argv for x in ((sorted(glob.glob(os.path.join(str(work), a))) or [a]) if '*' in a else [a])]
        proc = subprocess.run(argv, cwd=str(work), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout.decode()
    installed = work / 'collections' / 'ansible_collections' / 'snapfleet' / 'dattobd'
    assert (installed / 'MANIFEST.json').exists()
    assert (installed / 'plugins' / 'plugin_utils' / 'templates' / 'fleet_report.html.j2').exists()
    (work / 'inventory.yml').write_text(yaml.safe_dump({'all': {'hosts': {
        'good': {'ansible_connection': 'local', 'ansible_become': False, 'ansible_python_interpreter': sys.executable,
                 'dattobd_backup_volumes': []},
        'offline': {'ansible_host': '127.0.0.1', 'ansible_port': 1,
                    'ansible_ssh_common_args': '-o ConnectTimeout=3 -o BatchMode=yes'},
    }, 'vars': {'dattobd_backup_state_dir': str(tmp_path / 'state')}}}))
    run = steps['Back up the fleet']
    env.update(dict((k, _expand(str(v).replace('${{ github.workspace }}', str(work)), env))
                    for k, v in run['env'].items()))
    argv = [_expand(a, env) for a in shlex.split(run['run'])]
    proc = subprocess.run(argv, cwd=str(work), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=600, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 2, out  # documented: a host was unreachable, the others are backed up
    report_dir = work / 'dattobd-report'
    xml = junitparser.JUnitXml.fromfile(str(report_dir / 'backup-report.xml'))
    cases = dict(((c.classname, c.name), c) for suite in xml for c in suite)
    assert cases[('offline', 'host')].result[0].type == 'unreachable'
    assert not [c for (host, dummy2), c in cases.items() if host == 'good' and c.result
                and c.result[0].type in ('unreachable', 'failed', 'not_run')]
    summary = (report_dir / 'backup-report.md').read_text()
    assert summary.startswith('## snapfleet.dattobd backup report: ') and '| offline |' in summary
    report = json.loads((report_dir / 'backup-report.json').read_text())
    assert report['schema'] == 'snapfleet.dattobd/fleet-report/v2' and report['summary']['reached'] == 1
