# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host hygiene: other snapshot drivers beside dattobd, and stray COW files.

* :func:`conflicts` finds other block snapshot / changed-block-tracking drivers that are loaded
  (``/proc/modules``) or installed (module files under ``/lib/modules/*/{updates,extra,weak-updates}``,
  DKMS, packages): Veeam's ``veeamsnap`` and ``blksnap``, ``elastio-snap`` (the dattobd fork) and
  Acronis' ``snapapi``. Two drivers hooking the same block devices' I/O path and the same mount
  calls is a configuration nobody tests; the engine refuses to install beside one unless told to.
* :func:`stray_cow_files` lists files named like the collection's COW files on a tracked
  filesystem that no tracker and no reload script names (a failed unlink, upstream issue #369).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import posixpath
import re
import stat as _stat

from .errors import DattobdError

# module name (as /proc/modules shows it, '-' -> '_') -> (product, package names)
DRIVERS = {
    'veeamsnap': ('Veeam Agent for Linux (veeamsnap)', ('veeamsnap', 'kmod-veeamsnap')),
    'blksnap': ('Veeam Agent for Linux (blksnap)', ('blksnap', 'kmod-blksnap')),
    'elastio_snap': ('elastio-snap (dattobd fork)', ('elastio-snap', 'dkms-elastio-snap', 'elastio-snap-utils')),
    'snapapi': ('Acronis (snapapi)', ('snapapi26', 'snapapi26_modules')),
}
MODULE_DIRS = ('updates', 'extra', 'weak-updates')
_KO = re.compile(r'^(?P<name>[A-Za-z0-9_-]+)\.ko(?:\.(?:xz|zst|gz))?$')


def _driver(module_name):
    """The DRIVERS key for a kernel module name (snapapi26 -> snapapi), or None."""
    name = module_name.replace('-', '_')
    if name in DRIVERS:
        return name
    if name.startswith('snapapi'):
        return 'snapapi'
    return None


def parse_proc_modules(text):
    """``/proc/modules`` -> list of module names."""
    return [line.split()[0] for line in (text or '').splitlines() if line.strip()]


def conflicts(host, dkms_status=None):
    """Other snapshot drivers on the host: list of dicts ``driver``, ``product``, ``loaded``,
    ``modules`` (module files), ``dkms`` (``dkms status`` lines), ``packages`` (installed ones).

    ``host`` is a :class:`kernels.Host`; ``dkms_status`` the text of ``dkms status`` (all modules) or None.
    """
    found = {}

    def get(key):
        return found.setdefault(key, dict(driver=key, product=DRIVERS[key][0], loaded=False, modules=[],
                                          dkms=[], packages=[]))

    for name in parse_proc_modules(host.read('/proc/modules')):
        key = _driver(name)
        if key:
            get(key)['loaded'] = True
    for release in host.listdir('/lib/modules'):
        for sub in MODULE_DIRS:
            base = host.p('/lib/modules/%s/%s' % (release, sub))
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames.sort()
                for fname in sorted(filenames):
                    m = _KO.match(fname)
                    key = _driver(m.group('name')) if m else None
                    if key:
                        rel = os.path.relpath(os.path.join(dirpath, fname), host.root)
                        get(key)['modules'].append('/' + rel)
    for line in (dkms_status or '').splitlines():
        name = re.split(r'[/,:\s]', line.strip(), 1)[0]
        key = _driver(name) if name else None
        if key:
            get(key)['dkms'].append(line.strip())
    names = sorted(set(p for d in DRIVERS.values() for p in d[1]))
    res = host.cmd('dpkg-query', ['-W', '-f=${db:Status-Abbrev} ${Package}\n'] + names)
    if res is not None:
        for line in res[1].splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith('ii'):
                _add_package(get, parts[1])
    else:
        res = host.cmd('rpm', ['-q', '--qf', '%{NAME}\n'] + names)
        if res is not None:
            for line in res[1].splitlines():
                line = line.strip()
                if line in names:
                    _add_package(get, line)
    return [found[k] for k in sorted(found)]


def _add_package(get, package):
    for key, (dummy, packages) in DRIVERS.items():
        if package in packages:
            get(key)['packages'].append(package)


def describe(found):
    """One sentence per conflicting driver."""
    out = []
    for c in found:
        where = []
        if c['loaded']:
            where.append('loaded')
        if c['modules']:
            where.append('module files %s' % ', '.join(c['modules']))
        if c['dkms']:
            where.append('DKMS (%s)' % '; '.join(c['dkms']))
        if c['packages']:
            where.append('packages %s' % ', '.join(c['packages']))
        out.append('%s: %s' % (c['product'], ', '.join(where)))
    return out


def refuse_conflicts(found):
    """Raise when another snapshot driver is present (the caller checks allow_conflicts first)."""
    if found:
        raise DattobdError(
            'Another snapshot driver is on this host: %s. Two drivers that hook the same block I/O and mount '
            'calls are an untested combination (crashes and lost change tracking are possible).'
            % '; '.join(describe(found)),
            hint='Remove the other product (and reboot if its module is loaded), or accept the risk with '
                 'allow_conflicts=true (role: dattobd_engine_allow_conflicts=true).',
            conflicts=found)


# --- stray COW files ---------------------------------------------------------------------------

def cow_pattern(template):
    """A regex for the file names a COW name template (``.datto_{minor}_{seq}``) produces."""
    parts = re.split(r'(\{minor\}|\{seq\})', template)
    rx = ''.join('(?P<minor>[0-9]+)' if p == '{minor}' else '(?P<seq>[0-9]+)' if p == '{seq}' else re.escape(p)
                 for p in parts)
    return re.compile('^%s$' % rx)


def _rel(path):
    return posixpath.normpath('/' + (path or '').lstrip('/'))


def stray_cow_files(host, mount_point, named, template, dirs=(), protected=()):
    """Files on the filesystem mounted at ``mount_point`` whose names match ``template`` and that nothing names.

    ``named``: COW paths relative to the mount point that a tracker or a reload script names (kept);
    ``dirs``: directories (relative) to look in besides the root and the named files' directories;
    ``protected``: absolute paths never listed (the previous COW file of this run, COW files a backup
    record still needs). Only regular files are listed, never a symlink or a directory.
    Returns a sorted list of absolute paths.
    """
    pattern = cow_pattern(template)
    named = set(_rel(n) for n in named if n)
    look = set(['/']) | set(posixpath.dirname(n) for n in named) | set(_rel(d) for d in dirs if d)
    keep = set(posixpath.normpath(p) for p in protected if p)
    lstat = getattr(host, 'lstat', None) or host.stat
    out = []
    for rel_dir in sorted(look):
        directory = posixpath.join(mount_point, rel_dir.lstrip('/')) if rel_dir != '/' else mount_point
        try:
            names = host.listdir(directory)
        except OSError:
            continue
        for name in sorted(names):
            if not pattern.match(name):
                continue
            rel = posixpath.join(rel_dir, name)
            path = posixpath.join(directory, name)
            if rel in named or posixpath.normpath(path) in keep:
                continue
            try:
                st = lstat(path)
            except OSError:
                continue
            if not _stat.S_ISREG(st.st_mode):
                continue
            out.append(path)
    return sorted(set(out))


def pending_cow_files(state_dir):
    """COW files the backup records in ``state_dir`` still need (``pending_cow_files``): never stray."""
    out = []
    try:
        names = sorted(os.listdir(state_dir))
    except OSError:
        return out
    for name in names:
        if not name.endswith('.json'):
            continue
        try:
            with open(os.path.join(state_dir, name)) as fh:
                record = json.load(fh)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        for entry in (record.get('pending_cow_files') or []) if isinstance(record, dict) else []:
            if isinstance(entry, dict) and entry.get('path'):
                out.append(entry['path'])
            elif isinstance(entry, str):
                out.append(entry)
    return out


def remove_files(paths, check_mode=False, unlink=os.unlink):
    """Remove ``paths`` (planned only in check mode). Returns ``(actions, errors)``."""
    actions, errors = [], []
    for path in paths:
        actions.append('remove %s' % path)
        if check_mode:
            continue
        try:
            unlink(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                continue
            why = exc.strerror or str(exc)
            if exc.errno == errno.EPERM:
                why += ' (the driver holds it open and immutable: a tracker still uses it)'
            errors.append('%s: %s' % (path, why))
    return actions, errors


def tracked_strays(host, sources, template, protected=()):
    """Stray COW files of every tracked filesystem.

    ``sources``: ``(block_device, cow_file relative to its mount point)`` of every tracker and every
    reload script; ``host``: a :class:`devices.Host`. Filesystems that are not mounted are skipped
    (nothing to look at). Returns dicts ``path``, ``mount_point``, ``block_device``.
    """
    from . import devices as _devices
    mounts = _devices.read_mounts(host)
    groups = {}
    for bdev, rel in sources:
        if not bdev or not rel:
            continue
        try:
            st = host.stat(bdev)
        except OSError:
            continue
        if not _stat.S_ISBLK(st.st_mode):
            continue
        own = [m for m in _devices.mounts_of(st.st_rdev, mounts) if m.root == '/']
        if not own:
            continue
        group = groups.setdefault(st.st_rdev, dict(mount_point=own[0].mount_point, block_device=bdev, named=[]))
        group['named'].append(rel)
    out = []
    for rdev in sorted(groups):
        g = groups[rdev]
        for path in stray_cow_files(host, g['mount_point'], g['named'], template, protected=protected):
            out.append(dict(path=path, mount_point=g['mount_point'], block_device=g['block_device']))
    return out
