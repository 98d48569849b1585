# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What holds ``/dev/datto<N>`` open when the driver answers EBUSY, and how to release it.

dattobd refuses ``destroy``, the transitions and ``reconfigure`` while its snapshot device is open.
Besides a mount and a process (``dd``, a backup), the usual holders are a device-mapper target
over the snapshot (``kpartx``, ``dmsetup create``, LVM scanning the snapshot and activating a
volume group on it) and a loop device backed by it. :func:`diagnose` finds them:

- ``/sys/block/datto<N>/holders/*``: for ``dm-X`` its name and uuid (``/sys/block/dm-X/dm/``),
  what it maps onto (``slaves``), its own holders and mounts;
- every ``/sys/block/loop*`` whose ``loop/backing_file`` is ``/dev/datto<N>`` (a loop device
  does not show in ``holders``);
- the mounts of the snapshot device in ``/proc/self/mountinfo``;
- the processes that have it open (a bounded scan of ``/proc/<pid>/fd``).

Reading (:func:`read_tree`, through a :class:`devices.Host`, with ``sys_root``/``proc_root`` so
that tests give a fixture tree) is separate from judging (:func:`judge`, pure). :func:`describe`
words the operator's message; :func:`release` removes the holders :func:`judge` found stale.

The collection makes no device-mapper targets and no loop devices over a snapshot device, so
nothing is released because the collection made it: only what is plainly stale is -- a dm target
that maps solely onto ``/dev/datto<N>``, or a loop device backed by it, that nothing uses (not
mounted, no holder of its own, no process has it open). A mount is never released.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import re
import shlex

from . import devices as _devices
from .errors import DattobdError
from .runner import run_timed

# Driver operations refused with EBUSY while /dev/datto<N> is open (shared/reference/dattobd.md 1.3).
BUSY_OPERATIONS = ('destroy', 'transition-to-incremental', 'transition-to-snapshot', 'reconfigure')
# Bounds of the /proc/<pid>/fd scan: it is a diagnosis, not worth more than this.
MAX_PIDS = 4096
MAX_FDS = 100000
_DM_RE = re.compile(r'^dm-[0-9]+$')
_LOOP_RE = re.compile(r'^loop[0-9]+$')
_SAFE_NAME_RE = re.compile(r'^[A-Za-z0-9_.+#@:=][A-Za-z0-9_.+#@:=-]*$')

# a /proc entry of a process: ASCII digits only
_PID_RE = re.compile(r'[0-9]+$')


class HolderError(DattobdError):
    """A holder could not be released."""


def _read(host, path):
    """Stripped text of ``path``, or None when it cannot be read."""
    try:
        return host.read_text(path).strip()
    except (OSError, UnicodeError):
        return None


def _list(host, path):
    try:
        return sorted(host.listdir(path))
    except OSError:
        return []


def _dev_number(text):
    """``'253:3'`` -> ``(253, 3)``; None when it is not that."""
    m = re.match(r'^([0-9]+):([0-9]+)$', text or '')
    return (int(m.group(1)), int(m.group(2))) if m else None


def lvm_names(name, uuid):
    """``('vg', 'lv')`` of an LVM logical volume (uuid ``LVM-...``; ``my--vg-lv`` -> ``my-vg``, ``lv``), else None.

    LVM joins the names with ``-`` and doubles every ``-`` inside them.
    """
    if not (uuid or '').startswith('LVM-') or not name:
        return None
    parts = re.split(r'(?<!-)-(?!-)', name)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    return parts[0].replace('--', '-'), parts[1].replace('--', '-')


def read_tree(minor, host=None, sys_root='/sys', proc_root='/proc', scan_processes=True):
    """Everything :func:`judge` needs about ``/dev/datto<minor>``, read from sysfs and procfs.

    Unreadable parts are left out (a diagnosis never fails). Returns a dict: ``kname``, ``dev``,
    ``holders`` (``{kname: {'dev', 'name', 'uuid', 'slaves', 'holders'}}``), ``loops``
    (``{kname: {'dev', 'backing_file', 'holders'}}``, only the loop devices backed by the snapshot
    device), ``mounts`` (:class:`devices.Mount` list) and ``openers`` (``{path: [(pid, comm)]}``).
    """
    host = host or _devices.Host()
    kname = 'datto%d' % int(minor)
    block = posixpath.join(sys_root, 'block')
    tree = {'kname': kname, 'dev': _dev_number(_read(host, posixpath.join(block, kname, 'dev'))),
            'holders': {}, 'loops': {}, 'mounts': [], 'openers': {}}
    if tree['dev'] is None:  # no snapshot device (no tracker, or not a snapshot now): nothing holds it
        return tree
    for name in _list(host, posixpath.join(block, kname, 'holders')):
        base = posixpath.join(block, name)
        tree['holders'][name] = {
            'dev': _dev_number(_read(host, posixpath.join(base, 'dev'))),
            'name': _read(host, posixpath.join(base, 'dm', 'name')),
            'uuid': _read(host, posixpath.join(base, 'dm', 'uuid')),
            'slaves': _list(host, posixpath.join(base, 'slaves')),
            'holders': _list(host, posixpath.join(base, 'holders'))}
    node = '/dev/' + kname
    for name in _list(host, block):
        if not _LOOP_RE.match(name):
            continue
        backing = _read(host, posixpath.join(block, name, 'loop', 'backing_file'))
        if backing is None:
            continue
        backing = re.sub(r' \(deleted\)$', '', backing)
        try:
            real = host.realpath(backing)
        except OSError:
            real = backing
        if node in (backing, real):
            tree['loops'][name] = {'dev': _dev_number(_read(host, posixpath.join(block, name, 'dev'))),
                                   'backing_file': backing,
                                   'holders': _list(host, posixpath.join(block, name, 'holders'))}
    text = _read(host, posixpath.join(proc_root, 'self', 'mountinfo'))
    tree['mounts'] = _devices.parse_mountinfo(text) if text else []
    if scan_processes:
        paths = [node] + ['/dev/' + n for n in list(tree['holders']) + list(tree['loops'])]
        tree['openers'] = scan_openers(paths, host, proc_root)
    return tree


def scan_openers(paths, host=None, proc_root='/proc', max_pids=MAX_PIDS, max_fds=MAX_FDS):
    """``{path: [(pid, comm)]}``: the processes with one of ``paths`` open (bounded, best effort)."""
    host = host or _devices.Host()
    wanted = set(paths)
    found = {}
    fds_seen = 0
    pids = [p for p in _list(host, proc_root) if _PID_RE.match(p)][:max_pids]
    for pid in pids:
        fd_dir = posixpath.join(proc_root, pid, 'fd')
        hits = set()
        for fd in _list(host, fd_dir):
            fds_seen += 1
            if fds_seen > max_fds:
                return found
            try:
                target = host.readlink(posixpath.join(fd_dir, fd))
            except OSError:
                continue
            if target in wanted:
                hits.add(target)
        for target in sorted(hits):
            comm = _read(host, posixpath.join(proc_root, pid, 'comm')) or '?'
            found.setdefault(target, []).append((int(pid), comm))
    return found


def _mount_points(dev, mounts):
    if dev is None:
        return []
    return [m.mount_point for m in mounts if (m.major, m.minor) == dev]


def _busy_reason(mount_points, holders, openers):
    """Why a holder is itself in use (so it is not stale), or None."""
    if mount_points:
        return 'it is mounted at %s' % ', '.join(mount_points)
    if holders:
        return 'it is held by %s' % ', '.join(holders)
    if openers:
        return 'it is open by %s' % ', '.join('pid %d (%s)' % o for o in openers)
    return None


def judge(tree):
    """The holders of a :func:`read_tree` result as dicts, each with its release command (pure).

    Keys: ``kind`` (``dm``, ``loop``, ``mount``, ``process``), ``device`` (``dm-3``, ``loop0``, or
    None), ``name``, ``uuid``, ``lvm`` (``vg/lv``), ``backing_file``, ``mount_points``, ``pids``,
    ``command`` (what releases it, as text), ``releasable`` (stale: ``release_holders`` may remove
    it), ``argv`` (the command ``release_holders`` runs), ``reason`` (why it is not releasable),
    ``released`` (False until :func:`release`).
    """
    kname = tree['kname']
    mounts = tree.get('mounts') or []
    openers = tree.get('openers') or {}
    out = []
    for dev_name, h in sorted(tree.get('holders', {}).items()):
        entry = _entry('dm' if _DM_RE.match(dev_name) and h.get('name') else 'other', dev_name)
        entry.update(name=h.get('name'), uuid=h.get('uuid'), mount_points=_mount_points(h.get('dev'), mounts),
                     pids=[p for p, c in openers.get('/dev/' + dev_name, [])])
        if entry['kind'] == 'dm':
            lvm = lvm_names(h['name'], h.get('uuid'))
            entry['lvm'] = '%s/%s' % lvm if lvm else None
            argv = ['lvchange', '-an', entry['lvm']] if lvm else ['dmsetup', 'remove', h['name']]
            entry['command'] = shlex.join(argv)
            reason = _busy_reason(entry['mount_points'], h.get('holders'), openers.get('/dev/' + dev_name))
            if reason is None and h.get('slaves') != [kname]:
                reason = 'it maps onto %s as well' % ', '.join(s for s in h.get('slaves') or [] if s != kname)
            if reason is None and not _SAFE_NAME_RE.match(h['name']):
                reason = 'its name %r is not one the collection passes to dmsetup' % h['name']
            _releasable(entry, reason, ['dmsetup', 'remove', h['name']])
        else:
            entry['reason'] = 'the collection does not know how to release a %s holder' % dev_name
        out.append(entry)
    for dev_name, loop in sorted(tree.get('loops', {}).items()):
        entry = _entry('loop', dev_name)
        entry.update(backing_file=loop.get('backing_file'), mount_points=_mount_points(loop.get('dev'), mounts),
                     pids=[p for p, c in openers.get('/dev/' + dev_name, [])],
                     command=shlex.join(['losetup', '-d', '/dev/' + dev_name]))
        reason = _busy_reason(entry['mount_points'], loop.get('holders'), openers.get('/dev/' + dev_name))
        _releasable(entry, reason, ['losetup', '-d', '/dev/' + dev_name])
        out.append(entry)
    for point in _mount_points(tree.get('dev'), mounts):
        entry = _entry('mount', None)
        entry.update(mount_points=[point], command=shlex.join(['umount', point]),
                     reason='a mounted filesystem is never unmounted by the collection')
        out.append(entry)
    for pid, comm in openers.get('/dev/' + kname, []):
        entry = _entry('process', None)
        entry.update(name=comm, pids=[pid], command=shlex.join(['fuser', '-v', '/dev/' + kname]),
                     reason='a process is never stopped by the collection')
        out.append(entry)
    return out


def _entry(kind, device):
    return {'kind': kind, 'device': device, 'name': None, 'uuid': None, 'lvm': None, 'backing_file': None,
            'mount_points': [], 'pids': [], 'command': None, 'releasable': False, 'argv': None, 'reason': None,
            'released': False}


def _releasable(entry, reason, argv):
    if reason is None:
        entry.update(releasable=True, argv=argv)
    else:
        entry['reason'] = reason


def diagnose(minor, host=None, sys_root='/sys', proc_root='/proc', scan_processes=True):
    """The holders of ``/dev/datto<minor>`` (:func:`judge` of :func:`read_tree`); never raises for what it reads."""
    return judge(read_tree(minor, host, sys_root, proc_root, scan_processes))


def _phrase(h):
    umount = ', '.join('umount %s' % shlex.quote(p) for p in h['mount_points'])
    if h['kind'] == 'dm':
        what = ('LVM logical volume %s' % h['lvm']) if h['lvm'] else ("device-mapper '%s'" % h['name'])
        verb = 'deactivate' if h['lvm'] else 'remove'
        if h['mount_points']:
            return '%s (%s, mounted at %s: unmount with: %s, then %s with: %s)' % (
                h['device'], what, ', '.join(h['mount_points']), umount, verb, h['command'])
        return '%s (%s, %s with: %s)' % (h['device'], what, verb, h['command'])
    if h['kind'] == 'loop':
        if h['mount_points']:
            return '%s (loop device backed by %s, mounted at %s: unmount with: %s, then detach with: %s)' % (
                h['device'], h['backing_file'], ', '.join(h['mount_points']), umount, h['command'])
        return '%s (loop device backed by %s, detach with: %s)' % (h['device'], h['backing_file'], h['command'])
    if h['kind'] == 'mount':
        return 'mounted at %s (unmount with: %s)' % (h['mount_points'][0], h['command'])
    if h['kind'] == 'process':
        return 'open by pid %d (%s; see: %s)' % (h['pids'][0], h['name'], h['command'])
    return '%s (unknown holder: see /sys/block/%s)' % (h['device'], h['device'])


def describe(minor, holders):
    """``/dev/datto0 is held by dm-3 (device-mapper 'x', remove with: dmsetup remove x); mounted at ...``."""
    node = '/dev/datto%d' % int(minor)
    if not holders:
        return ('%s is busy, but no holder was found (no holder in /sys/block/datto%d/holders, no loop device, '
                'no mount, no process with it open): a udev probe or a process in another mount namespace'
                % (node, int(minor)))
    return '%s is held by %s' % (node, '; '.join(_phrase(h) for h in holders))


def release(holders, actions, check_mode=False, runner=None, which=None, timeout=60):
    """Remove the releasable (stale) ``holders``: ``dmsetup remove <name>``, ``losetup -d /dev/loopX``.

    Appends each command (as text, run or, in check mode, planned) to ``actions`` and marks each
    removed holder ``released``. Every tool is looked up (``which(name)`` -> path or None) before
    the first command runs. A command that fails raises :class:`HolderError` naming it and its
    output; the holders released before it stay released (and are in ``actions``).
    """
    runner = runner or run_timed
    todo = [h for h in holders if h.get('releasable') and h.get('argv') and not h.get('released')]
    argvs = []
    for h in todo:
        tool = which(h['argv'][0]) if which else h['argv'][0]
        if not tool:
            raise HolderError('%s was not found: cannot release %s.' % (h['argv'][0], h['device']),
                              hint='Install it or run %s by hand.' % h['command'], holders=public(holders))
        argvs.append([tool] + list(h['argv'][1:]))
    for h, argv in zip(todo, argvs):
        actions.append(shlex.join(argv))
        if check_mode:
            continue
        try:
            rc, out, err = runner(argv, timeout=timeout)
        except DattobdError as exc:
            raise HolderError('Releasing %s failed: %s' % (h['device'], exc.msg), hint=exc.hint,
                              holders=public(holders))
        if rc != 0:
            raise HolderError('Releasing %s failed: %s exited %s: %s' % (
                h['device'], shlex.join(argv), rc, (err or out or 'no output').strip()),
                hint='Check what still uses %s (dmsetup info, losetup -l, fuser -v) and release it by hand.'
                     % h['device'], holders=public(holders), rc=rc, stderr=err)
        h['released'] = True
    return [h for h in todo if h['released']]


def public(holders):
    """The holders as the modules return them (without the internal argv)."""
    return [dict((k, v) for k, v in h.items() if k != 'argv') for h in holders]
