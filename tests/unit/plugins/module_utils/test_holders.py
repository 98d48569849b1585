# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""holders.py: what holds /dev/datto<N> open, read from fixture sysfs/procfs trees built under tmp_path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import holders
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

ROOT_MOUNT = '21 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n'


def write(path, text):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d)
    with open(path, 'w') as f:
        f.write(text)


def build(base, datto=True, dms=(), loops=(), mounts='', openers=()):
    """A /sys and /proc tree: datto0 (252:0), ``dms`` = (kname, dev, name, uuid, slaves, holders),
    ``loops`` = (kname, dev, backing_file, holders), ``openers`` = (pid, comm, target)."""
    sys_root, proc_root = os.path.join(base, 'sys'), os.path.join(base, 'proc')
    os.makedirs(os.path.join(sys_root, 'block'))
    if datto:
        write(os.path.join(sys_root, 'block', 'datto0', 'dev'), '252:0\n')
        os.makedirs(os.path.join(sys_root, 'block', 'datto0', 'holders'))
    for kname, dev, name, uuid, slaves, held in dms:
        d = os.path.join(sys_root, 'block', kname)
        write(os.path.join(d, 'dev'), dev + '\n')
        write(os.path.join(d, 'dm', 'name'), name + '\n')
        write(os.path.join(d, 'dm', 'uuid'), uuid + '\n')
        for s in slaves:
            write(os.path.join(d, 'slaves', s), '')
        os.makedirs(os.path.join(d, 'holders'))
        for h in held:
            write(os.path.join(d, 'holders', h), '')
        if 'datto0' in slaves:
            write(os.path.join(sys_root, 'block', 'datto0', 'holders', kname), '')
    for kname, dev, backing, held in loops:
        d = os.path.join(sys_root, 'block', kname)
        write(os.path.join(d, 'dev'), dev + '\n')
        write(os.path.join(d, 'loop', 'backing_file'), backing + '\n')
        os.makedirs(os.path.join(d, 'holders'))
        for h in held:
            write(os.path.join(d, 'holders', h), '')
    write(os.path.join(proc_root, 'self', 'mountinfo'), ROOT_MOUNT + mounts)
    for pid, comm, target in openers:
        write(os.path.join(proc_root, str(pid), 'comm'), comm + '\n')
        os.makedirs(os.path.join(proc_root, str(pid), 'fd'))
        os.symlink(target, os.path.join(proc_root, str(pid), 'fd', '3'))
        os.symlink('socket:[1234]', os.path.join(proc_root, str(pid), 'fd', '4'))
    return sys_root, proc_root


def diagnose(tmp_path, **spec):
    sys_root, proc_root = build(str(tmp_path), **spec)
    return holders.diagnose(0, sys_root=sys_root, proc_root=proc_root)


KPARTX = ('dm-3', '253:3', 'datto0p1', 'part1-DATTO0', ['datto0'], [])
LVM = ('dm-4', '253:4', 'my--vg-snap--1', 'LVM-Vx1nq7cJbHcL3rD8kAq0cR2m6hDg5wQyAbCdEf', ['datto0'], [])
TWO_SLAVES = ('dm-5', '253:5', 'striped', 'CRYPT-x', ['datto0', 'sdb'], [])
STACKED = ('dm-6', '253:6', 'base', '', ['datto0'], ['dm-7'])
LOOP = ('loop0', '7:0', '/dev/datto0', [])
OTHER_LOOP = ('loop1', '7:1', '/srv/disk.img', [])


def brief(found):
    return [(h['kind'], h['device'], h['command'], h['releasable']) for h in found]


# name, tree spec, expected (kind, device, command, releasable) in order
CASES = [
    ('none', dict(), []),
    ('no snapshot device', dict(datto=False), []),
    ('dm with name (kpartx)', dict(dms=[KPARTX]), [('dm', 'dm-3', 'dmsetup remove datto0p1', True)]),
    ('LVM volume activated on the snapshot', dict(dms=[LVM]), [('dm', 'dm-4', 'lvchange -an my-vg/snap-1', True)]),
    ('dm over datto0 and another disk', dict(dms=[TWO_SLAVES]), [('dm', 'dm-5', 'dmsetup remove striped', False)]),
    ('dm with a holder of its own', dict(dms=[STACKED]), [('dm', 'dm-6', 'dmsetup remove base', False)]),
    ('dm mounted', dict(dms=[KPARTX], mounts='60 21 253:3 / /mnt/x rw - ext4 /dev/mapper/datto0p1 rw\n'),
     [('dm', 'dm-3', 'dmsetup remove datto0p1', False)]),
    ('loop with backing file', dict(loops=[LOOP, OTHER_LOOP]), [('loop', 'loop0', 'losetup -d /dev/loop0', True)]),
    ('loop mounted', dict(loops=[LOOP], mounts='61 21 7:0 / /mnt/l ro - ext4 /dev/loop0 ro\n'),
     [('loop', 'loop0', 'losetup -d /dev/loop0', False)]),
    ('mount of the snapshot', dict(mounts='62 21 252:0 / /mnt/snap ro - ext4 /dev/datto0 ro\n'),
     [('mount', None, 'umount /mnt/snap', False)]),
    ('process with it open', dict(openers=[(1234, 'dd', '/dev/datto0'), (99, 'bash', '/dev/null')]),
     [('process', None, 'fuser -v /dev/datto0', False)]),
    ('dm open by a process', dict(dms=[KPARTX], openers=[(77, 'cat', '/dev/dm-3')]),
     [('dm', 'dm-3', 'dmsetup remove datto0p1', False)]),
]


@pytest.mark.parametrize('name, spec, expected', CASES, ids=[c[0] for c in CASES])
def test_diagnosis_from_fixture_trees(name, spec, expected, tmp_path):
    assert brief(diagnose(tmp_path, **spec)) == expected


def test_details_of_each_kind(tmp_path):
    found = diagnose(tmp_path, dms=[LVM, ('dm-3', '253:3', 'datto0p1', 'part1-DATTO0', ['datto0'], [])],
                     loops=[LOOP], mounts='62 21 252:0 / /mnt/snap ro - ext4 /dev/datto0 ro\n'
                                          '60 21 253:3 / /mnt/x rw - ext4 /dev/mapper/datto0p1 rw\n')
    by = dict((h['device'] or h['kind'], h) for h in found)
    assert by['dm-4']['lvm'] == 'my-vg/snap-1' and by['dm-4']['uuid'].startswith('LVM-')
    assert by['dm-4']['argv'] == ['dmsetup', 'remove', 'my--vg-snap--1']
    assert by['dm-3']['mount_points'] == ['/mnt/x'] and by['dm-3']['reason'] == 'it is mounted at /mnt/x'
    assert by['dm-3']['argv'] is None
    assert by['loop0']['backing_file'] == '/dev/datto0'
    assert by['mount']['mount_points'] == ['/mnt/snap'] and by['mount']['argv'] is None
    assert 'argv' not in holders.public(found)[0]


def test_message_as_the_operator_reads_it(tmp_path):
    found = diagnose(tmp_path, dms=[('dm-3', '253:3', 'vgdata-snap', '', ['datto0'], [])], loops=[LOOP],
                     mounts='62 21 252:0 / /mnt/x ro - ext4 /dev/datto0 ro\n',
                     openers=[(1234, 'dd', '/dev/datto0')])
    assert holders.describe(0, found) == (
        "/dev/datto0 is held by dm-3 (device-mapper 'vgdata-snap', remove with: dmsetup remove vgdata-snap); "
        "loop0 (loop device backed by /dev/datto0, detach with: losetup -d /dev/loop0); "
        "mounted at /mnt/x (unmount with: umount /mnt/x); "
        "open by pid 1234 (dd; see: fuser -v /dev/datto0)")


def test_message_for_lvm_and_mounted_holders(tmp_path):
    found = diagnose(tmp_path, dms=[LVM], mounts='60 21 253:4 / /mnt/my\\040x rw - ext4 /dev/dm-4 rw\n')
    assert holders.describe(0, found) == (
        "/dev/datto0 is held by dm-4 (LVM logical volume my-vg/snap-1, mounted at /mnt/my x: unmount with: "
        "umount '/mnt/my x', then deactivate with: lvchange -an my-vg/snap-1)")


def test_message_when_nothing_is_found():
    assert holders.describe(2, []).startswith('/dev/datto2 is busy, but no holder was found')


@pytest.mark.parametrize('name, uuid, expected', [
    ('vgdata-snap', 'LVM-abc', ('vgdata', 'snap')),
    ('my--vg-lv--1', 'LVM-abc', ('my-vg', 'lv-1')),
    ('vgdata-snap', 'part1-abc', None),
    ('novolume', 'LVM-abc', None),
])
def test_lvm_names(name, uuid, expected):
    assert holders.lvm_names(name, uuid) == expected


def test_odd_dm_name_is_not_released(tmp_path):
    found = diagnose(tmp_path, dms=[('dm-3', '253:3', '-rf', '', ['datto0'], [])])
    assert found[0]['releasable'] is False and 'not one the collection passes' in found[0]['reason']


class Runner(object):
    def __init__(self, results):
        self.results = list(results)
        self.argvs = []

    def __call__(self, argv, timeout=None):
        self.argvs.append(list(argv))
        return self.results.pop(0)


def which(name):
    return '/usr/sbin/' + name


def test_release_removes_only_the_stale_ones_never_a_mount(tmp_path):
    found = diagnose(tmp_path, dms=[KPARTX, STACKED], loops=[LOOP],
                     mounts='62 21 252:0 / /mnt/snap ro - ext4 /dev/datto0 ro\n')
    run, actions = Runner([(0, '', ''), (0, '', '')]), []
    released = holders.release(found, actions, runner=run, which=which)
    assert run.argvs == [['/usr/sbin/dmsetup', 'remove', 'datto0p1'], ['/usr/sbin/losetup', '-d', '/dev/loop0']]
    assert actions == ['/usr/sbin/dmsetup remove datto0p1', '/usr/sbin/losetup -d /dev/loop0']
    assert [h['device'] for h in released] == ['dm-3', 'loop0']
    assert [h['device'] or h['kind'] for h in found if not h['released']] == ['dm-6', 'mount']


def test_release_in_check_mode_runs_nothing(tmp_path):
    found = diagnose(tmp_path, dms=[KPARTX], loops=[LOOP])
    run, actions = Runner([]), []
    assert holders.release(found, actions, check_mode=True, runner=run, which=which) == []
    assert run.argvs == [] and actions == ['/usr/sbin/dmsetup remove datto0p1', '/usr/sbin/losetup -d /dev/loop0']
    assert not any(h['released'] for h in found)


def test_release_failure_is_an_error_not_a_traceback(tmp_path):
    found = diagnose(tmp_path, dms=[KPARTX])
    run = Runner([(1, '', 'device-mapper: remove ioctl on datto0p1  failed: Device or resource busy\n')])
    with pytest.raises(DattobdError) as exc:
        holders.release(found, [], runner=run, which=which)
    assert 'Releasing dm-3 failed: /usr/sbin/dmsetup remove datto0p1 exited 1: device-mapper' in exc.value.msg
    assert exc.value.details['holders'][0]['released'] is False


def test_release_needs_every_tool_before_it_runs_one(tmp_path):
    found = diagnose(tmp_path, dms=[KPARTX], loops=[LOOP])
    run = Runner([])
    with pytest.raises(DattobdError) as exc:
        holders.release(found, [], runner=run, which=lambda name: None if name == 'losetup' else which(name))
    assert 'losetup was not found' in exc.value.msg and run.argvs == []
