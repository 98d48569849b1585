# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapshot module: data tables replaying the golden recordings of the real driver.

Each case gives the module arguments, the /proc/datto-info text before (and after) the run (golden
samples, or transcript fields), the recorded result of every dbdctl call (rc, stdout, stderr, dmesg
from ../shared/golden/transcript.jsonl), and the expected outcome: changed, the exact ordered
``actions`` and, for failures, a text the message must contain. The host (block devices, mounts) is
a fake mirroring the golden guest; the reload scripts are written for real into a temporary dir.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest


from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dbdctl, procinfo, tracker
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import snapshot_run
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DriverTimeout
from ansible_collections.snapfleet.dattobd.plugins.modules import snapshot

from ..module_utils.fakehost import DATTO0, MOUNTINFO, UUID_VDB, FakeHost, FakeStat, VDB
from ...conftest import GOLDEN
from .utils import patch_exit_fail, run_patched

DBDCTL = '/usr/bin/dbdctl'
INFO_DIR = os.path.join(GOLDEN, 'datto-info')
with open(os.path.join(GOLDEN, 'transcript.jsonl')) as _f:
    REC = dict((r['seq'], r) for r in (json.loads(line) for line in _f if line.strip()))


def sample(name, **replace):
    with open(os.path.join(INFO_DIR, 'datto-info.%s.json' % name)) as f:
        text = f.read()
    for old, new in replace.items():
        text = text.replace(old.replace('__', '"'), new)
    return text


EMPTY = sample('empty')
S3 = sample('state-3')                      # active snapshot, minor 0, /dev/vdb, cow /datto-relative.cow
S3_NEW = sample('state-3', **{'/datto-relative.cow': '/.datto_0_1'})
S2 = sample('state-2')                      # active incremental, cow /.datto0, seq 1
S3_ROT = sample('state-3', **{'/datto-relative.cow': '/.datto_0_2', '__seq_id__: 1': '"seq_id": 2'})
S3_ERR = sample('state-3-error')            # minor 3, error -27
S0 = sample('state-0')
S1 = sample('state-1')
S4 = sample('state-4')
S5 = sample('state-5')
S4_ERR = sample('state-4-error')
OTHER = EMPTY.replace('[\n\n\t]', '[\n\t\t{\n\t\t\t"minor": 0,\n\t\t\t"cow_file": "/.x",\n\t\t\t"block_device": '
                      '"/dev/vda1",\n\t\t\t"max_cache": 314572800,\n\t\t\t"state": 5\n\t\t}\n\t]')

OK = (0, '', '', [])


def rec(seq):
    r = REC[seq]
    return (r['rc'], r['stdout'], r['stderr'], r['dmesg'])


@pytest.fixture(autouse=True)
def no_busy_retries(monkeypatch):
    # The golden EBUSY records replay once each; the retry itself is tested in test_dbdctl.py and below.
    monkeypatch.setattr(dbdctl, 'BUSY_RETRY_DELAYS', ())


@pytest.fixture(autouse=True)
def patch_exit(monkeypatch):
    # Warnings reach Ansible through module.warn (as the task's warnings); mirror that in the result.
    patch_exit_fail(monkeypatch, collect_warnings=True)


class FakeDriver(object):
    """Replays /proc texts and recorded dbdctl results; records every argv."""

    def __init__(self, procs, results):
        self.procs = list(procs)
        self.results = list(results)
        self.argvs = []

    def read(self, timeout):
        text = self.procs[0] if len(self.procs) == 1 else self.procs.pop(0)
        if isinstance(text, Exception):
            raise text
        return procinfo.parse(text) if text is not None else procinfo.ProcInfo(loaded=False)

    def run(self, argv, timeout=None):
        self.argvs.append(list(argv))
        assert self.results, 'unexpected dbdctl call %r' % (argv,)
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        self._dmesg = result[3]
        return result[:3]

    def watcher(self):
        driver = self

        class W(object):
            def start(self):
                driver._dmesg = []

            def collect(self):
                return list(driver._dmesg)
        return W()


def run_module(args, driver, host=None, reload_dir=None, version='0.12.1', check_mode=False, diff=False):
    host = host or FakeHost()
    args = dict(args)
    args.setdefault('reload_dir', reload_dir)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True

    def ctx(module):
        return tracker.Context(module=module, host=host, runner=driver.run, watcher_factory=driver.watcher,
                               read_procinfo=driver.read, max_snap_devices=24, driver_version=version,
                               dbdctl_path=DBDCTL)

    saved = snapshot_run.make_context
    snapshot_run.make_context = ctx
    try:
        return run_patched(snapshot.main, args)
    finally:
        snapshot_run.make_context = saved


@pytest.fixture
def rdir(tmp_path):
    d = tmp_path / 'dla'
    d.mkdir(mode=0o700)
    return str(d)


def W(rdir, minor=0):
    return 'write %s/reload_snapfleet_%d' % (rdir, minor)


def R(rdir, minor=0):
    return 'remove %s/reload_snapfleet_%d' % (rdir, minor)


# name, args, procs (before[, after]), dbdctl results, expected actions (fn of rdir), changed, extra checks
SUCCESS = [
    ('setup snapshot on a mount point', dict(device='/data', state='snapshot'), [EMPTY, S3_NEW], [rec(120)],
     lambda d: [DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_0_1 0', W(d)], True,
     dict(minor=0, new_cow_file='/data/.datto_0_1', previous_cow_file=None)),
    ('setup with -c -f (seq 164)', dict(device='/dev/vdb', state='snapshot', cache_size=50, fallocate=20),
     [EMPTY, S3_NEW], [rec(164)],
     lambda d: [DBDCTL + ' setup-snapshot -c 50 -f 20 /dev/vdb /data/.datto_0_1 0', W(d)], True, {}),
    ('setup incremental by uuid path', dict(device='/dev/disk/by-uuid/' + UUID_VDB, state='incremental'),
     [EMPTY, S2], [rec(120), rec(135)],
     lambda d: [DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_0_1 0', DBDCTL + ' transition-to-incremental 0',
                W(d)], True, {}),
    ('snapshot -> incremental (seq 135)', dict(device='/data', state='incremental'), [S3, S2], [rec(135)],
     lambda d: [DBDCTL + ' transition-to-incremental 0', W(d)], True, dict(previous_cow_file=None)),
    ('incremental -> snapshot rotates the COW file (seq 143)', dict(device='/data', state='snapshot'),
     [S2, S3_ROT], [rec(143)],
     lambda d: [DBDCTL + ' transition-to-snapshot -f 25 /data/.datto_0_2 0', W(d)], True,
     dict(previous_cow_file='/data/.datto0', new_cow_file='/data/.datto_0_2')),
    ('incremental -> snapshot with cache re-applied', dict(device='/data', state='snapshot', cache_size=100,
                                                           fallocate=30),
     [S2, S3_ROT], [rec(143), rec(166)],
     lambda d: [DBDCTL + ' transition-to-snapshot -f 30 /data/.datto_0_2 0', DBDCTL + ' reconfigure -c 100 0',
                W(d)], True, {}),
    ('destroy (seq 160)', dict(device='/data', state='absent'), [S2, EMPTY], [rec(160)],
     lambda d: [DBDCTL + ' destroy 0'], True, dict(tracker=None)),
    ('absent and nothing there', dict(device='/data', state='absent'), [EMPTY], [], lambda d: [], False, {}),
    ('absent, driver not loaded', dict(device='/data', state='absent'), [None], [], lambda d: [], False, {}),
    ('failed tracker rebaselined (seq 175, 120)', dict(device='/data', state='snapshot', recover='rebaseline'),
     [S3_ERR, S3_NEW.replace('"minor": 0', '"minor": 3')], [rec(175), rec(120)],
     lambda d: [DBDCTL + ' destroy 3', DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_3_1 3', W(d, 3)], True,
     dict(rebaseline_required=True, minor=3)),
    ('failed tracker destroyed', dict(device='/data', state='absent'), [S3_ERR, EMPTY], [rec(175)],
     lambda d: [DBDCTL + ' destroy 3'], True, {}),
    ('already snapshot', dict(device='/data', state='snapshot', persist=False), [S3], [], lambda d: [], False, {}),
    ('already incremental', dict(device='/data', state='incremental', persist=False), [S2], [], lambda d: [],
     False, {}),
    ('cache differs on a steady tracker (seq 166)', dict(device='/data', state='incremental', cache_size=100,
                                                         persist=False),
     [S2, S2.replace('314572800', '100')], [rec(166)], lambda d: [DBDCTL + ' reconfigure -c 100 0'], True, {}),
    ('explicit minor and cow_file', dict(device='/data', state='snapshot', minor=5, cow_file='/data/sub/my.cow'),
     [EMPTY, S3_NEW.replace('"minor": 0', '"minor": 5')], [rec(176)],
     lambda d: [DBDCTL + ' setup-snapshot /dev/vdb /data/sub/my.cow 5', W(d, 5)], True, dict(minor=5)),
    ('lowest free minor', dict(device='/data', state='snapshot', persist=False), [OTHER, OTHER], [rec(120)],
     lambda d: [DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_1_1 1'], True, dict(minor=1)),
    ('unverified, same mode: nothing to do', dict(device='/data', state='incremental', persist=False), [S4], [],
     lambda d: [], False, {}),
]


@pytest.mark.parametrize('name, args, procs, results, actions, changed, extra', SUCCESS,
                         ids=[c[0] for c in SUCCESS])
def test_success(name, args, procs, results, actions, changed, extra, rdir):
    driver = FakeDriver(procs, results)
    result = run_module(args, driver, reload_dir=rdir)
    assert not result.get('failed'), result
    assert result['actions'] == actions(rdir)
    assert result['changed'] is changed
    assert [' '.join(a) for a in driver.argvs] == [a for a in actions(rdir) if a.startswith(DBDCTL)]
    assert driver.results == []
    for key, value in extra.items():
        assert result[key] == value, key


@pytest.mark.parametrize('name, args, procs, results, actions, changed, extra', SUCCESS,
                         ids=[c[0] for c in SUCCESS])
def test_check_mode_plans_exactly(name, args, procs, results, actions, changed, extra, rdir):
    driver = FakeDriver(procs[:1], [])
    result = run_module(args, driver, reload_dir=rdir, check_mode=True, diff=True)
    assert not result.get('failed'), result
    assert result['actions'] == actions(rdir)
    assert result['changed'] is changed
    assert driver.argvs == []
    assert os.listdir(rdir) == []
    if changed:
        assert result['diff']


def test_idempotent_second_run_and_reload_script(rdir):
    driver = FakeDriver([EMPTY, S3_NEW], [rec(120)])
    first = run_module(dict(device='/data', state='snapshot'), driver, reload_dir=rdir)
    assert first['changed'] is True
    script = open(os.path.join(rdir, 'reload_snapfleet_0')).read()
    assert 'reload-snapshot /dev/disk/by-uuid/%s /.datto_0_1 0' % UUID_VDB in script
    assert os.stat(os.path.join(rdir, 'reload_snapfleet_0')).st_mode & 0o777 == 0o700
    second = run_module(dict(device='/data', state='snapshot'), FakeDriver([S3_NEW], []), reload_dir=rdir)
    assert second['changed'] is False
    assert second['actions'] == []
    # incremental: the script follows the mode
    third = run_module(dict(device='/data', state='incremental'), FakeDriver([S3_NEW, S2.replace(
        '/.datto0', '/.datto_0_1')], [rec(135)]), reload_dir=rdir, diff=True)
    assert third['actions'] == [DBDCTL + ' transition-to-incremental 0', W(rdir)]
    assert 'reload-incremental' in open(os.path.join(rdir, 'reload_snapfleet_0')).read()
    assert isinstance(third['diff'], list) and third['diff'][0]['after']['mode'] == 'incremental'
    # absent: the script goes away
    fourth = run_module(dict(device='/data', state='absent'), FakeDriver([S2, EMPTY], [rec(160)]), reload_dir=rdir)
    assert fourth['actions'] == [DBDCTL + ' destroy 0', R(rdir)]
    assert os.listdir(rdir) == []


@pytest.mark.parametrize('given', ['/data', '/dev/vg-data/lv', '/dev/mapper/vg--data-lv'])
def test_a_logical_volume_is_named_by_its_mapper_name_in_the_reload_script(given, rdir):
    """Issue 20: /data on an LVM LV (given by mount point, /dev/<vg>/<lv> or /dev/mapper/<vg>-<lv>): the reload
    script names /dev/mapper/<vg>-<lv>, the one name the boot hook can activate, never the by-uuid link."""
    host = FakeHost(links={'/dev/mapper/vg--data-lv': '/dev/vdb', '/dev/vg-data/lv': '/dev/vdb'},
                    extra={'/dev/vg-data': FakeStat('dir', dev=1)},
                    files={'/sys/dev/block/254:16/dm/name': 'vg--data-lv\n'})
    result = run_module(dict(device=given, state='snapshot'), FakeDriver([EMPTY, S3_NEW], [rec(120)]), host=host,
                        reload_dir=rdir)
    assert not result.get('failed'), result
    assert result['actions'] == [DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_0_1 0', W(rdir)]
    script = open(os.path.join(rdir, 'reload_snapfleet_0')).read()
    assert 'reload-snapshot /dev/mapper/vg--data-lv /.datto_0_1 0' in script
    assert result['device']['stable_name'] == '/dev/mapper/vg--data-lv'


UNMOUNTED = FakeHost(mountinfo=MOUNTINFO.replace('40 21 254:16 / /data rw,relatime shared:20 - ext4 /dev/vdb rw\n',
                                                 ''))
READONLY = FakeHost(mountinfo=MOUNTINFO.replace('/data rw,relatime shared:20 - ext4 /dev/vdb rw',
                                                '/data ro,relatime shared:20 - ext4 /dev/vdb ro'))
SNAP_MOUNTED = FakeHost(mountinfo=MOUNTINFO + '60 21 252:0 / /mnt/snap ro - ext4 /dev/datto0 ro\n',
                        extra={'/dev/datto0': FakeStat('blk', rdev=DATTO0, dev=1)})

# name, args, procs, results, text in msg, expected dbdctl argvs run, host
FAILURES = [
    ('not a block device or mount point', dict(device='/etc/hostname'), [EMPTY], [],
     'neither a block device nor a mount point', [], None),
    ('directory that is not a mount point', dict(device='/root'), [EMPTY], [], 'not a mount point', [], None),
    ('filesystem not mounted', dict(device='/dev/vdb'), [EMPTY], [], 'is not mounted', [], UNMOUNTED),
    ('filesystem read-only', dict(device='/data'), [EMPTY], [], 'read-only', [], READONLY),
    ('COW on another filesystem', dict(device='/data', cow_dir='/root'), [EMPTY], [], 'not on the filesystem', [],
     None),
    ('COW path is a directory', dict(device='/data', cow_file='/data/adir'), [EMPTY], [], 'is a directory', [],
     None),
    ('COW file exists', dict(device='/data', cow_file='/data/sub'), [S2], [], 'is a directory', [], None),
    ('COW file relative', dict(device='/data', cow_file='rel.cow'), [EMPTY], [], 'absolute', [], None),
    ('COW dir missing', dict(device='/data', cow_dir='/data/nonexistent-dir'), [EMPTY], [], 'does not exist', [],
     None),
    ('minor out of range', dict(device='/data', minor=30), [EMPTY], [], 'out of range', [], None),
    ('minor taken by another device', dict(device='/data', minor=0), [OTHER], [], 'taken by another device', [],
     None),
    ('device tracked by another minor', dict(device='/data', minor=4), [S3], [], 'already tracked by minor 0', [],
     None),
    ('snapshot device mounted', dict(device='/data', state='incremental'), [S3], [],
     '/dev/datto0 is busy: it is mounted at /mnt/snap', [], SNAP_MOUNTED),
    ('snapshot device busy (seq 56)', dict(device='/data', state='incremental'), [S3], [rec(56)],
     '/dev/datto0 is busy', [[DBDCTL, 'transition-to-incremental', '0']], None),
    ('failed tracker, recover fail', dict(device='/data', state='snapshot'), [S3_ERR], [], 'EFBIG', [], None),
    ('failed unverified tracker', dict(device='/data', state='incremental'), [S4_ERR], [], 'ENOENT', [], None),
    ('dormant tracker cannot transition', dict(device='/dev/vdb', state='snapshot'), [S0], [], 'dormant', [],
     UNMOUNTED),
    ('dormant snapshot cannot go incremental', dict(device='/dev/vdb', state='incremental'), [S1], [], 'dormant',
     [], UNMOUNTED),
    ('unverified tracker cannot transition', dict(device='/dev/vdb', state='incremental'), [S5], [], 'unverified',
     [], UNMOUNTED),
    ('driver not loaded', dict(device='/data'), [None], [], 'not loaded', [], None),
    ('driver unloaded under us (seq 88)', dict(device='/data'), [EMPTY], [rec(88)], 'not loaded',
     [[DBDCTL, 'setup-snapshot', '/dev/vdb', '/data/.datto_0_1', '0']], None),
    ('auto_expand refused on 0.12.1', dict(device='/data', auto_expand=dict(step_size=512)), [EMPTY], [],
     'global lock', [], None),
    ('transition to snapshot in fail state (seq 117)', dict(device='/data', state='snapshot'), [S2], [rec(117)],
     'failed state', [[DBDCTL, 'transition-to-snapshot', '-f', '25', '/data/.datto_0_2', '0']], None),
    ('wedged driver', dict(device='/data', state='incremental'), [S3],
     [DriverTimeout('dbdctl transition-to-incremental 0 did not finish within 60 seconds.')], 'did not finish',
     [[DBDCTL, 'transition-to-incremental', '0']], None),
    ('wedged /proc read', dict(device='/data'), [DriverTimeout('Reading /proc/datto-info did not finish')], [],
     'did not finish', [], None),
    ('bad cow_name', dict(device='/data', cow_name='fixed.cow'), [EMPTY], [], 'lacks {seq}', [], None),
    ('negative cache size', dict(device='/data', cache_size=-1), [EMPTY], [], 'cache_size', [], None),
    ('zero fallocate', dict(device='/data', fallocate=0), [EMPTY], [], 'fallocate', [], None),
]


@pytest.mark.parametrize('name, args, procs, results, text, argvs, host', FAILURES, ids=[c[0] for c in FAILURES])
def test_failures_leave_host_unchanged(name, args, procs, results, text, argvs, host, rdir):
    driver = FakeDriver(procs, results)
    result = run_module(args, driver, host=host, reload_dir=rdir)
    assert result.get('failed') is True, result
    assert text in result['msg'], result['msg']
    assert 'Traceback' not in result['msg']
    assert driver.argvs == argvs
    assert os.listdir(rdir) == []


def test_rollback_when_a_later_step_fails(rdir):
    driver = FakeDriver([EMPTY], [rec(120), rec(137), rec(160)])
    result = run_module(dict(device='/data', state='incremental'), driver, reload_dir=rdir)
    assert result['failed'] is True
    assert 'not an active snapshot' in result['msg']
    assert [' '.join(a) for a in driver.argvs] == [
        DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_0_1 0', DBDCTL + ' transition-to-incremental 0',
        DBDCTL + ' destroy 0']
    assert result['actions'][-1] == DBDCTL + ' destroy 0'
    assert any('Rolled back' in w for w in result['warnings'])
    assert os.listdir(rdir) == []


def test_rollback_failure_is_reported(rdir):
    driver = FakeDriver([EMPTY], [rec(120), rec(137), rec(129)])
    result = run_module(dict(device='/data', state='incremental'), driver, reload_dir=rdir)
    assert result['failed'] is True
    assert any('Rollback failed' in w for w in result['warnings'])


def test_existing_cow_name_is_never_overwritten(rdir):
    host = FakeHost(extra={'/data/.datto_0_2': FakeStat('file', dev=VDB)})
    driver = FakeDriver([S2, S3_ROT], [rec(143)])
    result = run_module(dict(device='/data', state='snapshot', persist=False), driver, host=host, reload_dir=rdir)
    assert result['actions'] == [DBDCTL + ' transition-to-snapshot -f 25 /data/.datto_0_2.1 0']


def test_unexpected_error_is_not_a_traceback(rdir, monkeypatch):
    def boom(*a, **k):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(tracker, 'ensure', boom)
    result = run_module(dict(device='/data'), FakeDriver([EMPTY], []), reload_dir=rdir)
    assert result['failed'] is True
    assert 'Unexpected error' in result['msg']


def test_transient_busy_after_setup_is_retried(rdir, monkeypatch):
    """A udev probe of the new /dev/datto0 made the transition fail with EBUSY (seen in the reboot scenario)."""
    monkeypatch.setattr(dbdctl, 'BUSY_RETRY_DELAYS', (0.0,))
    monkeypatch.setattr(dbdctl, 'snapshot_mounted', lambda minor, host=None: False)
    driver = FakeDriver([EMPTY, S2], [rec(120), rec(56), rec(135)])
    result = run_module(dict(device='/data', state='incremental', persist=False), driver, reload_dir=rdir)
    assert result.get('failed') is not True, result
    assert [' '.join(a) for a in driver.argvs][:3] == [
        DBDCTL + ' setup-snapshot /dev/vdb /data/.datto_0_1 0', DBDCTL + ' transition-to-incremental 0',
        DBDCTL + ' transition-to-incremental 0']
    assert any(a.startswith('(EBUSY, /dev/datto0 not mounted') for a in result['actions'])


# --- stray COW files (issue 19): a sandboxed host whose /data holds COW-like files --------------

S2_NAMED = S2.replace('/.datto0', '/.datto_0_2')


class StrayHost(FakeHost):
    """/data with COW files; unlink removes the entry (the sandbox), EPERM for an immutable one."""

    def __init__(self, names, immutable=()):
        extra = dict(('/data/' + n, FakeStat('file', dev=VDB)) for n in names)
        extra['/data/sub/.datto_0_9'] = FakeStat('file', dev=VDB)
        extra['/data/.datto_0_8'] = FakeStat('dir', dev=VDB)
        super(StrayHost, self).__init__(extra=extra)
        self.immutable = set(immutable)
        self.unlinked = []

    def unlink(self, path):
        if path in self.immutable:
            raise OSError(1, 'Operation not permitted', path)
        del self.entries[path]
        self.unlinked.append(path)


def _stray_setup(tmp_path, rdir):
    # a reload script for another minor on the same device names .datto_0_4 (kept); a backup record
    # still needs .datto_0_5 (kept); .datto_0_3 and .datto_0_7 nobody names (stray)
    with open(os.path.join(rdir, 'reload_other'), 'w') as fh:
        fh.write('#!/bin/sh\n/usr/bin/dbdctl reload-incremental /dev/disk/by-uuid/%s /.datto_0_4 5\n' % UUID_VDB)
    state = tmp_path / 'records'
    state.mkdir()
    (state / 'data.img.json').write_text(json.dumps({'pending_cow_files': [{'path': '/data/.datto_0_5'}]}))
    return StrayHost(['.datto_0_2', '.datto_0_3', '.datto_0_4', '.datto_0_5', '.datto_0_7', 'notes.txt']), str(state)


@pytest.mark.parametrize('check_mode', [True, False])
def test_cleanup_removes_only_unnamed_cow_files(tmp_path, rdir, check_mode):
    host, state = _stray_setup(tmp_path, rdir)
    res = run_module(dict(device='/data', state='incremental', cleanup=True, persist=False, backup_state_dir=state),
                     FakeDriver([S2_NAMED], []), host=host, reload_dir=rdir, check_mode=check_mode)
    assert not res.get('failed'), res
    assert res['removed_cow_files'] == ['/data/.datto_0_3', '/data/.datto_0_7']
    assert res['actions'] == ['remove /data/.datto_0_3', 'remove /data/.datto_0_7']
    assert res['changed'] is True
    assert host.unlinked == ([] if check_mode else ['/data/.datto_0_3', '/data/.datto_0_7'])
    for kept in ('.datto_0_2', '.datto_0_4', '.datto_0_5', 'notes.txt', 'sub/.datto_0_9', '.datto_0_8'):
        assert '/data/' + kept in host.entries


def test_cleanup_never_removes_a_symlink_named_like_a_cow_file(tmp_path, rdir):
    """A link is looked at as itself (lstat), not as the regular file it points to."""
    host, state = _stray_setup(tmp_path, rdir)
    host.links['/data/.datto_0_6'] = '/data/notes.txt'
    res = run_module(dict(device='/data', state='incremental', cleanup=True, persist=False, backup_state_dir=state),
                     FakeDriver([S2_NAMED], []), host=host, reload_dir=rdir)
    assert res['removed_cow_files'] == ['/data/.datto_0_3', '/data/.datto_0_7']
    assert '/data/.datto_0_6' in host.links


def test_no_cleanup_by_default_and_idempotent(tmp_path, rdir):
    host, state = _stray_setup(tmp_path, rdir)
    res = run_module(dict(device='/data', state='incremental', persist=False, backup_state_dir=state),
                     FakeDriver([S2_NAMED], []), host=host, reload_dir=rdir)
    assert res['removed_cow_files'] == [] and res['changed'] is False and host.unlinked == []
    run_module(dict(device='/data', state='incremental', cleanup=True, persist=False, backup_state_dir=state),
               FakeDriver([S2_NAMED], []), host=host, reload_dir=rdir)
    res = run_module(dict(device='/data', state='incremental', cleanup=True, persist=False, backup_state_dir=state),
                     FakeDriver([S2_NAMED], []), host=host, reload_dir=rdir)
    assert res['removed_cow_files'] == [] and res['changed'] is False


def test_absent_removes_the_left_over_cow_file_too(tmp_path, rdir):
    """destroy of a dormant tracker leaves its COW file (#369-like): state=absent removes it with the strays."""
    host, state = _stray_setup(tmp_path, rdir)
    res = run_module(dict(device='/data', state='absent', persist=False, backup_state_dir=state),
                     FakeDriver([S2_NAMED, EMPTY], [rec(135)]), host=host, reload_dir=rdir)
    assert not res.get('failed'), res
    assert res['removed_cow_files'] == ['/data/.datto_0_2', '/data/.datto_0_3', '/data/.datto_0_7']
    assert res['actions'][0] == DBDCTL + ' destroy 0'
    assert '/data/.datto_0_4' in host.entries and '/data/.datto_0_5' in host.entries


def test_cleanup_reports_a_file_it_cannot_remove(tmp_path, rdir):
    host, state = _stray_setup(tmp_path, rdir)
    host.immutable.add('/data/.datto_0_7')
    res = run_module(dict(device='/data', state='incremental', cleanup=True, persist=False, backup_state_dir=state),
                     FakeDriver([S2_NAMED], []), host=host, reload_dir=rdir)
    assert res['failed'] is True
    assert '/data/.datto_0_7: Operation not permitted (the driver holds it open' in res['msg']
    assert host.unlinked == ['/data/.datto_0_3']
