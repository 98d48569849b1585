# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Validate, then act: a backup run rejected by a parameter or a readiness check changes nothing.

Each case runs the module's ``main()`` (real argument parsing, real library, real files) in a
sandbox directory that holds the image directory, the state directory and the boot check, with
pre and post hooks that would create a canary file. The sandbox is listed (paths, modes, sizes,
mtimes, content hashes) before and after: a rejected run must leave it exactly as it was (no
record, no lock, no state directory, no hook run) and still fail with a clear message, in check
mode as well. Only the tracker (no dattobd driver here) and, where a case needs a resolvable
device, the device facts are replaced.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import shutil
import stat

import pytest


from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import tracker as tracker_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.plugins.modules import backup
from .utils import run_exiting

TOUCH = shutil.which('touch') or '/usr/bin/touch'


def tree(root):
    """Every path under ``root`` (itself included) with its mode, size, mtime and content hash."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in [None] + sorted(dirs) + sorted(files):
            path = base if name is None else os.path.join(base, name)
            st = os.lstat(path)
            entry = (stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_uid)
            if stat.S_ISREG(st.st_mode):
                with open(path, 'rb') as handle:
                    entry += (hashlib.sha256(handle.read()).hexdigest(),)
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            out[os.path.relpath(path, root)] = entry
    return out


class SandboxOps(bk.Ops):
    """The real operations, but no driver: the tracker is either the real library on a driver that
    is not loaded (or loaded, without trackers), or a stand-in that can take a snapshot."""

    def __init__(self, driver='fake', facts=None, size=1 << 20):
        loaded = driver != 'absent'
        ctx = tracker_mod.Context(read_procinfo=lambda timeout: procinfo.ProcInfo(loaded=loaded, version='0.12.1',
                                                                                  devices=[]),
                                  max_snap_devices=16, driver_version='0.12.1')
        super(SandboxOps, self).__init__(timeout=5, tracker_ctx=ctx)
        self.driver = driver
        self.facts = facts
        self.size = size
        self.ensured = []

    def tracker_ensure(self, device, state, check_mode=False, **kwargs):
        self.ensured.append((state, check_mode))
        if self.driver != 'fake':
            return super(SandboxOps, self).tracker_ensure(device, state, check_mode=check_mode, **kwargs)
        if not check_mode:
            raise AssertionError('a rejected run reached the tracker')
        return dict(changed=True, actions=['dbdctl setup-snapshot'], minor=0, previous_cow_file=None,
                    rebaseline_required=False, tracker=None, diff={'before': {}, 'after': {}}, warnings=[])

    def device_facts(self, device):
        if self.facts is None:
            return super(SandboxOps, self).device_facts(device)
        return dict(self.facts)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    root = tmp_path / 'sandbox'
    root.mkdir()
    backup_dir = root / 'backup'
    backup_dir.mkdir(mode=0o700)
    os.chmod(str(backup_dir), 0o700)
    (root / 'boot-check.json').write_text('{}')
    monkeypatch.chdir(str(root))  # a relative path would land here
    return root


def base_args(root):
    canary = str(root / 'canary')
    return {
        'device': '/dev/vdb', 'image': str(root / 'backup' / 'data.img'), 'state_dir': str(root / 'state'),
        'boot_check_path': str(root / 'boot-check.json'), 'timeout': 5,
        'pre_hooks': [{'argv': [TOUCH, canary + '-pre']}], 'post_hooks': [{'argv': [TOUCH, canary + '-post']}],
        'verify_hooks': [{'argv': [TOUCH, canary + '-verify']}],
    }


OTHER_RDEV = 0xFFFF0  # a device number no sandbox file lives on
FACTS = {'rdev': OTHER_RDEV, 'size': 1 << 20, 'names': ['/dev/vdb']}


def _image_is_dir(root):
    os.mkdir(str(root / 'backup' / 'data.img'), 0o700)


def _world_writable(root):
    os.chmod(str(root / 'backup'), 0o777)


def _state_open(root):
    (root / 'state').mkdir()
    os.chmod(str(root / 'state'), 0o755)


def _state_is_file(root):
    (root / 'state').write_text('')
    os.chmod(str(root / 'state'), 0o600)


def _state_under_a_file(root):
    (root / 'file').write_text('')
    os.chmod(str(root / 'file'), 0o600)
    STATE_UNDER_A_FILE['state_dir'] = str(root / 'file' / 'sub' / 'state')


def _private_state(root):
    (root / 'state').mkdir(mode=0o700)
    os.chmod(str(root / 'state'), 0o700)
    return str(root / 'state')


def _foreign_record(root):
    state = _private_state(root)
    image = str(root / 'backup' / 'data.img')
    path = os.path.join(state, bk.record_name(image))
    with open(path, 'w') as handle:
        json.dump({'image': str(root / 'backup' / 'other.img'), 'seq_id': 3}, handle)
    os.chmod(path, 0o600)


def _ambiguous_old_record(root):
    state = _private_state(root)
    image = str(root / 'backup' / 'data.img')
    path = os.path.join(state, bk.legacy_record_name(image))
    with open(path, 'w') as handle:
        json.dump({'seq_id': 3}, handle)
    os.chmod(path, 0o600)


def _on_the_volume(root):
    FACTS_HERE['rdev'] = os.stat(str(root / 'backup')).st_dev


FACTS_HERE = dict(FACTS)
STATE_UNDER_A_FILE = {}  # filled by its setup: the sandbox path is known then

# id, extra module args, sandbox setup, SandboxOps kwargs, fragment of the failure message
CASES = [
    ('nonexistent-device', {'device': '/nonexistent-snapfleet-dev'}, None, {'driver': 'loaded'},
     'device /nonexistent-snapfleet-dev does not exist'),
    ('image-is-a-directory', {}, _image_is_dir, {'facts': FACTS}, 'exists and is not a regular file'),
    ('relative-image', {'image': 'backup/data.img'}, None, {'facts': FACTS}, 'image must be an absolute path'),
    ('relative-state-dir', {'state_dir': 'state'}, None, {'facts': FACTS}, 'state_dir must be an absolute path'),
    ('relative-boot-check', {'boot_check_path': 'boot-check.json'}, None, {'facts': FACTS},
     'boot_check_path must be an absolute path'),
    ('relative-cow-dir', {'cow_dir': 'cow'}, None, {'facts': FACTS}, 'cow_dir must be an absolute path'),
    ('relative-dbdctl', {'dbdctl_path': 'bin/dbdctl'}, None, {'facts': FACTS}, 'dbdctl_path must be an absolute path'),
    ('minor-negative', {'minor': -1}, None, {'facts': FACTS}, 'minor must be between 0 and 255, got -1'),
    ('minor-too-big', {'minor': 256}, None, {'facts': FACTS}, 'minor must be between 0 and 255, got 256'),
    ('timeout-zero', {'timeout': 0}, None, {'facts': FACTS}, 'timeout must be between 1 and 86400, got 0'),
    ('cache-size-negative', {'cache_size': -1}, None, {'facts': FACTS}, 'cache_size must be between'),
    ('fallocate-zero', {'fallocate': 0}, None, {'facts': FACTS}, 'fallocate (MiB) must be between 1'),
    ('cow-name-without-seq', {'cow_name': '.datto_{minor}'}, None, {'facts': FACTS}, 'lacks {seq}'),
    ('hook-timeout-zero', {'post_hooks': [{'argv': [TOUCH, 'x'], 'timeout': 0}]}, None, {'facts': FACTS},
     'post_hooks[0].timeout must be a positive integer'),
    ('hook-relative-command', {'verify_hooks': [{'argv': ['touch', 'x']}]}, None, {'facts': FACTS},
     'verify_hooks[0].argv[0] must be an absolute path'),
    ('sample-budget-above-one', {'verify_sample_budget': 1.5}, None, {'facts': FACTS},
     'verify_sample_budget must be a number 0..1'),
    ('sample-budget-unicode', {'verify_sample_budget': u'\u0660.\u0661'}, None, {'facts': FACTS},
     'verify_sample_budget must be a number written in ASCII digits'),
    ('sample-budget-nan', {'verify_sample_budget': 'nan'}, None, {'facts': FACTS}, 'verify_sample_budget'),
    ('sample-min-zero', {'verify_sample_min': 0}, None, {'facts': FACTS}, 'verify_sample_min must be an integer >= 1'),
    ('sample-max-below-min', {'verify_sample_min': 100, 'verify_sample_max': 10}, None, {'facts': FACTS},
     'verify_sample_max (10) is smaller than verify_sample_min (100)'),
    ('sample-seed-too-big', {'verify_sample_seed': 2 ** 32}, None, {'facts': FACTS}, 'verify_sample_seed'),
    ('full-every-cycles-negative', {'full_verify_every_cycles': -1}, None, {'facts': FACTS},
     'full_verify_every_cycles must be an integer >= 0'),
    ('full-every-days-unicode', {'full_verify_every_days': u'\u0661'}, None, {'facts': FACTS},
     'full_verify_every_days must be a number written in ASCII digits'),
    ('full-every-days-infinite', {'full_verify_every_days': '1e400'}, None, {'facts': FACTS},
     'full_verify_every_days'),
    ('driver-not-loaded', {}, None, {'driver': 'absent', 'facts': FACTS}, 'The dattobd driver is not loaded'),
    ('destination-world-writable', {}, _world_writable, {'facts': FACTS}, 'others can access'),
    ('destination-missing', {'image': '/nonexistent-snapfleet-dir/data.img'}, None, {'facts': FACTS},
     'The image directory /nonexistent-snapfleet-dir does not exist'),
    ('image-on-the-volume', {}, _on_the_volume, {'facts': FACTS_HERE}, 'is on the filesystem being backed up'),
    ('not-enough-space', {}, None, {'facts': dict(FACTS, size=1 << 62)}, 'Not enough free space'),
    ('state-dir-open-to-others', {}, _state_open, {'facts': FACTS}, 'state directory'),
    ('state-dir-is-a-file', {}, _state_is_file, {'facts': FACTS}, 'is not a directory'),
    ('state-dir-under-a-file', STATE_UNDER_A_FILE, _state_under_a_file, {'facts': FACTS}, 'cannot be created'),
    ('record-of-another-image', {}, _foreign_record, {'facts': FACTS}, 'belongs to'),
    ('ambiguous-old-record', {}, _ambiguous_old_record, {'facts': FACTS}, 'refusing to guess'),
]


def run_module(capsys, args, ops):
    return run_exiting(capsys, backup.main, args, ops_factory=lambda module: ops)


@pytest.mark.parametrize('check_mode', [False, True], ids=['run', 'check'])
@pytest.mark.parametrize('case_id, extra, setup, ops_kw, fragment', CASES, ids=[c[0] for c in CASES])
def test_rejected_run_changes_nothing(sandbox, capsys, case_id, extra, setup, ops_kw, fragment, check_mode):
    if setup is not None:
        setup(sandbox)
    args = dict(base_args(sandbox), **extra)
    if check_mode:
        args['_ansible_check_mode'] = True
    ops = SandboxOps(**ops_kw)
    before = tree(str(sandbox))
    code, out = run_module(capsys, args, ops)
    after = tree(str(sandbox))
    assert code == 1 and out['failed'] is True, out
    assert fragment in out['msg'], out['msg']
    assert 'Traceback' not in out['msg']
    assert after == before, 'the sandbox changed: %s' % sorted(set(after.items()) ^ set(before.items()))
    assert not [k for k in after if k.startswith('canary')]
    assert out.get('hooks', []) == []
    assert (out.get('record') or None) is None
    assert ('snapshot', False) not in ops.ensured  # never reached the real snapshot step


def test_check_mode_reports_the_same_decision(sandbox, capsys):
    """A run and a check of the same refused request fail with the same message and step."""
    for extra in ({'minor': -1}, {'image': str(sandbox / 'backup' / 'x' / 'data.img')}):
        args = dict(base_args(sandbox), **extra)
        code, real = run_module(capsys, args, SandboxOps(facts=FACTS))
        code2, check = run_module(capsys, dict(args, _ansible_check_mode=True), SandboxOps(facts=FACTS))
        assert code == code2 == 1
        assert real['msg'] == check['msg'] and real.get('step') == check.get('step')


class StartedOps(SandboxOps):
    """A cycle that starts (snapshot taken) and then fails in its copy."""

    def tracker_ensure(self, device, state, check_mode=False, **kwargs):
        self.ensured.append((state, check_mode))
        if state == 'snapshot':
            return dict(changed=True, actions=['dbdctl setup-snapshot'], minor=0, previous_cow_file=None,
                        rebaseline_required=False, new_cow_file='/data/.datto_0_1',
                        tracker={'minor': 0, 'seq_id': 1, 'uuid': 'ab' * 16, 'failed': False},
                        diff={'before': {}, 'after': {}}, warnings=[])
        return dict(changed=True, actions=['dbdctl transition-to-incremental 0'])

    def size_of(self, path):
        return self.size

    def full_copy(self, src, dst, sparse='filesystem'):
        raise DattobdError('read error on %s' % src)

    def untracked_runs(self, path, minor):
        return []


def test_failure_after_the_start_is_recorded(sandbox, capsys):
    """The pre-hook ran, the snapshot was taken, the copy failed: that run IS recorded (and locked)."""
    args = base_args(sandbox)
    args['verify_hooks'] = []
    code, out = run_module(capsys, args, StartedOps(facts=FACTS))
    assert code == 1 and out['step'] == 'copy'
    assert out['image_state'] == 'untouched' and out['next_run'] == 'full'
    assert 'read error on /dev/datto0' in out['msg']
    assert (sandbox / 'canary-pre').exists() and (sandbox / 'canary-post').exists()
    image = str(sandbox / 'backup' / 'data.img')
    state = sandbox / 'state'
    assert sorted(os.listdir(str(state))) == sorted([bk.record_name(image), bk.lock_name(image)])
    assert out['record'] == str(state / bk.record_name(image))
    record = json.loads((state / bk.record_name(image)).read_text())
    assert record['last_result'] == 'failed' and record['step'] == 'copy' and record['image'] == image
    assert stat.S_IMODE(os.stat(str(state)).st_mode) == 0o700
