# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role snapfleet.dattobd.systemd: the boot check script's --quiesce mode (freeze and thaw the
filesystems of active trackers before shutdown unmounts them), its unit and its generator."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import errno
import json
import os
import shutil
import subprocess

import pytest

from .test_systemd_boot_check import bc
from .test_systemd_units import ROLE, render, unit


def info(*devices):
    return json.dumps({'version': '0.12.1', 'devices': [
        dict(minor=i, block_device=dev, state=state, cow_file='/.datto%d' % i, **({'error': err} if err else {}))
        for i, (dev, state, err) in enumerate(devices)]})


def test_active_devices_only():
    text = info(('/dev/vdb', 2, None), ('/dev/vdc', 3, None), ('/dev/vdd', 4, None), ('/dev/vde', 6, -5),
                ('/dev/vdf', 0, None))
    assert bc.active_block_devices(bc.parse_proc(text)) == ['/dev/vdb', '/dev/vdc']
    assert bc.active_block_devices(bc.parse_proc(info())) == [] and bc.active_block_devices(None) == []


MOUNTINFO = (
    '21 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n'
    '40 21 254:16 / /data rw,relatime shared:20 - xfs /dev/vdb rw\n'
    '41 21 254:16 / /srv/bind\\040dir rw,relatime shared:20 - xfs /dev/vdb rw\n'
    '42 21 254:32 / /ro ro,relatime - ext4 /dev/vdc ro\n'
    '43 21 254:48 / /other rw,relatime - ext4 /dev/vdd rw\n')
NUMBERS = {'/dev/vda1': (254, 1), '/dev/vdb': (254, 16), '/dev/vdc': (254, 32), '/dev/vdd': (254, 48)}


def test_mount_points_of_the_tracked_devices_writable_each_once():
    mounts = bc.parse_mountinfo(MOUNTINFO)
    assert bc.quiesce_points(['/dev/vdb', '/dev/vdc', '/dev/vda1'], mounts, NUMBERS.get) == ['/', '/data', '/srv/bind dir']
    assert bc.quiesce_points([], mounts, NUMBERS.get) == []


class FakeIoctl(object):
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail or {}
        self.paths = {}

    def __call__(self, fd, request, arg):
        name = {bc.FIFREEZE: 'freeze', bc.FITHAW: 'thaw'}[request]
        self.calls.append((name, self.paths[fd]))
        if (name, self.paths[fd]) in self.fail:
            raise OSError(self.fail[(name, self.paths[fd])], os.strerror(self.fail[(name, self.paths[fd])]))

    def opener(self, path, flags):
        fd = os.open(os.devnull, os.O_RDONLY)
        self.paths[fd] = path
        return fd


def run(tmp_path, monkeypatch, ioctl, devices, mountinfo=MOUNTINFO, dry_run=False, proc_text=None):
    proc = tmp_path / 'datto-info'
    proc.write_text(info(*devices) if proc_text is None else proc_text)
    mi = tmp_path / 'mountinfo'
    mi.write_text(mountinfo)
    (tmp_path / 'boot_id').write_text('b0b0\n')
    logged = []
    monkeypatch.setattr(bc, 'emit', lambda level, message, stream=None: logged.append(message.split(': ', 1)[1]))
    args = argparse.Namespace(proc=str(proc), mountinfo=str(mi), boot_id=str(tmp_path / 'boot_id'), timeout=10,
                              state_file=str(tmp_path / 'state' / 'quiesce.json'), dry_run=dry_run, no_state=False)
    rc = bc.quiesce(args, ioctl=ioctl, opener=ioctl.opener, devnum=NUMBERS.get)
    return rc, logged


def state(tmp_path):
    path = tmp_path / 'state' / 'quiesce.json'
    assert oct(os.stat(str(path)).st_mode & 0o777) == oct(0o600)
    return json.loads(path.read_text())


def test_each_mount_of_an_active_tracker_is_frozen_then_thawed(tmp_path, monkeypatch):
    ioctl = FakeIoctl()
    rc, logged = run(tmp_path, monkeypatch, ioctl, [('/dev/vdb', 2, None), ('/dev/vda1', 3, None), ('/dev/vdd', 4, None)])
    assert rc == 0
    assert ioctl.calls == [('freeze', '/'), ('thaw', '/'), ('freeze', '/data'), ('thaw', '/data'),
                           ('freeze', '/srv/bind dir'), ('thaw', '/srv/bind dir')]   # not /other: unverified
    assert logged[0] == 'froze and thawed / (its metadata written home while tracked)'
    recorded = state(tmp_path)
    assert recorded['boot_id'] == 'b0b0' and recorded['trackers'] == 2
    assert recorded['quiesced'] == ['/', '/data', '/srv/bind dir'] and recorded['errors'] == []


def test_a_failed_freeze_is_logged_and_the_others_go_on(tmp_path, monkeypatch):
    ioctl = FakeIoctl(fail={('freeze', '/data'): errno.EOPNOTSUPP})
    rc, logged = run(tmp_path, monkeypatch, ioctl, [('/dev/vdb', 2, None), ('/dev/vda1', 2, None)])
    assert rc == 0
    assert ('thaw', '/data') not in ioctl.calls          # never thaw what was not frozen
    assert ('thaw', '/') in ioctl.calls and ('thaw', '/srv/bind dir') in ioctl.calls
    assert 'cannot freeze /data: %s' % os.strerror(errno.EOPNOTSUPP) in logged
    assert state(tmp_path)['errors'] == ['cannot freeze /data: %s' % os.strerror(errno.EOPNOTSUPP)]


def test_a_failed_thaw_is_said(tmp_path, monkeypatch):
    ioctl = FakeIoctl(fail={('thaw', '/'): errno.EINVAL})
    rc, logged = run(tmp_path, monkeypatch, ioctl, [('/dev/vda1', 2, None)])
    assert rc == 0
    assert logged == ['cannot thaw /: %s (it may stay frozen)' % os.strerror(errno.EINVAL)]


def test_an_unreadable_driver_freezes_nothing_and_says_so(tmp_path, monkeypatch):
    """A driver whose /proc/datto-info cannot be parsed (or read in time) never stops the shutdown."""
    ioctl = FakeIoctl()
    rc, logged = run(tmp_path, monkeypatch, ioctl, [], proc_text='garbage')
    assert rc == 0 and ioctl.calls == []
    assert logged[0].startswith('cannot tell what to quiesce: ')
    assert state(tmp_path)['errors'] == logged


def test_nothing_tracked_nothing_frozen_and_dry_run(tmp_path, monkeypatch):
    ioctl = FakeIoctl()
    rc, logged = run(tmp_path, monkeypatch, ioctl, [])
    assert rc == 0 and ioctl.calls == []
    assert 'nothing to quiesce' in logged[0]
    os.remove(str(tmp_path / 'state' / 'quiesce.json'))
    rc, logged = run(tmp_path, monkeypatch, ioctl, [('/dev/vdb', 2, None)], dry_run=True)
    assert rc == 0 and ioctl.calls == []
    assert logged == ['would freeze and thaw /data', 'would freeze and thaw /srv/bind dir']
    assert not os.path.exists(str(tmp_path / 'state' / 'quiesce.json'))     # a dry run records nothing


def test_main_routes_quiesce_and_never_checks(tmp_path, monkeypatch):
    """--quiesce runs the quiesce and returns 0 (no check report, no boot-check state file)."""
    seen = []
    monkeypatch.setattr(bc, 'quiesce', lambda args: seen.append(args) or 0)
    monkeypatch.setattr(bc, '_check_once', lambda args: pytest.fail('the check ran'))
    assert bc.main(['--quiesce', '--dry-run', '--state-file', str(tmp_path / 'q.json')]) == 0
    assert seen[0].dry_run is True and seen[0].state_file == str(tmp_path / 'q.json')


def test_quiesce_unit_stops_before_the_unmounts():
    u = unit(render('quiesce.service.j2'))
    assert 'local-fs.target' in u['Unit']['After'].split()      # stopped before local-fs.target's mounts
    # and before blkdeactivate (lvm2's blk-availability.service) unmounts the LVM volumes itself
    assert 'blk-availability.service' in u['Unit']['After'].split()
    assert u['Unit']['Conflicts'] == 'shutdown.target' and u['Unit']['DefaultDependencies'] == 'no'
    s = u['Service']
    assert s['Type'] == 'oneshot' and s['RemainAfterExit'] == 'yes'
    assert s['ExecStop'] == '/usr/bin/python3 /usr/local/lib/snapfleet-dattobd/boot-check --quiesce'
    assert u['Install']['WantedBy'] == 'multi-user.target'


def test_quiesce_unit_quotes_a_hostile_libexec_dir():
    s = unit(render('quiesce.service.j2', dattobd_systemd_libexec_dir='/opt/my dir;rm -rf x'))['Service']
    assert s['ExecStop'] == '/usr/bin/python3 "/opt/my dir;rm -rf x/boot-check" --quiesce'


# --- the generator that orders the unit after every fstab mount -----------------------------------

GENERATOR = os.path.join(ROLE, 'files', 'snapfleet-dattobd-quiesce-generator')
SHELLS = [s for s in ('sh', 'dash', 'bash', 'busybox') if shutil.which(s)]
FSTAB = ('UUID=x / ext4 errors=remount-ro 0 1\n'
         '# a comment\n'
         '\n'
         'UUID=y /data-ext4 ext4 defaults,nofail,x-systemd.device-timeout=120 0 2\n'
         '/dev/mapper/sf--data-lvext4 /data-lvext4 ext4 nofail 0 2\n'
         'UUID=z none swap sw 0 0\n'
         'tmpfs /tmp tmpfs defaults 0 0\n'
         'UUID=w /srv/my\\040dir xfs defaults 0 0\n'
         'UUID=v /srv/a;b$(x) ext4 defaults 0 0\n')


def generate(shell, tmp_path, fstab=FSTAB, escape=None):
    (tmp_path / 'fstab').write_text(fstab)
    out = tmp_path / 'out'
    env = dict(os.environ, SNAPFLEET_DATTOBD_FSTAB=str(tmp_path / 'fstab'))
    if escape:
        env['SNAPFLEET_DATTOBD_SYSTEMD_ESCAPE'] = escape
    argv = ([shell, 'sh'] if shell == 'busybox' else [shell]) + [GENERATOR, str(out), str(tmp_path / 'e'), str(tmp_path / 'l')]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    conf = out / 'snapfleet-dattobd-quiesce.service.d' / '50-fstab-mounts.conf'
    return proc, (conf.read_text() if conf.exists() else None)


@pytest.mark.skipif(not shutil.which('systemd-escape'), reason='systemd-escape not installed')
@pytest.mark.parametrize('shell', SHELLS)
def test_generator_orders_the_unit_after_every_fstab_mount(shell, tmp_path):
    proc, conf = generate(shell, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = conf.splitlines()
    assert lines[1] == '[Unit]'
    assert lines[2].startswith('After=')
    assert lines[2][len('After='):].split() == [
        'data\\x2dext4.mount', 'data\\x2dlvext4.mount', 'srv-my\\x20dir.mount', 'srv-a\\x3bb\\x24\\x28x\\x29.mount']


@pytest.mark.parametrize('shell', SHELLS)
def test_generator_never_fails_and_writes_nothing_it_cannot_know(shell, tmp_path):
    proc, conf = generate(shell, tmp_path, fstab='UUID=x / ext4 defaults 0 1\n')
    assert proc.returncode == 0 and conf is None          # only / : nothing to order after
    proc, conf = generate(shell, tmp_path, escape='/nonexistent/systemd-escape')
    assert proc.returncode == 0 and conf is None          # no systemd-escape: no drop-in
    argv = ([shell, 'sh'] if shell == 'busybox' else [shell]) + [GENERATOR]
    assert subprocess.run(argv, capture_output=True, check=False).returncode == 0   # no output dir
