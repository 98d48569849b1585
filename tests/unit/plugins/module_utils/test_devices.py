# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import devices
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from .fakehost import FakeHost, FakeStat, MOUNTINFO, UUID_VDB, VDA1, VDB, VDC1


@pytest.mark.parametrize('given, path, stable, mount_point', [
    ('/dev/vdb', '/dev/vdb', '/dev/disk/by-uuid/' + UUID_VDB, '/data'),
    ('/dev/disk/by-uuid/' + UUID_VDB, '/dev/vdb', '/dev/disk/by-uuid/' + UUID_VDB, '/data'),
    ('/data', '/dev/vdb', '/dev/disk/by-uuid/' + UUID_VDB, '/data'),
    ('/data/', '/dev/vdb', '/dev/disk/by-uuid/' + UUID_VDB, '/data'),
    ('/', '/dev/vda1', '/dev/disk/by-uuid/11111111-2222-3333-4444-555555555555', '/'),
    ('/dev/vdc1', '/dev/vdc1', '/dev/vdc1', None),
])
def test_resolve(given, path, stable, mount_point):
    dev = devices.resolve(given, FakeHost())
    assert dev.path == path
    assert dev.stable_name == stable
    assert dev.mount_point == mount_point
    d = dev.to_dict()
    assert d['given'] == given
    assert d['path'] == path


def test_resolve_details():
    dev = devices.resolve('/data', FakeHost())
    assert (dev.major, dev.minor) == (254, 16)
    assert dev.kernel_name == 'vdb'
    assert dev.size == 524288 * 512
    assert dev.fstype == 'ext4'
    assert dev.read_only is False
    assert dev.mounted


def test_stable_name_mapper_then_kernel_name():
    host = FakeHost(links={'/dev/mapper/vg-data': '/dev/vdb'}, remove=['/dev/disk/by-uuid/' + UUID_VDB])
    assert devices.resolve('/dev/vdb', host).stable_name == '/dev/mapper/vg-data'
    host = FakeHost(remove=['/dev/disk/by-uuid/' + UUID_VDB, '/dev/disk/by-uuid'])
    assert devices.resolve('/dev/vdb', host).stable_name == '/dev/vdb'


@pytest.mark.parametrize('given, message', [
    ('/dev/nope', 'does not exist'),
    ('/etc/hostname', 'neither a block device nor a mount point'),
    ('/root', 'not a mount point'),
    ('/proc', 'no block device'),
    ('relative', 'absolute path'),
    ('', 'absolute path'),
    (None, 'absolute path'),
])
def test_resolve_errors(given, message):
    with pytest.raises(DattobdError) as exc:
        devices.resolve(given, FakeHost())
    assert message in exc.value.msg


def test_require_mounted_rw():
    host = FakeHost()
    devices.require_mounted_rw(devices.resolve('/dev/vdb', host))
    with pytest.raises(DattobdError, match='not mounted'):
        devices.require_mounted_rw(devices.resolve('/dev/vdc1', host))
    ro = FakeHost(mountinfo=MOUNTINFO.replace('/data rw,relatime shared:20 - ext4 /dev/vdb rw',
                                              '/data ro,relatime shared:20 - ext4 /dev/vdb ro'))
    with pytest.raises(DattobdError, match='read-only') as exc:
        devices.require_mounted_rw(devices.resolve('/data', ro))
    assert 'remount' in exc.value.hint


def test_mountinfo_escapes_and_garbage():
    text = ('40 21 254:16 / /mnt/with\\040space rw - ext4 /dev/vdb rw\n'
            'garbage line\n'
            '41 21 x:y / /bad rw - ext4 /dev/x rw\n'
            '42 21 254:16 /sub /bind rw shared:3 master:1 - ext4 /dev/vdb rw\n')
    mounts = devices.parse_mountinfo(text)
    assert [m.mount_point for m in mounts] == ['/mnt/with space', '/bind']
    assert mounts[1].root == '/sub'
    assert mounts[1].fstype == 'ext4'


@pytest.mark.parametrize('path, relative', [
    ('/data/.datto_0_1', '/.datto_0_1'),
    ('/data/sub/cow', '/sub/cow'),
    ('/data/sub/../x', '/x'),
    ('/.datto-root', '/.datto-root'),
])
def test_cow_location(path, relative):
    host = FakeHost()
    dev = devices.resolve('/' if path == '/.datto-root' else '/data', host)
    absolute, rel = devices.cow_location(dev, path, host)
    assert rel == relative
    assert absolute == os.path.normpath(path)


def test_cow_location_bind_mount_root():
    host = FakeHost(mountinfo=MOUNTINFO + '50 21 254:16 /sub /srv rw - ext4 /dev/vdb rw\n',
                    extra={'/srv': FakeStat('dir', dev=VDB)})
    dev = devices.resolve('/dev/vdb', host)
    assert dev.mount_point == '/data'
    assert devices.cow_location(dev, '/srv/cow', host)[1] == '/sub/cow'


@pytest.mark.parametrize('path, message', [
    ('/root/datto-other-fs.cow', 'not on the filesystem'),
    ('/data/nonexistent-dir/.datto0', 'does not exist'),
    ('/data/adir', 'is a directory'),
    ('/etc/hostname/x', 'not a directory'),
    ('relative.cow', 'absolute'),
    ('/data/a\nb', 'newline'),
])
def test_cow_location_errors(path, message):
    host = FakeHost()
    dev = devices.resolve('/data', host)
    with pytest.raises(DattobdError) as exc:
        devices.cow_location(dev, path, host)
    assert message in exc.value.msg


def test_cow_location_not_regular():
    host = FakeHost(extra={'/data/fifo': FakeStat('chr', dev=VDB)})
    dev = devices.resolve('/data', host)
    with pytest.raises(DattobdError, match='not a regular file'):
        devices.cow_location(dev, '/data/fifo', host)


def test_relative_to_mount_outside():
    host = FakeHost()
    dev = devices.resolve('/dev/vdc1', host)
    with pytest.raises(DattobdError, match='not under a mount point'):
        devices.relative_to_mount(dev, '/x/y', host)


def test_same_device():
    host = FakeHost()
    dev = devices.resolve('/data', host)
    assert devices.same_device('/dev/vdb', dev, host)
    assert devices.same_device('/dev/disk/by-uuid/' + UUID_VDB, dev, host)
    assert not devices.same_device('/dev/vda1', dev, host)
    assert not devices.same_device('/dev/gone', dev, host)
    assert not devices.same_device(None, dev, host)


def test_real_host_smoke(tmp_path):
    host = devices.Host()
    f = tmp_path / 'x'
    f.write_text('hello')
    assert host.read_text(str(f)) == 'hello'
    assert host.listdir(str(tmp_path)) == ['x']
    assert host.stat(str(f)).st_size == 5
    assert host.realpath(str(f)) == os.path.realpath(str(f))
    assert VDA1 != VDC1


def test_same_device_paths(tmp_path, monkeypatch):
    assert devices.same_device_paths('/dev/x', '/dev/x')
    link = str(tmp_path / 'link')
    os.symlink('/dev/null', link)
    assert devices.same_device_paths(link, '/dev/null')          # char devices: realpath
    assert not devices.same_device_paths('/dev/null', '/dev/zero')
    assert not devices.same_device_paths('/nonexistent/a', '/nonexistent/b')

    class St(object):
        def __init__(self, rdev):
            self.st_mode = stat.S_IFBLK | 0o600
            self.st_rdev = rdev
    table = {'/dev/disk/by-uuid/u': St(0xfd00), '/dev/dm-0': St(0xfd00), '/dev/vdb': St(0xfe10)}
    monkeypatch.setattr(devices.os, 'stat', lambda p: table[p])
    assert devices.same_device_paths('/dev/disk/by-uuid/u', '/dev/dm-0')
    assert not devices.same_device_paths('/dev/disk/by-uuid/u', '/dev/vdb')


# An LVM logical volume: VG vg-a, LV lv-b (dashes doubled in the device-mapper name), dm-3 (253:3), XFS on /srv/lv.
DM3 = os.makedev(253, 3)
LV_UUID = '7e57e57e-0000-4000-8000-00000000000b'


def _lv_host(**over):
    kw = dict(
        mountinfo=MOUNTINFO + '50 21 253:3 / /srv/lv rw,relatime shared:30 - xfs /dev/mapper/vg--a-lv--b rw\n',
        extra={'/dev/dm-3': FakeStat('blk', rdev=DM3, dev=1), '/srv': FakeStat('dir', dev=VDA1),
               '/srv/lv': FakeStat('dir', dev=DM3), '/dev/vg-a': FakeStat('dir', dev=1)},
        links={'/dev/mapper/vg--a-lv--b': '/dev/dm-3', '/dev/vg-a/lv-b': '/dev/dm-3',
               '/dev/disk/by-uuid/' + LV_UUID: '/dev/dm-3', '/dev/disk/by-id/dm-name-vg--a-lv--b': '/dev/dm-3'},
        files={'/sys/dev/block/253:3/uevent': 'MAJOR=253\nMINOR=3\nDEVNAME=dm-3\nDEVTYPE=disk\n',
               '/sys/dev/block/253:3/dm/name': 'vg--a-lv--b\n', '/sys/dev/block/253:3/size': '1024000\n'})
    kw.update(over)
    return FakeHost(**kw)


@pytest.mark.parametrize('given', ['/dev/vg-a/lv-b', '/dev/mapper/vg--a-lv--b', '/dev/dm-3', '/srv/lv', '/srv/lv/',
                                   '/dev/disk/by-uuid/' + LV_UUID, '/dev/disk/by-id/dm-name-vg--a-lv--b'])
def test_a_logical_volume_has_one_stable_name_however_given(given):
    """Issue 20: every name of an LV resolves to its /dev/mapper name (what the boot hook can activate), not to
    the filesystem's by-uuid link (which an inactive LV does not have in early boot)."""
    dev = devices.resolve(given, _lv_host())
    assert dev.stable_name == '/dev/mapper/vg--a-lv--b'
    assert dev.path == '/dev/dm-3' and dev.kernel_name == 'dm-3'
    assert dev.mount_point == '/srv/lv' and dev.fstype == 'xfs'


def test_device_mapper_name_must_be_that_device():
    # sysfs names a mapper node that is another device (or none): by-uuid as before
    host = _lv_host(links={'/dev/mapper/vg--a-lv--b': '/dev/vdb', '/dev/disk/by-uuid/' + LV_UUID: '/dev/dm-3'})
    assert devices.resolve('/srv/lv', host).stable_name == '/dev/disk/by-uuid/' + LV_UUID
    host = _lv_host(links={'/dev/disk/by-uuid/' + LV_UUID: '/dev/dm-3'})
    assert devices.resolve('/dev/dm-3', host).stable_name == '/dev/disk/by-uuid/' + LV_UUID
    # no dm/name in sysfs (an older kernel, not device-mapper): the /dev/mapper scan still finds it
    files = {'/sys/dev/block/253:3/uevent': 'MAJOR=253\nMINOR=3\nDEVNAME=dm-3\nDEVTYPE=disk\n'}
    host = _lv_host(files=files, links={'/dev/mapper/vg--a-lv--b': '/dev/dm-3'})
    assert devices.resolve('/dev/dm-3', host).stable_name == '/dev/mapper/vg--a-lv--b'
    assert devices.dm_name(VDB, FakeHost()) is None
    assert devices.dm_name(DM3, _lv_host()) == 'vg--a-lv--b'
