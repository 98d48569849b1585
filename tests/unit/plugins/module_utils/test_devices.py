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
