# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The runner as one file (hostapp.py): a zipapp of the library files cli.py needs that runs under a
plain, isolated python3 with no Ansible anywhere on its path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hostapp

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'plugins', 'module_utils',
                   '_dattobd')
PREFIX = 'ansible_collections/snapfleet/dattobd/plugins/module_utils/_dattobd/'
TIMEOUT = 600  # the machine may be loaded; the archive compiles ~40 files at each start


@pytest.fixture(scope='module')
def app(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('app') / 'snapfleet-dattobd')
    with open(path, 'wb') as f:
        f.write(hostapp.build(sys.executable))
    os.chmod(path, 0o755)
    return path


def run_plain(argv, cwd):
    """``python3 -I -S argv``: no site-packages (where ansible is), no PYTHON* variables, empty environment."""
    return subprocess.run([sys.executable, '-I', '-S'] + argv, capture_output=True, text=True, check=False,
                          cwd=cwd, env={'PATH': '/usr/bin:/bin', 'LC_ALL': 'C'}, timeout=TIMEOUT)


def test_the_plain_interpreter_has_no_ansible(tmp_path):
    proc = run_plain(['-c', 'import ansible'], str(tmp_path))
    assert proc.returncode != 0 and 'ansible' in proc.stderr


def test_the_archive_holds_what_cli_imports_under_the_package_path():
    names = hostapp.closure()
    assert {'cli', 'backup', 'backup_ops', 'tracker', 'procinfo', 'options', 'errors'} <= set(names)
    assert 'hostapp' not in names and 'moduleapi' not in names
    for name, source in names.items():
        assert hostapp.imports_of(source) <= set(names), name
    data = hostapp.build('/usr/bin/python3')
    assert data.startswith(b'#!/usr/bin/python3 -I\n')
    archive = zipfile.ZipFile(io.BytesIO(data))
    listed = archive.namelist()
    assert '__main__.py' in listed and PREFIX + '__init__.py' in listed
    assert 'ansible_collections/__init__.py' in listed
    assert sorted(n[len(PREFIX):-3] for n in listed if n.startswith(PREFIX) and n != PREFIX + '__init__.py') == \
        sorted(names)
    with open(os.path.join(LIB, 'cli.py'), 'rb') as f:
        assert archive.read(PREFIX + 'cli.py') == f.read()


def test_the_same_library_makes_the_same_bytes():
    assert hostapp.build('/usr/bin/python3') == hostapp.build('/usr/bin/python3')
    assert hostapp.build('/usr/bin/python3') != hostapp.build('/usr/libexec/platform-python')


@pytest.mark.parametrize('python', ['python3', '/usr/bin/python3 -S', '/usr/bin/py\nthon', '', None, '/a b'])
def test_an_interpreter_a_shebang_cannot_carry_is_refused(python):
    with pytest.raises(Exception, match='python must be an absolute path'):
        hostapp.build(python)


def test_a_file_missing_from_the_payload_is_named():
    def read(name):
        if name == 'wedge':
            return hostapp.library_source('no_such_file')
        return hostapp.library_source(name)
    with pytest.raises(Exception, match='no_such_file.py is missing from the module payload'):
        hostapp.build('/usr/bin/python3', read)


def test_it_runs_help_and_status_without_ansible(app, tmp_path):
    proc = run_plain([app, '--help'], str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('usage: snapfleet-dattobd') and proc.stderr == ''
    proc = run_plain([app, 'status', '--json', '--state-dir', str(tmp_path / 'state')], str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc['records'] == [] and doc['state_dirs'] == [str(tmp_path / 'state')]
    assert set(doc['driver']) >= {'loaded', 'trackers', 'wedged'}


def test_a_failure_without_ansible_is_one_line(app, tmp_path):
    etc = tmp_path / 'etc'
    etc.mkdir(mode=0o700)
    conf = etc / 'backup.json'
    conf.write_text(json.dumps({'format': 1, 'volumes': [{'device': '/dev/null', 'image': 'x.img'}]}))
    os.chmod(str(conf), 0o600)
    proc = run_plain([app, 'backup', '--config', str(conf)], str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count('\n') == 1 and 'image must be an absolute path' in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr


def test_a_cycle_refused_by_its_readiness_checks_without_ansible(app, tmp_path):
    """The real cycle (real Ops, no fake) runs its readiness checks and refuses: exit 1, one line, no record."""
    etc = tmp_path / 'etc'
    etc.mkdir(mode=0o700)
    conf = etc / 'backup.json'
    state = tmp_path / 'state'
    conf.write_text(json.dumps({'format': 1, 'defaults': {'state_dir': str(state), 'metrics': False},
                                'volumes': [{'device': '/dev/null', 'image': str(tmp_path / 'img' / 'x.img')}]}))
    os.chmod(str(conf), 0o600)
    proc = run_plain([app, 'backup', '--config', str(conf)], str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count('\n') == 1 and proc.stderr.startswith('snapfleet-dattobd: backup failed for x.img ('), \
        proc.stderr
    assert 'Nothing was changed' in proc.stderr
    assert not state.exists()
