# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The destroy playbook finds the backup record of each volume under the module's names.

Runs on localhost without a driver (destroying a tracker is then a no-op): ``/b/a/b.img`` has a
record under the new name, ``/b/x/y.img`` one under the old name that says it is its own, and the
old name of ``/b/a/b.img`` holds the record of another image (``/b/a_b.img``), which must stay.
The pending COW files of the records removed are removed as well.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk

from .test_playbook_flow import COLLECTIONS_PATH, PLAYBOOK, ROOT
from .test_playbook_flow import pytestmark as _needs_ansible_playbook

pytestmark = _needs_ansible_playbook


def write(path, data):
    with open(str(path), 'w') as handle:
        json.dump(data, handle)
    os.chmod(str(path), 0o600)


def test_destroy_removes_the_records_of_its_volumes_only(tmp_path):
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    cows = tmp_path / 'cows'
    cows.mkdir()
    for name in ('new', 'old', 'other'):
        (cows / name).write_text('')
    write(state / bk.record_name('/b/a/b.img'), {'image': '/b/a/b.img', 'pending_cow_files': [
        {'path': str(cows / 'new'), 'seq_id': 3}]})
    write(state / bk.legacy_record_name('/b/x/y.img'), {'image': '/b/x/y.img', 'pending_cow_files': [
        {'path': str(cows / 'old'), 'seq_id': 3}]})
    assert bk.legacy_record_name('/b/a/b.img') == bk.legacy_record_name('/b/a_b.img')
    write(state / bk.legacy_record_name('/b/a_b.img'), {'image': '/b/a_b.img', 'pending_cow_files': [
        {'path': str(cows / 'other'), 'seq_id': 3}]})
    inventory = tmp_path / 'inventory.json'
    inventory.write_text(json.dumps({'all': {'hosts': {'here': {
        'ansible_connection': 'local', 'ansible_become': False, 'ansible_python_interpreter': sys.executable,
        'dattobd_destroy_state_dir': str(state),
        'dattobd_destroy_volumes': [{'device': '/nonexistent-snapfleet-a', 'image': '/b/a/b.img'},
                                    {'device': '/nonexistent-snapfleet-x', 'image': '/b/x/y.img'}]}}}}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_RETRY_FILES_ENABLED='False')
    exe = PLAYBOOK if os.path.exists(PLAYBOOK) else shutil.which('ansible-playbook')
    proc = subprocess.run([exe, '-i', str(inventory), os.path.join(ROOT, 'playbooks', 'destroy.yml'),
                           '-e', 'dattobd_hosts=here'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=env, cwd=str(tmp_path), timeout=600, check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    assert proc.returncode == 0, out
    assert os.listdir(str(state)) == [bk.legacy_record_name('/b/a_b.img')]  # the other image's record stays
    assert sorted(os.listdir(str(cows))) == ['other']
