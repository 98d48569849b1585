# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine role's controller-side source inspection (tasks/source_inspect.yml) run by ansible-playbook.

Small fake dattobd trees stand in for the real source: the role packs a directory into a
deterministic tarball in its controller cache, reads the version from src/dattobd.h and refuses a
tree that is not dattobd's. Two different source directories must get two tarballs (one shared
name let concurrent runs overwrite each other's), and packing the same tree twice must give the same
hash.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

import pytest

import ansible_collections.snapfleet.dattobd as collection

ROOT = os.path.dirname(collection.__file__) if getattr(collection, '__file__', None) else list(collection.__path__)[0]
COLLECTIONS_PATH = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(ROOT))))
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
EXE = PLAYBOOK if os.path.exists(PLAYBOOK) else shutil.which('ansible-playbook')

pytestmark = pytest.mark.skipif(not EXE, reason='ansible-playbook not installed')

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Inspect
      ansible.builtin.include_role:
        name: snapfleet.dattobd.engine
        tasks_from: source_inspect.yml
    - name: Report
      ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ {'version': __dattobd_engine_src_version, 'hash': __dattobd_engine_src_hash,
                      'archive': __dattobd_engine_src_archive} | to_json }}"
"""


def fake_tree(path, version):
    os.makedirs(os.path.join(str(path), 'src'))
    with open(os.path.join(str(path), 'src', 'dattobd.h'), 'w') as fh:
        fh.write('#ifndef DATTOBD_H_\n#define DATTOBD_VERSION "%s"\n#endif\n' % version)
    for name in ('src/genconfig.sh', 'Makefile'):
        with open(os.path.join(str(path), name), 'w') as fh:
            fh.write('# fake\n')
    return str(path)


def inspect(tmp_path, source, version=''):
    play = tmp_path / 'play.yml'
    play.write_text(PLAY)
    out = tmp_path / ('out-%d.json' % len(list(tmp_path.glob('out-*.json'))))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_RETRY_FILES_ENABLED='False')
    extra = {'dattobd_engine_source': source, 'dattobd_engine_version': version,
             'dattobd_engine_cache_dir': str(tmp_path / 'cache'), 'out': str(out),
             'ansible_python_interpreter': sys.executable}
    proc = subprocess.run([EXE, '-i', 'localhost,', str(play), '-e', json.dumps(extra)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                          timeout=300, check=False)
    text = proc.stdout.decode('utf-8', 'replace')
    return proc.returncode, text, (json.loads(out.read_text()) if out.exists() else None)


def test_two_source_directories_get_their_own_tarballs(tmp_path):
    a = fake_tree(tmp_path / 'a', '0.12.1')
    b = fake_tree(tmp_path / 'b', '0.12.2')
    rc, text, first = inspect(tmp_path, a)
    assert rc == 0, text
    rc, text, second = inspect(tmp_path, b)
    assert rc == 0, text
    assert (first['version'], second['version']) == ('0.12.1', '0.12.2')
    assert first['archive'] != second['archive'] and first['hash'] != second['hash']
    # the first tarball is still the first tree's
    out = subprocess.run(['tar', '-xOf', first['archive'], './src/dattobd.h'], stdout=subprocess.PIPE, check=True)
    assert b'"0.12.1"' in out.stdout
    # packing again gives the same bytes, and no temporary file is left behind
    rc, text, again = inspect(tmp_path, a)
    assert rc == 0, text
    assert again == first
    assert sorted(os.listdir(str(tmp_path / 'cache' / 'sources'))) == sorted(
        os.path.basename(x['archive']) for x in (first, second))


def test_not_a_dattobd_tree_is_refused(tmp_path):
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'README').write_text('not dattobd\n')
    rc, text, res = inspect(tmp_path, str(other))
    assert rc != 0 and res is None
    assert 'is not a dattobd source tree' in text


def test_wanted_version_must_match_the_source(tmp_path):
    rc, text, res = inspect(tmp_path, fake_tree(tmp_path / 'a', '0.12.1'), version='0.11.10')
    assert rc != 0 and res is None
    assert 'holds dattobd 0.12.1 but dattobd_engine_version is 0.11.10' in ' '.join(text.split())
