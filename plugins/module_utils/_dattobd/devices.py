# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Block devices, mount points and COW file locations.

:func:`resolve` turns what the user wrote (``/dev/sda1``, a symlink such as
``/dev/disk/by-uuid/...`` or ``/dev/mapper/vg-lv``, or a mount point such as ``/data``) into a
:class:`Device`: the real block device (``st_rdev``), its mounts from ``/proc/self/mountinfo``
(read-write state of the superblock, filesystem type), its size, and a stable name that also
exists in early boot (reload scripts run in the initramfs): ``/dev/mapper/<name>`` for a
device-mapper device such as an LVM logical volume, else ``/dev/disk/by-uuid/...``. :func:`cow_location` checks that a
COW path is on the tracked filesystem and gives its path relative to the mount point (what
``reload-*`` and /proc/datto-info use).

Every host access goes through a :class:`Host` so that unit tests can replace it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import posixpath
import re
import stat as _stat

from . import validation
from .errors import DattobdError


class Host(object):
    """The host's filesystem as seen by this module (replace it in tests)."""

    mountinfo_path = '/proc/self/mountinfo'

    def stat(self, path):
        return os.stat(path)

    def lstat(self, path):
        """``os.lstat``: a symlink as itself (the stray COW file search never follows one)."""
        return os.lstat(path)

    def realpath(self, path):
        return os.path.realpath(path)

    def listdir(self, path):
        return os.listdir(path)

    def readlink(self, path):
        return os.readlink(path)

    def read_text(self, path):
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'surrogateescape')


class Mount(object):
    """One line of /proc/self/mountinfo."""

    __slots__ = ('mount_id', 'parent_id', 'major', 'minor', 'root', 'mount_point', 'mount_options',
                 'fstype', 'source', 'super_options')

    def __init__(self, mount_id, parent_id, major, minor, root, mount_point, mount_options, fstype, source,
                 super_options):
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.major = major
        self.minor = minor
        self.root = root
        self.mount_point = mount_point
        self.mount_options = mount_options
        self.fstype = fstype
        self.source = source
        self.super_options = super_options

    @property
    def read_only(self):
        """The superblock is read-only (what dattobd checks), or this mount is."""
        return 'ro' in self.super_options.split(',') or 'ro' in self.mount_options.split(',')

    def to_dict(self):
        return {'mount_point': self.mount_point, 'root': self.root, 'fstype': self.fstype, 'source': self.source,
                'read_only': self.read_only}


_ESC_RE = re.compile(r'\\([0-7]{3})')


def _unescape(field):
    return _ESC_RE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """Parse /proc/self/mountinfo text into :class:`Mount` objects (bad lines are skipped)."""
    mounts = []
    for line in text.splitlines():
        parts = line.split(' ')
        try:
            sep = parts.index('-', 6)
            major, minor = parts[2].split(':')
            mounts.append(Mount(int(parts[0]), int(parts[1]), int(major), int(minor), _unescape(parts[3]),
                                _unescape(parts[4]), parts[5], parts[sep + 1], _unescape(parts[sep + 2]),
                                parts[sep + 3] if len(parts) > sep + 3 else ''))
        except (ValueError, IndexError):
            continue
    return mounts


class Device(object):
    """A resolved block device and its mounts."""

    def __init__(self, given, path, rdev, kernel_name, mounts, stable_name, size):
        self.given = given
        self.path = path
        self.rdev = rdev
        self.kernel_name = kernel_name
        self.mounts = mounts
        self.stable_name = stable_name
        self.size = size

    @property
    def major(self):
        return os.major(self.rdev)

    @property
    def minor(self):
        return os.minor(self.rdev)

    @property
    def mount(self):
        """The main mount: the first one of the whole filesystem (root ``/``), else the first."""
        for m in self.mounts:
            if m.root == '/':
                return m
        return self.mounts[0] if self.mounts else None

    @property
    def mount_point(self):
        m = self.mount
        return m.mount_point if m else None

    @property
    def mounted(self):
        return bool(self.mounts)

    @property
    def read_only(self):
        m = self.mount
        return m.read_only if m else None

    @property
    def fstype(self):
        m = self.mount
        return m.fstype if m else None

    def to_dict(self):
        return {'given': self.given, 'path': self.path, 'kernel_name': self.kernel_name,
                'major': self.major, 'minor': self.minor, 'stable_name': self.stable_name,
                'size': self.size, 'mount_point': self.mount_point, 'fstype': self.fstype,
                'read_only': self.read_only, 'mounts': [m.to_dict() for m in self.mounts]}


def _sysfs(rdev):
    return '/sys/dev/block/%d:%d' % (os.major(rdev), os.minor(rdev))


def kernel_name(rdev, host):
    """``vdb`` for the device of ``rdev`` (from sysfs), or None."""
    try:
        for line in host.read_text(_sysfs(rdev) + '/uevent').splitlines():
            if line.startswith('DEVNAME='):
                return line.split('=', 1)[1].strip() or None
    except (OSError, UnicodeError):
        pass
    try:
        return posixpath.basename(host.realpath(_sysfs(rdev))) or None
    except OSError:
        return None


def device_size(rdev, host):
    try:
        sectors = validation.to_int(host.read_text(_sysfs(rdev) + '/size'), strip=True)
    except OSError:
        return None
    return None if sectors is None else sectors * 512


def _same_rdev(path, rdev, host):
    try:
        st = host.stat(path)
    except OSError:
        return False
    return _stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev


def dm_name(rdev, host):
    """The device-mapper name of ``rdev`` (``vg-lv`` for an LVM logical volume) from sysfs, or None."""
    try:
        name = host.read_text(_sysfs(rdev) + '/dm/name').strip()
    except (OSError, UnicodeError):
        return None
    return name or None


def stable_name(rdev, kname, host, mounts=None):
    """A name of the device that exists in early boot.

    A device-mapper device (an LVM logical volume, whether given as ``/dev/<vg>/<lv>``,
    ``/dev/mapper/<vg>-<lv>``, ``/dev/dm-N`` or its mount point) is named by its own
    ``/dev/mapper/<name>``: the boot hook can tell the LV from it and activate it, and a filesystem
    UUID may be shared by an LVM snapshot or a clone. Any other device: by-uuid, else a
    /dev/mapper name, else the kernel name.
    """
    name = dm_name(rdev, host)
    if name and '/' not in name and name not in ('.', '..'):
        path = '/dev/mapper/' + name
        if _same_rdev(path, rdev, host):
            return path
    for directory in ('/dev/disk/by-uuid', '/dev/mapper'):
        try:
            names = sorted(host.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name == 'control':
                continue
            path = posixpath.join(directory, name)
            if _same_rdev(path, rdev, host):
                return path
    if kname:
        return '/dev/' + kname
    return None


def read_mounts(host):
    try:
        return parse_mountinfo(host.read_text(host.mountinfo_path))
    except (OSError, UnicodeError) as exc:
        raise DattobdError('Cannot read %s: %s.' % (host.mountinfo_path, exc))


def mounts_of(rdev, mounts):
    """The entries of ``mounts`` (:func:`read_mounts`) whose source is the device number ``rdev``."""
    number = (os.major(rdev), os.minor(rdev))
    return [m for m in mounts if (m.major, m.minor) == number]


def node_mount(path, host=None):
    """The first mount of the block device node ``path`` (matched by ``st_rdev``), or None.

    None as well when ``path`` does not exist or is no block device; an unreadable mountinfo
    raises :class:`DattobdError`.
    """
    host = host or Host()
    try:
        st = host.stat(path)
    except OSError:
        return None
    if not _stat.S_ISBLK(st.st_mode):
        return None
    own = mounts_of(st.st_rdev, read_mounts(host))
    return own[0] if own else None


def resolve(device, host=None):
    """Resolve a block device path, a symlink to one, or a mount point into a :class:`Device`."""
    host = host or Host()
    if not isinstance(device, str) or not device.startswith('/'):
        raise DattobdError('device must be an absolute path (a block device or a mount point), got %r.' % (device,))
    try:
        st = host.stat(device)
    except OSError as exc:
        raise DattobdError('device %s does not exist (%s).' % (device, exc.strerror or exc),
                           hint='Give a block device (e.g. /dev/sdb1, /dev/disk/by-uuid/...) or a mount point.')
    mounts = read_mounts(host)
    if _stat.S_ISBLK(st.st_mode):
        rdev = st.st_rdev
    elif _stat.S_ISDIR(st.st_mode):
        real = host.realpath(device)
        tops = [m for m in mounts if m.mount_point == real]
        if not tops:
            raise DattobdError('%s is a directory but not a mount point.' % device,
                               hint='Give the mount point of the filesystem to track, or its block device.')
        top = tops[-1]
        rdev = os.makedev(top.major, top.minor)
        if top.major == 0:
            raise DattobdError('%s is a %s filesystem, which has no block device dattobd can track.'
                               % (device, top.fstype),
                               hint='dattobd tracks block-device filesystems such as ext4 and XFS.')
    else:
        raise DattobdError('%s is neither a block device nor a mount point.' % device,
                           hint='Give a block device (e.g. /dev/sdb1, /dev/disk/by-uuid/...) or a mount point.')
    kname = kernel_name(rdev, host)
    own = mounts_of(rdev, mounts)
    path = '/dev/' + kname if kname else None
    if path is None or not _same_rdev(path, rdev, host):
        path = host.realpath(device) if _stat.S_ISBLK(st.st_mode) else None
        if path is None:
            for m in own:
                if _same_rdev(m.source, rdev, host):
                    path = host.realpath(m.source)
                    break
        if path is None:
            raise DattobdError('Cannot find the device node of %s (%d:%d) under /dev.'
                               % (device, os.major(rdev), os.minor(rdev)))
    return Device(device, path, rdev, kname, own, stable_name(rdev, kname, host), device_size(rdev, host))


def require_mounted_rw(dev):
    """Fail unless the filesystem of ``dev`` is mounted read-write (what setup-snapshot needs)."""
    if not dev.mounted:
        raise DattobdError('%s (%s) is not mounted.' % (dev.given, dev.path),
                           hint='Mount the filesystem read-write first: dattobd tracks mounted filesystems only.')
    if dev.read_only:
        raise DattobdError('%s (%s) is mounted read-only at %s.' % (dev.given, dev.path, dev.mount_point),
                           hint='Remount it read-write (mount -o remount,rw %s) first.' % shlex.quote(dev.mount_point))


def same_device(path, dev, host=None):
    """Whether ``path`` (e.g. a block_device from /proc/datto-info) names the block device of ``dev``.

    ``dev`` is a :func:`resolve` result (it exists): an empty or vanished ``path`` is not it. Two
    names that are only equal as strings are compared by :func:`same_device_paths` instead.
    """
    host = host or Host()
    if not path:
        return False
    if _same_rdev(path, dev.rdev, host):
        return True
    try:
        return host.realpath(path) == dev.path
    except OSError:
        return False


def same_device_paths(a, b, host=None):
    """Whether two device paths name one device, neither of which need exist (reload scripts vs trackers).

    Equal strings are one device; two block devices compare by ``st_rdev``; anything else (a
    character device, a missing path) compares by realpath.
    """
    if a == b:
        return True
    host = host or Host()
    try:
        sa, sb = host.stat(a), host.stat(b)
        if _stat.S_ISBLK(sa.st_mode) and _stat.S_ISBLK(sb.st_mode):
            return sa.st_rdev == sb.st_rdev
    except OSError:
        pass
    return host.realpath(a) == host.realpath(b)


def cow_location(dev, path, host=None):
    """Check a COW file path and return ``(absolute, relative_to_mount_point)``.

    The file must be on the tracked filesystem (st_dev of its directory), must not be a directory
    and, when it exists, must be a regular file.
    """
    host = host or Host()
    if not isinstance(path, str) or not path.startswith('/'):
        raise DattobdError('COW file path must be absolute, got %r.' % (path,))
    if '\0' in path or '\n' in path:
        raise DattobdError('COW file path contains a NUL byte or a newline: %r.' % (path,))
    path = posixpath.normpath(path)
    parent = posixpath.dirname(path)
    try:
        pst = host.stat(parent)
    except OSError:
        raise DattobdError('The directory %s of the COW file does not exist.' % parent,
                           hint='Create it (mode 0700) on the tracked filesystem.')
    if not _stat.S_ISDIR(pst.st_mode):
        raise DattobdError('%s (the directory of the COW file) is not a directory.' % parent)
    if pst.st_dev != dev.rdev:
        raise DattobdError('The COW file %s is not on the filesystem of %s (mounted at %s); dattobd needs the COW '
                           'file on the tracked filesystem itself.' % (path, dev.given, dev.mount_point),
                           hint='Put it in a directory of %s.' % (dev.mount_point or dev.path))
    try:
        fst = host.stat(path)
    except OSError:
        fst = None
    if fst is not None and _stat.S_ISDIR(fst.st_mode):
        raise DattobdError('The COW file path %s is a directory.' % path,
                           hint='Give a file name, or set cow_dir to the directory.')
    if fst is not None and not _stat.S_ISREG(fst.st_mode):
        raise DattobdError('The COW file path %s exists and is not a regular file.' % path)
    return path, relative_to_mount(dev, path, host)


def relative_to_mount(dev, path, host=None):
    """``path`` relative to the root of its filesystem (``/data/x/.cow`` -> ``/x/.cow`` for /data)."""
    host = host or Host()
    real_parent = host.realpath(posixpath.dirname(path))
    real = posixpath.join(real_parent, posixpath.basename(path))
    best = None
    for m in dev.mounts:
        mp = m.mount_point
        if real == mp or real.startswith(mp.rstrip('/') + '/'):
            if best is None or len(mp) > len(best.mount_point):
                best = m
    if best is None:
        raise DattobdError('The COW file %s is not under a mount point of %s.' % (path, dev.given),
                           hint='Put it on the tracked filesystem.')
    rest = real[len(best.mount_point.rstrip('/')):] if best.mount_point != '/' else real
    rel = posixpath.normpath(best.root.rstrip('/') + '/' + rest.lstrip('/'))
    return rel if rel.startswith('/') else '/' + rel
