# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake host for devices.py / tracker.py tests: block devices, directories, symlinks, mountinfo.

It mirrors the golden guest: /dev/vda1 (254:1) is the root ext4, /dev/vdb (254:16) an ext4 mounted
at /data, /dev/vdc1 (254:33) unmounted, /dev/datto0 (252:0) a snapshot device.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import posixpath
import stat

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import devices

VDA1 = os.makedev(254, 1)
VDB = os.makedev(254, 16)
VDC1 = os.makedev(254, 33)
DATTO0 = os.makedev(252, 0)
UUID_VDB = '0b6c2f3e-5a1d-4c55-b1e2-a0f4c9d8e7b6'
UUID_ROOT = '11111111-2222-3333-4444-555555555555'

MOUNTINFO = (
    '21 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n'
    '22 21 0:21 / /proc rw,relatime shared:2 - proc proc rw\n'
    '40 21 254:16 / /data rw,relatime shared:20 - ext4 /dev/vdb rw\n'
)


class FakeStat(object):
    def __init__(self, kind, rdev=0, dev=0):
        self.st_mode = {'blk': stat.S_IFBLK | 0o660, 'dir': stat.S_IFDIR | 0o755,
                        'file': stat.S_IFREG | 0o600, 'chr': stat.S_IFCHR | 0o600, 'lnk': stat.S_IFLNK | 0o777}[kind]
        self.st_rdev = rdev
        self.st_dev = dev


def _err(path):
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)


class FakeHost(devices.Host):
    mountinfo_path = '/proc/self/mountinfo'

    def __init__(self, mountinfo=MOUNTINFO, extra=None, links=None, files=None, remove=()):
        self.entries = {
            '/': FakeStat('dir', dev=VDA1),
            '/dev': FakeStat('dir', dev=1),
            '/dev/vda1': FakeStat('blk', rdev=VDA1, dev=1),
            '/dev/vdb': FakeStat('blk', rdev=VDB, dev=1),
            '/dev/vdc1': FakeStat('blk', rdev=VDC1, dev=1),
            '/dev/disk': FakeStat('dir', dev=1),
            '/dev/disk/by-uuid': FakeStat('dir', dev=1),
            '/dev/mapper': FakeStat('dir', dev=1),
            '/dev/mapper/control': FakeStat('chr', rdev=os.makedev(10, 236), dev=1),
            '/data': FakeStat('dir', dev=VDB),
            '/data/sub': FakeStat('dir', dev=VDB),
            '/data/adir': FakeStat('dir', dev=VDB),
            '/root': FakeStat('dir', dev=VDA1),
            '/etc': FakeStat('dir', dev=VDA1),
            '/etc/hostname': FakeStat('file', dev=VDA1),
            '/mnt': FakeStat('dir', dev=VDA1),
            '/proc': FakeStat('dir', dev=os.makedev(0, 21)),
        }
        self.links = {
            '/dev/disk/by-uuid/' + UUID_VDB: '/dev/vdb',
            '/dev/disk/by-uuid/' + UUID_ROOT: '/dev/vda1',
        }
        self.files = {
            '/proc/self/mountinfo': mountinfo,
            '/sys/dev/block/254:1/uevent': 'MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\n',
            '/sys/dev/block/254:16/uevent': 'MAJOR=254\nMINOR=16\nDEVNAME=vdb\nDEVTYPE=disk\n',
            '/sys/dev/block/254:33/uevent': 'MAJOR=254\nMINOR=33\nDEVNAME=vdc1\nDEVTYPE=partition\n',
            '/sys/dev/block/254:16/size': '524288\n',
            '/sys/dev/block/254:1/size': '20971520\n',
        }
        self.entries.update(extra or {})
        self.links.update(links or {})
        self.files.update(files or {})
        for path in remove:
            self.entries.pop(path, None)
            self.links.pop(path, None)

    def realpath(self, path):
        path = posixpath.normpath(path)
        for dummy in range(20):
            if path in self.links:
                path = posixpath.normpath(self.links[path])
                continue
            break
        return path

    def stat(self, path):
        real = self.realpath(path)
        if real in self.entries:
            return self.entries[real]
        raise _err(path)

    def lstat(self, path):
        """A symlink as itself (``links``), else what :meth:`stat` gives."""
        path = posixpath.normpath(path)
        if path in self.links:
            return FakeStat('lnk', dev=self.stat(posixpath.dirname(path)).st_dev)
        return self.stat(path)

    def listdir(self, path):
        real = self.realpath(path)
        if real not in self.entries:
            raise _err(path)
        prefix = real.rstrip('/') + '/'
        names = set()
        for p in list(self.entries) + list(self.links):
            if p.startswith(prefix) and '/' not in p[len(prefix):] and p != real:
                names.add(p[len(prefix):])
        return sorted(names)

    def read_text(self, path):
        if path in self.files:
            return self.files[path]
        raise _err(path)
