# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role snapfleet.dattobd.systemd: the post-boot checker against golden /proc/datto-info samples."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import stat
import struct

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as rl

from ..conftest import load_script

HERE = os.path.dirname(os.path.abspath(__file__))
ROLE = os.path.join(HERE, '..', '..', '..', 'roles', 'systemd')
GOLDEN = os.path.join(HERE, '..', '..', 'fixtures', 'golden', 'datto-info')


bc = load_script(os.path.join(ROLE, 'files', 'boot_check.py'), 'snapfleet_boot_check')


def golden(name):
    with open(os.path.join(GOLDEN, 'datto-info.%s.json' % name)) as f:
        return f.read()


VDB = (254, 16)
ROOT = (254, 1)
MOUNT_DATA_RW = '36 1 254:16 / /data rw,relatime shared:2 - ext4 /dev/vdb rw\n'
MOUNT_DATA_RO = '36 1 254:16 / /data ro,relatime shared:2 - ext4 /dev/vdb ro\n'
MOUNT_ROOT_RW = '22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n'


def devnum(path):
    return {'/dev/vdb': VDB, '/dev/disk/by-uuid/data': VDB, '/dev/vda1': ROOT}.get(path)


def script(minor=0, mode='snapshot', bdev='/dev/disk/by-uuid/data', cow='/.dattoBOOT', name=None):
    text = rl.render(minor, bdev, cow, mode)
    return dict(name=name or 'reload_snapfleet_%d' % minor, path='/etc/datto/dla/reload_snapfleet_%d' % minor,
                parsed=bc.parse_script(text), ours=True)


def no_cow(path):
    return None


# (name, /proc sample, scripts, mountinfo, boot log, expected status, rebaseline)
CASES = [
    ('unverified snapshot, fs mounted rw: #422', 'state-5', [script()], MOUNT_DATA_RW, None, 'unverified', True),
    ('unverified snapshot, fs not mounted: pending', 'state-5', [script()], '', None, 'pending', False),
    ('unverified snapshot, fs mounted ro: pending', 'state-5', [script()], MOUNT_DATA_RO, None, 'pending', False),
    ('unverified incremental mounted rw', 'state-4', [script(mode='incremental', cow='/.dattoR')], MOUNT_DATA_RW,
     None, 'unverified', True),
    ('failed after reload ENOENT', 'state-4-error', [script(mode='incremental', cow='/.dattoR')], MOUNT_DATA_RW,
     None, 'failed', True),
    ('failed unverified snapshot', 'state-5-error', [script()], MOUNT_DATA_RW, None, 'failed', True),
    ('failed active snapshot EFBIG', 'state-3-error', [script(minor=3)], MOUNT_DATA_RW, None, 'failed', True),
    ('active snapshot', 'state-3', [script()], MOUNT_DATA_RW, None, 'ok', False),
    ('active incremental', 'state-2', [script(mode='incremental')], MOUNT_DATA_RW, None, 'ok', False),
    ('dormant incremental', 'state-0', [script(mode='incremental')], '', None, 'ok', False),
    ('dormant snapshot', 'state-1', [script()], '', None, 'ok', False),
    ('script without tracker, fs rw', 'empty', [script()], MOUNT_DATA_RW, None, 'missing', True),
    ('script without tracker, fs unmounted', 'empty', [script()], '', None, 'missing', True),
    ('script without tracker, device gone', 'empty', [script(bdev='/dev/disk/by-uuid/gone')], '', None,
     'missing', True),
    ('module not loaded', None, [script()], MOUNT_DATA_RW, None, 'missing', True),
    ('reloaded after boot (initramfs log says it did not)', 'state-2', [script(mode='incremental')], MOUNT_DATA_RW,
     'version 1\nmodprobe ok\nmounted /dev/vda1\nscript reload_snapfleet_0 rc 255\ndone 1 1\n', 'late', True),
    ('reloaded in the initramfs', 'state-2', [script(mode='incremental')], MOUNT_DATA_RW,
     'version 1\nmodprobe ok\nmounted /dev/vda1\nscript reload_snapfleet_0 rc 0\ndone 1 0\n', 'ok', False),
    ('failed reload in initramfs, no tracker', 'empty', [script()], MOUNT_DATA_RW,
     'version 1\nmodprobe ok\nscript reload_snapfleet_0 rc 255\ndone 1 1\n', 'missing', True),
]


@pytest.mark.parametrize('name, sample, scripts, mountinfo, log, status, rebaseline', CASES, ids=[c[0] for c in CASES])
def test_classify_golden(name, sample, scripts, mountinfo, log, status, rebaseline):
    proc = golden(sample) if sample else None
    report = bc.check(proc, scripts, mountinfo, log, devnum=devnum, cow_reader=no_cow, boot_id='b')
    vol = report['volumes'][0]
    assert vol['status'] == status, vol['message']
    assert vol['rebaseline_required'] is rebaseline
    assert report['ok'] is (status in ('ok', 'pending'))
    assert report['rebaseline_required'] == ([vol['minor']] if rebaseline else [])
    assert report['driver_loaded'] is (sample is not None)
    assert vol['message'].startswith('minor %d ' % vol['minor'])
    json.dumps(report)


def test_messages_say_what_to_do():
    r = bc.check(golden('state-5'), [script()], MOUNT_DATA_RW, None, devnum=devnum, cow_reader=no_cow)
    assert '#422' in r['volumes'][0]['message'] and 'dattobd_systemd_force_mount2' in r['volumes'][0]['message']
    r = bc.check(golden('state-4-error'), [script(mode='incremental')], '', None, devnum=devnum, cow_reader=no_cow)
    assert r['volumes'][0]['error_name'] == 'ENOENT'
    assert 'does not exist' in r['volumes'][0]['message']
    r = bc.check(golden('empty'), [script()], MOUNT_DATA_RW, None, devnum=devnum, cow_reader=no_cow)
    assert 'mounted writable without tracking' in r['volumes'][0]['message']
    r = bc.check(None, [script()], '', None, devnum=devnum, cow_reader=no_cow)
    assert 'not loaded' in r['volumes'][0]['message']
    r = bc.check(golden('state-2'), [script(mode='snapshot')], MOUNT_DATA_RW, None, devnum=devnum, cow_reader=no_cow)
    assert r['volumes'][0]['status'] == 'ok' and 'Warning' in r['volumes'][0]['message']


def test_unclean_cow_einval_message():
    proc = golden('state-5').replace('"state": 5', '"error": -22,\n\t\t\t"state": 5')
    r = bc.check(proc, [script()], MOUNT_DATA_RW, None, devnum=devnum, cow_reader=no_cow)
    assert r['volumes'][0]['status'] == 'failed'
    assert 'unclean shutdown' in r['volumes'][0]['message']


def test_bind_mounts_do_not_hide_the_real_mount_point():
    """Found in the VM: under PrivateTmp, /tmp (a bind of a root subdirectory) is listed first."""
    mountinfo = ('40 22 254:1 /tmp/systemd-private-x/tmp /tmp rw,nosuid - ext4 /dev/vda1 rw\n'
                 '41 22 254:1 /etc /etc ro - ext4 /dev/vda1 rw\n' + MOUNT_ROOT_RW)
    r = bc.check(golden('empty'), [script(bdev='/dev/vda1')], mountinfo, None, devnum=devnum, cow_reader=no_cow)
    vol = r['volumes'][0]
    assert (vol['mount_point'], vol['mounted_writable']) == ('/', True)
    assert '/ is mounted writable' in vol['message']
    r = bc.check(golden('state-5'), [script(bdev='/dev/vda1')], mountinfo.replace(' / / rw,', ' / / ro,'), None,
                 devnum=devnum, cow_reader=no_cow)
    assert r['volumes'][0]['mount_point'] == '/' and r['volumes'][0]['status'] == 'unverified'


def test_undeclared_and_unknown_scripts():
    unknown = dict(name='reload_x', path='/etc/datto/dla/reload_x', parsed=None, ours=False)
    r = bc.check(golden('state-3'), [unknown], '', None, devnum=devnum, cow_reader=no_cow)
    assert r['undeclared_trackers'] == [0]
    assert r['volumes'][0]['status'] == 'unknown'
    assert r['ok'] is True


def test_missing_tracker_reads_cow_header(tmp_path):
    """A missing tracker's COW header tells the backup flow which image series is tainted."""
    mnt = tmp_path / 'data'
    mnt.mkdir()
    header = struct.pack('<IIQQQ16sQQ', 4776, 3, 0, 0, 7, bytes(range(16)), 1, 5)
    (mnt / '.dattoBOOT').write_bytes(header + b'\0' * 4032)
    mountinfo = '36 1 254:16 / %s rw,relatime - ext4 /dev/vdb rw\n' % str(mnt).replace(' ', '\\040')
    r = bc.check(golden('empty'), [script()], mountinfo, None, devnum=devnum)
    assert r['volumes'][0]['cow_header'] == dict(uuid=bytes(range(16)).hex(), seq_id=7, clean=True, index_only=True)
    (mnt / '.dattoBOOT').write_bytes(b'\0' * 64)
    assert bc.read_cow_header(str(mnt / '.dattoBOOT')) is None
    (mnt / '.dattoBOOT').write_bytes(b'\0' * 10)
    assert bc.read_cow_header(str(mnt / '.dattoBOOT')) is None
    assert bc.read_cow_header(str(mnt / 'absent')) is None


def test_parse_proc_tolerates_unescaped_paths():
    text = golden('state-3').replace('"cow_file": "/', '"cow_file": "/we"ird\\')
    trackers = bc.parse_proc(text)
    assert trackers[0]['state'] == 3 and trackers[0]['cow_file'].startswith('/we"ird')
    assert trackers[0]['uuid'] and trackers[0]['seq_id'] == 1
    err = bc.parse_proc(golden('state-3-error').replace('"cow_file": "/', '"cow_file": "/a"b'))
    assert err[3]['error'] == -27
    with pytest.raises(bc.CheckError):
        bc.parse_proc('garbage')
    assert bc.parse_proc(golden('empty')) == {}
    assert bc.parse_proc(None) is None


def test_parse_script_round_trip():
    for kw in (dict(minor=3, block_device='/dev/disk/by-uuid/a b', cow_relative="/it's", mode='incremental',
                    cache_size=4096),
               dict(minor=255, block_device='/dev/mapper/vg-lv', cow_relative='/$(x)', mode='snapshot')):
        parsed = bc.parse_script(rl.render(**kw))
        assert parsed == (kw['mode'], kw['block_device'], kw['cow_relative'], kw['minor'])
    assert bc.parse_script('#!/bin/sh\ndbdctl reload-snapshot -c1 /dev/x /c 1\n') == ('snapshot', '/dev/x', '/c', 1)
    assert bc.parse_script('#!/bin/sh\ndbdctl reload-snapshot /dev/x /c 01\n') is None
    assert bc.parse_script('#!/bin/sh\ndbdctl reload-snapshot "/dev/x\n') is None
    assert bc.parse_script('#!/bin/sh\necho reload-nothing\n') is None


def test_mountinfo_and_boot_log_parsing():
    mounts = bc.parse_mountinfo(MOUNT_ROOT_RW + 'bad line\n36 1 x:y / /z rw - a b rw\n'
                                + '37 1 8:1 / /with\\040space ro - ext4 /dev/sda1 ro\n')
    assert mounts == [dict(dev=ROOT, mount_point='/', writable=True, whole=True),
                      dict(dev=(8, 1), mount_point='/with space', writable=False, whole=True)]
    log = bc.parse_boot_log('version 1\nmodprobe failed\nscript a rc x\nroot device missing /dev/x\n\n')
    assert log == dict(present=True, modprobe='failed', scripts={}, done=False,
                       problems=['root device missing /dev/x'], refused={}, skipped={}, activated=[], active=[])
    assert bc.parse_boot_log(None)['present'] is False


def test_device_number(tmp_path):
    assert bc.device_number(str(tmp_path)) is None
    assert bc.device_number('/nonexistent') is None
    for dev in ('/dev/loop0', '/dev/vda', '/dev/sda'):
        if os.path.exists(dev) and stat.S_ISBLK(os.stat(dev).st_mode):
            st = os.stat(dev)
            assert bc.device_number(dev) == (os.major(st.st_rdev), os.minor(st.st_rdev))
            break


# --- end to end: files, exit status, state file -----------------------------------------------

@pytest.fixture
def host(tmp_path):
    dla = tmp_path / 'dla'
    dla.mkdir()
    proc = tmp_path / 'datto-info'
    mountinfo = tmp_path / 'mountinfo'
    mountinfo.write_text(MOUNT_ROOT_RW)
    state = tmp_path / 'state' / 'sub' / 'boot-check.json'
    args = ['--proc', str(proc), '--scripts-dir', str(dla), '--mountinfo', str(mountinfo),
            '--boot-log', str(tmp_path / 'none.log'), '--boot-id', str(tmp_path / 'boot_id'), '--state-file', str(state)]
    (tmp_path / 'boot_id').write_text('abc-boot\n')
    return dict(dla=dla, proc=proc, state=state, args=args, tmp=tmp_path)


def test_main_ok_and_failure(host, capsys, monkeypatch):
    monkeypatch.setenv('JOURNAL_STREAM', '8:1')
    rl.ensure(0, '/dev/vda1', '/.datto', 'incremental', directory=str(host['dla']))
    host['proc'].write_text(golden('state-2').replace('/dev/vdb', '/dev/vda1').replace('/.datto0', '/.datto'))
    assert bc.main(host['args']) == 0
    err = capsys.readouterr().err
    assert '<6>ok: minor 0' in err and 'every declared tracker is in place' in err
    report = json.loads(host['state'].read_text())
    assert report['schema'] == 1 and report['boot_id'] == 'abc-boot' and report['ok'] is True
    assert stat.S_IMODE(os.stat(str(host['state'])).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(host['state'].parent)).st_mode) == 0o700
    assert os.listdir(str(host['state'].parent)) == ['boot-check.json']

    host['proc'].write_text(golden('empty'))
    (host['tmp'] / 'none.log').write_text('version 1\nmodprobe ok\nno root device\n')
    assert bc.main(host['args'] + ['--json']) == 1
    out, err = capsys.readouterr()
    assert '<3>missing: minor 0' in err and '<4>initramfs: no root device' in err and 'need a full backup' in err
    assert json.loads(out)['rebaseline_required'] == [0]
    assert json.loads(host['state'].read_text())['ok'] is False

    host['proc'].write_text(golden('state-3') + golden('state-2'))  # two extra trackers, undeclared
    host['proc'].write_text(golden('state-3').replace('"minor": 0', '"minor": 7'))
    assert bc.main(host['args'] + ['--no-state']) == 1
    assert 'trackers without a reload script' in capsys.readouterr().err


def test_main_settle_waits_for_a_pending_volume_to_be_mounted(host, capsys, monkeypatch):
    """A reloaded tracker whose (nofail) mount comes later: --settle looks again until it is active."""
    rl.ensure(0, '/dev/vda1', '/.datto', 'incremental', directory=str(host['dla']))
    unverified = golden('state-2').replace('/dev/vdb', '/dev/vda1').replace('/.datto0', '/.datto').replace(
        '"state": 2', '"state": 4')
    active = golden('state-2').replace('/dev/vdb', '/dev/vda1').replace('/.datto0', '/.datto')
    mountinfo = host['tmp'] / 'mountinfo'
    mountinfo.write_text('')
    clock = {'t': 0.0, 'sleeps': []}
    monkeypatch.setattr(bc, '_now', lambda: clock['t'])

    def sleep(seconds):
        clock['sleeps'].append(seconds)
        clock['t'] += seconds
        if clock['t'] >= 6:  # the mount happens, the driver sees it
            mountinfo.write_text(MOUNT_ROOT_RW)
            host['proc'].write_text(active)
    monkeypatch.setattr(bc, '_pause', sleep)
    host['proc'].write_text(unverified)
    assert bc.main(host['args'] + ['--settle', '60']) == 0
    report = json.loads(host['state'].read_text())
    assert [v['status'] for v in report['volumes']] == ['ok']
    assert clock['sleeps'] == [2.0, 2.0, 2.0]
    assert 'still wait' not in capsys.readouterr().err

    # never mounted: gives up at the deadline, reports pending (not a failure), says so
    clock.update(t=0.0, sleeps=[])
    mountinfo.write_text('')
    host['proc'].write_text(unverified)
    monkeypatch.setattr(bc, '_pause', lambda s: (clock['sleeps'].append(s), clock.update(t=clock['t'] + s)))
    assert bc.main(host['args'] + ['--settle', '5']) == 0
    assert [v['status'] for v in json.loads(host['state'].read_text())['volumes']] == ['pending']
    assert clock['sleeps'] == [2.0, 2.0, 1.0]
    assert 'minors [0] still wait for their filesystem after 5 s' in capsys.readouterr().err

    # a missing tracker: the check waits to see whether its filesystem gets mounted (written untracked)
    clock.update(t=0.0, sleeps=[])
    monkeypatch.setattr(bc, 'device_number', lambda path: (254, 1) if path == '/dev/vda1' else None)
    host['proc'].write_text(golden('empty'))

    def mount_later(seconds):
        clock['sleeps'].append(seconds)
        clock['t'] += seconds
        if clock['t'] >= 4:
            mountinfo.write_text(MOUNT_ROOT_RW)
    monkeypatch.setattr(bc, '_pause', mount_later)
    assert bc.main(host['args'] + ['--settle', '60']) == 1
    vol = json.loads(host['state'].read_text())['volumes'][0]
    assert (vol['status'], vol['mounted_writable'], clock['sleeps']) == ('missing', True, [2.0, 2.0])

    # without --settle: one look, no sleep
    host['proc'].write_text(unverified)
    mountinfo.write_text('')
    clock.update(t=0.0, sleeps=[])
    assert bc.main(host['args']) == 0 and clock['sleeps'] == []
    assert bc.main(host['args'] + ['--settle', '-1']) == 2
    assert '--settle must be >= 0' in capsys.readouterr().err


def test_main_settle_gives_a_mount_the_driver_has_not_seen_yet_a_moment(host, capsys, monkeypatch):
    """A nofail mount that ends while the check looks shows in mountinfo before dattobd's hook on the mount
    call turns the tracker active (seen on the real driver: /data-xfs in the reboot scenario). The check looks
    again for UNVERIFIED_GRACE seconds before it calls the tracker unverified; one that stays so is reported."""
    rl.ensure(0, '/dev/vda1', '/.datto', 'incremental', directory=str(host['dla']))
    base = golden('state-2').replace('/dev/vdb', '/dev/vda1').replace('/.datto0', '/.datto')
    unverified, active = base.replace('"state": 2', '"state": 4'), base
    monkeypatch.setattr(bc, 'device_number', lambda path: (254, 1) if path == '/dev/vda1' else None)
    clock = {'t': 0.0, 'sleeps': []}
    monkeypatch.setattr(bc, '_now', lambda: clock['t'])

    def driver_sees_it_at(when):
        def sleep(seconds):
            clock['sleeps'].append(seconds)
            clock['t'] += seconds
            if when is not None and clock['t'] >= when:
                host['proc'].write_text(active)
        return sleep

    host['proc'].write_text(unverified)  # mounted writable (the fixture's mountinfo), not yet seen
    monkeypatch.setattr(bc, '_pause', driver_sees_it_at(4))
    assert bc.main(host['args'] + ['--settle', '120']) == 0
    assert [v['status'] for v in json.loads(host['state'].read_text())['volumes']] == ['ok']
    assert clock['sleeps'] == [2.0, 2.0]

    # the driver never sees it (upstream #422): unverified after the grace, not after the whole settle time
    clock.update(t=0.0, sleeps=[])
    host['proc'].write_text(unverified)
    monkeypatch.setattr(bc, '_pause', driver_sees_it_at(None))
    assert bc.main(host['args'] + ['--settle', '120']) == 1
    report = json.loads(host['state'].read_text())
    assert [v['status'] for v in report['volumes']] == ['unverified'] and report['rebaseline_required'] == [0]
    assert sum(clock['sleeps']) == bc.UNVERIFIED_GRACE
    assert 'still wait' not in capsys.readouterr().err

    # the grace never runs past --settle, and without --settle there is one look
    clock.update(t=0.0, sleeps=[])
    assert bc.main(host['args'] + ['--settle', '3']) == 1 and clock['sleeps'] == [2.0, 1.0]
    clock.update(t=0.0, sleeps=[])
    assert bc.main(host['args']) == 1 and clock['sleeps'] == []


def test_main_module_not_loaded_without_scripts(host, capsys):
    assert bc.main(host['args']) == 0
    assert json.loads(host['state'].read_text())['driver_loaded'] is False


def test_main_internal_errors(host, capsys, monkeypatch):
    host['proc'].write_text('not dattobd')
    rl.ensure(0, '/dev/vda1', '/.datto', 'incremental', directory=str(host['dla']))
    assert bc.main(host['args']) == 2
    assert 'could not run' in capsys.readouterr().err
    host['proc'].write_text(golden('empty'))

    def fail(*a, **k):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(bc.os, 'fsync', fail)
    assert bc.main(host['args']) == 2
    assert not host['state'].exists()
    assert os.listdir(str(host['state'].parent)) == []


def test_read_timed_gives_up_on_a_wedged_reader(tmp_path):
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    with pytest.raises(bc.CheckError, match='wedged'):
        bc.read_timed(fifo, timeout=0.3)
    # unblock the abandoned cat if it still waits, so it does not linger; a writer that waited for a
    # reader (a thread, as before) blocked forever once the cat was killed, a stray thread for later tests
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # no reader left: the cat is gone already
            raise
    assert bc.read_timed(str(tmp_path / 'absent')) is None
    os.mkdir(str(tmp_path / 'dir'))
    with pytest.raises(bc.CheckError, match='cannot read'):
        bc.read_timed(str(tmp_path / 'dir'))


def test_scan_scripts(tmp_path):
    assert bc.scan_scripts(str(tmp_path / 'absent')) == []
    rl.ensure(4, '/dev/disk/by-uuid/x', '/c', 'snapshot', directory=str(tmp_path))
    (tmp_path / 'reload_dir').mkdir()
    (tmp_path / 'other').write_text('x')
    got = bc.scan_scripts(str(tmp_path))
    assert [(s['name'], s['parsed'], s['ours']) for s in got] == [
        ('reload_dir', None, False), ('reload_snapfleet_4', ('snapshot', '/dev/disk/by-uuid/x', '/c', 4), True)]


def test_write_state_is_durable_like_the_library(tmp_path, monkeypatch):
    """The state file is written as fileutil.atomic_write writes: file fsync, rename, directory fsync, 0600."""
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink('/proc/self/fd/%d' % fd))
        return real_fsync(fd)
    monkeypatch.setattr(bc.os, 'fsync', spy)
    path = tmp_path / 'state' / 'boot-check.json'
    bc.write_state(str(path), {'volumes': []})
    assert json.loads(path.read_text()) == {'volumes': []}
    assert str(path.parent) in synced
    assert oct(os.stat(str(path)).st_mode & 0o777) == '0o600'
    assert os.listdir(str(path.parent)) == ['boot-check.json']


@pytest.mark.parametrize('sample, mountinfo, status, mode', [
    ('state-4', MOUNT_DATA_RW, 'unverified', 'full'),        # stuck unverified on a writable fs: tracking lost
    ('state-5', MOUNT_DATA_RW, 'unverified', 'full'),
    ('state-4', '', 'pending', 'incremental'),                # not mounted yet: fine
    ('state-4', MOUNT_DATA_RO, 'pending', 'incremental'),     # read-only mount does not activate it: fine
    ('state-2', MOUNT_DATA_RW, 'ok', 'incremental'),
])
def test_unverified_tracker_on_a_writable_fs_forces_the_next_backup_full(tmp_path, sample, mountinfo, status, mode):
    """Issue 19 (upstream #422): the boot check's state file, read by the backup module, makes the next
    cycle of that volume a full one when its tracker is still unverified (state 4/5) although the
    filesystem is mounted writable - end to end through the file the two share."""
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
    from ..plugins.module_utils import test_backup as tb
    cow = '/.dattoR'
    report = bc.check(golden(sample), [script(mode='incremental' if sample != 'state-5' else 'snapshot', cow=cow)],
                      mountinfo, None, devnum=devnum, cow_reader=no_cow, boot_id='b')
    assert report['volumes'][0]['status'] == status
    path = tmp_path / 'boot-check.json'
    path.write_text(json.dumps(report))
    data, mtime = bk.read_boot_check(str(path))
    cycle = bk.Cycle(tb.params(), tb.FakeOps(meta=tb.META1, record=tb.REC_OK, boot=(data, mtime)))
    got, why = cycle.decide(tb.REC_OK, tb.META1, True, data, mtime, names=['/data'], minor=0)
    assert got == mode, why
    if mode == 'full':
        assert why == 'the driver did not see the mount at boot'
        assert 'still unverified although' in why.detail
        assert 'still unverified although' in report['volumes'][0]['message']


@pytest.mark.parametrize('sample, log, tracker_text', [
    # the boot hook refused both scripts: no tracker
    ('empty', 'version 1\nmodprobe ok\nmounted /dev/vda1\nscript reload_snapfleet_0 refused duplicate-device '
              'reload_snapfleet_1\nscript reload_snapfleet_1 refused duplicate-device reload_snapfleet_0\ndone 0 0\n',
     'is lost'),
    # an older hook ran both: the tracker that exists may be the stale script's
    ('state-2', None, 'may come from the stale one'),
])
def test_two_scripts_for_one_device(sample, log, tracker_text):
    """Issue 23, the measured state: reload_snapfleet_0 and reload_snapfleet_1 both name the data volume (by two
    names of one device), reload_snapfleet_1 with an old COW file. Both need a full backup; the check says why."""
    scripts = [script(0, mode='incremental', cow='/.datto_0_1'),
               script(1, mode='incremental', bdev='/dev/vdb', cow='/.datto_1_4'),
               script(2, mode='incremental', bdev='/dev/vda1', cow='/.datto_2_1')]
    report = bc.check(golden(sample), scripts, MOUNT_DATA_RW + MOUNT_ROOT_RW, log, devnum=devnum, cow_reader=no_cow)
    by_minor = dict((v['minor'], v) for v in report['volumes'])
    assert [by_minor[m]['status'] for m in (0, 1)] == ['duplicate', 'duplicate']
    assert report['ok'] is False and report['rebaseline_required'][:2] == [0, 1]  # (2 has no tracker here)
    assert 'reload_snapfleet_1 also reload this device' in by_minor[0]['message']
    assert tracker_text in by_minor[0]['message'] and 'removes the stale script' in by_minor[1]['message']
    assert by_minor[2]['status'] != 'duplicate'
    if log:
        assert report['initramfs_log']['refused'] == {'reload_snapfleet_0': 'duplicate-device reload_snapfleet_1',
                                                      'reload_snapfleet_1': 'duplicate-device reload_snapfleet_0'}


def test_an_lv_the_initramfs_could_not_activate_is_reported_as_such():
    """Issue 20: the boot hook skipped the script of an LVM volume it could not activate: the check says so
    (not "its reload did not run"), and the report lists what the hook activated and skipped."""
    log = ('version 1\nmodprobe ok\nmounted /dev/vda1\nlv vg/data activated /dev/mapper/vg-data\nlv vg/lv no-lvm\n'
           'script reload_snapfleet_1 rc 0\nscript reload_snapfleet_0 skipped lv-missing vg/lv\ndone 1 0\n')
    r = bc.check(golden('empty'), [script()], MOUNT_DATA_RW, log, devnum=devnum, cow_reader=no_cow)
    vol = r['volumes'][0]
    assert vol['status'] == 'missing' and vol['rebaseline_required'] is True
    assert 'the initramfs skipped its reload script (lv-missing vg/lv; see the kernel log)' in vol['message']
    assert r['initramfs_log']['skipped'] == {'reload_snapfleet_0': 'lv-missing vg/lv'}
    assert r['initramfs_log']['activated'] == ['vg/data']
    assert r['initramfs_log']['already_active'] == []
    assert r['initramfs_log']['scripts'] == {'reload_snapfleet_1': 0}


def test_the_lvs_the_initramfs_had_activated_already_are_listed():
    """Debian 12's udev activates complete volume groups in the initramfs: the hook logs those as active."""
    log = ('version 1\nmodprobe ok\nmounted /dev/vda1\nlv sf-data/lvext4 active /dev/mapper/sf--data-lvext4\n'
           'lv vg/data activated /dev/mapper/vg-data\nscript reload_snapfleet_1 rc 0\ndone 1 0\n')
    parsed = bc.parse_boot_log(log)
    assert parsed['active'] == ['sf-data/lvext4'] and parsed['activated'] == ['vg/data']
    r = bc.check(golden('empty'), [script()], MOUNT_DATA_RW, log, devnum=devnum, cow_reader=no_cow)
    assert r['initramfs_log']['already_active'] == ['sf-data/lvext4']
    assert r['initramfs_log']['activated'] == ['vg/data']
    assert r['initramfs_log']['problems'] == []
