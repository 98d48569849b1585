# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore playbook on this machine's loop devices (root only; no driver needed).

``volume`` writes an image onto a device and reads it back, and refuses a device in use (a whole
disk whose partition is mounted, the mounted volume itself) or unconfirmed without writing a byte;
``files`` mounts an ext4 and an XFS image read-only beside the mounted file system they were copied
from (XFS needs ``nouuid`` for that), a file is restored from each, and ``detach`` undoes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from .test_playbook_flow import COLLECTIONS_PATH, PLAYBOOK, ROOT

TOOLS = ('losetup', 'mkfs.ext4', 'mkfs.xfs', 'sfdisk', 'lsblk', 'cmp', 'mount', 'umount')
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason='loop devices and mounts need root'),
    pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS), reason='needs %s' % ', '.join(TOOLS)),
    pytest.mark.skipif(not os.path.exists(PLAYBOOK) and not shutil.which('ansible-playbook'),
                       reason='ansible-playbook not installed'),
]
MIB = 1024 * 1024


def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def digest(path, size=None):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        h.update(f.read(size) if size else f.read())
    return h.hexdigest()


@pytest.fixture
def loops(tmp_path):
    """attach(file, partitions=False) -> /dev/loopN; everything mounted or attached is undone."""
    attached, mounted = [], []

    def attach(path, partitions=False):
        dev = sh('losetup', '--find', '--show', *(['--partscan'] if partitions else []), str(path))
        attached.append(dev)
        return dev

    def mount(dev, where, *opts):
        os.makedirs(str(where), exist_ok=True)
        sh('mount', *opts, dev, str(where))
        mounted.append(str(where))

    attach.mount = mount
    yield attach
    for where in reversed(mounted):
        subprocess.run(['umount', where], check=False)
    for dev in attached:
        subprocess.run(['losetup', '-d', dev], check=False)


def filesystem(tmp_path, name, fs, size_mib=320):
    """An image file holding ``fs`` with one file, and its content."""
    img = tmp_path / (name + '.img')
    with open(str(img), 'wb') as f:
        f.truncate(size_mib * MIB)
    sh(*(['mkfs.ext4', '-q', '-F'] if fs == 'ext4' else ['mkfs.xfs', '-q', '-f']), str(img))
    data = os.urandom(200000)
    return img, data


def playbook(tmp_path, *extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-tmp'), ANSIBLE_RETRY_FILES_ENABLED='False')
    exe = PLAYBOOK if os.path.exists(PLAYBOOK) else shutil.which('ansible-playbook')
    cmd = [exe, '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=' + sys.executable,
           '-e', 'dattobd_hosts=localhost', os.path.join(ROOT, 'playbooks', 'restore.yml')] + list(extra)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                          timeout=600, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


def volume_args(image, target, confirm=None):
    return ['-e', 'dattobd_restore_mode=volume', '-e', 'dattobd_restore_image=%s' % image,
            '-e', 'dattobd_restore_target=%s' % target, '-e', 'dattobd_restore_confirm_target=%s' % (confirm or target),
            '-e', 'dattobd_restore_overwrite=true']


def test_volume_restore_writes_the_image_and_reads_it_back(tmp_path, loops):
    image = tmp_path / 'data.img'
    with open(str(image), 'wb') as f:
        f.write(os.urandom(3 * MIB))
        f.truncate(8 * MIB)          # a hole at the end, as a sparse backup image has
    disk = tmp_path / 'spare.raw'
    with open(str(disk), 'wb') as f:
        f.write(b'\xa5' * (10 * MIB))
    target = loops(disk)
    rc, out = playbook(tmp_path, *volume_args(image, target))
    assert rc == 0, out
    assert 'Wrote %s (%d bytes) onto %s' % (image, 8 * MIB, target) in out, out
    assert 'and read it back: equal' in out, out
    assert digest(target, 8 * MIB) == digest(str(image))
    with open(target, 'rb') as f:      # beyond the image: untouched
        f.seek(8 * MIB)
        assert f.read() == b'\xa5' * (2 * MIB)


@pytest.mark.parametrize('case', ['partition mounted', 'target mounted', 'confirmation differs', 'target too small'])
def test_volume_restore_refuses_and_writes_nothing(tmp_path, loops, case):
    image = filesystem(tmp_path, 'img', 'ext4', 64)[0]
    disk = tmp_path / 'disk.raw'
    with open(str(disk), 'wb') as f:
        f.truncate((32 if case == 'target too small' else 128) * MIB)
    if case == 'partition mounted':
        subprocess.run(['sfdisk', '--quiet', str(disk)], input='label: dos\n,\n', text=True, check=True,
                       capture_output=True)
        target = loops(disk, partitions=True)
        part = target + 'p1'
        subprocess.run(['partx', '--update', target], check=False, capture_output=True)   # no udev here
        if not os.path.exists(part):
            subprocess.run(['partx', '--add', target], check=False, capture_output=True)
        sh('mkfs.ext4', '-q', '-F', part)
        loops.mount(part, tmp_path / 'mnt')
        expect = '%s is in use: %s (part) is mounted at %s' % (target, part, tmp_path / 'mnt')
    elif case == 'target mounted':
        sh('mkfs.ext4', '-q', '-F', str(disk))
        target = loops(disk)
        loops.mount(target, tmp_path / 'mnt')
        expect = '%s is in use: %s (loop) is mounted at %s' % (target, target, tmp_path / 'mnt')
    else:
        target = loops(disk)
        expect = ('repeat it in dattobd_restore_confirm_target' if case == 'confirmation differs'
                  else '%s has %d bytes, the image %d' % (target, 32 * MIB, 64 * MIB))
    mounted = case in ('partition mounted', 'target mounted')
    if mounted:     # a mounted file system writes on its own: its marker file must survive
        with open(str(tmp_path / 'mnt' / 'marker'), 'w') as f:
            f.write('still here')
        sh('sync')
    before = digest(target)
    rc, out = playbook(tmp_path, *volume_args(image, target, '/dev/other' if case == 'confirmation differs' else None))
    assert rc != 0, out
    assert expect in ' '.join(out.split()), out
    assert 'Write the image onto the target' not in out, out
    if mounted:
        with open(str(tmp_path / 'mnt' / 'marker')) as f:
            assert f.read() == 'still here'
        assert digest(target, 32 * MIB) != digest(str(image), 32 * MIB)
    else:
        assert digest(target) == before


@pytest.mark.parametrize('fs', ['ext4', 'xfs'])
def test_files_restore_beside_the_mounted_original(tmp_path, loops, fs):
    """The image is a copy of a mounted file system (same UUID): mounted read-only beside it, a file
    restored from it equals the one the image was taken with; detach unmounts and detaches it."""
    original, data = filesystem(tmp_path, 'orig', fs)
    live = loops(original)
    loops.mount(live, tmp_path / 'live')
    with open(str(tmp_path / 'live' / 'report.bin'), 'wb') as f:
        f.write(data)
    sh('fsfreeze', '-f', str(tmp_path / 'live'))     # a consistent copy, as a snapshot is
    image = tmp_path / 'backup.img'
    try:
        shutil.copyfile(str(original), str(image))
    finally:
        sh('fsfreeze', '-u', str(tmp_path / 'live'))
    with open(str(tmp_path / 'live' / 'report.bin'), 'wb') as f:   # the live file changes after the backup
        f.write(b'changed')
    mp = tmp_path / 'restore'
    rc, out = playbook(tmp_path, '-e', 'dattobd_restore_image=%s' % image, '-e', 'dattobd_restore_mount_point=%s' % mp)
    assert rc == 0, out
    assert 'mounted read-only at %s' % mp in ' '.join(out.split()), out
    with open(str(mp / 'report.bin'), 'rb') as f:
        assert f.read() == data
    findmnt = sh('findmnt', '--noheadings', '--output', 'FSTYPE,OPTIONS', '--mountpoint', str(mp))
    assert findmnt.split()[0] == fs and 'ro' in findmnt.split()[1].split(','), findmnt
    if fs == 'xfs':
        assert 'nouuid' in findmnt, findmnt
    rc, out = playbook(tmp_path, '-e', 'dattobd_restore_image=%s' % image, '-e', 'dattobd_restore_mount_point=%s' % mp,
                       '-e', 'dattobd_restore_mode=detach')
    assert rc == 0, out
    assert subprocess.run(['findmnt', '--mountpoint', str(mp)], capture_output=True, check=False).returncode == 1
    assert sh('losetup', '--list', '--noheadings', '--output', 'NAME', '--associated', str(image)) == ''
