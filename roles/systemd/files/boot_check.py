#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapfleet.dattobd post-boot check: did every declared tracker come back?

Installed by role snapfleet.dattobd.systemd and run once per boot by
snapfleet-dattobd-boot-check.service (after local-fs.target). A tracker is declared by a reload
script ``/etc/datto/dla/reload_*``. For each one it reads ``/proc/datto-info`` (with a timeout:
a wedged driver blocks its readers) and ``/proc/self/mountinfo`` and classifies the volume:

ok          active (state 2/3), or dormant (0/1) after being active
pending     unverified (4/5) and its filesystem is not mounted writable yet: fine. With --settle N
            (the unit passes dattobd_systemd_boot_check_settle) the check looks again every 2 s
            for up to N s while a volume is pending (or missing with its filesystem not
            mounted yet, to tell whether it was then written untracked): a nofail mount, or
            one made by a later unit, comes after local-fs.target, and dattobd turns the
            tracker active when it sees the writable mount
unverified  unverified (4/5) although its filesystem is mounted writable: the driver did not
            see the mount (new mount API, upstream issue #422); writes are not tracked. With
            --settle, only when it stays so for 10 s: a mount shows in mountinfo a moment before
            the driver has seen it
failed      the tracker carries an error (EINVAL: COW file not clean after an unclean
            shutdown; ENOENT: COW file missing...)
missing     a reload script exists but no tracker: the reload did not run or failed (module
            not loaded, device missing in early boot...); if the filesystem was mounted
            writable, it was written without tracking
late        the tracker exists but the initramfs log shows its script did not reload it at
            boot: it was reloaded later, possibly after a writable mount
duplicate   two reload scripts of different minors name this block device (one tracker per
            device: one of them is stale, say with an old COW file); the boot hook refuses
            both, and a tracker found anyway (an older hook) may come from the stale one

unverified, failed, missing, late and duplicate need a full backup (re-baseline): they are listed in
``rebaseline_required`` of the root-only state file (default
/var/lib/snapfleet/dattobd/boot-check.json, schema in docs/boot.md). Exit status 0 when every
volume is ok or pending, 1 when a volume needs attention, 2 when the check itself failed.
Messages go to stderr with journald priority prefixes.

With --quiesce (snapfleet-dattobd-quiesce.service runs it when it stops, at shutdown before the
filesystems are unmounted) it checks nothing: it freezes and thaws (FIFREEZE, FITHAW) each
writable mount of an active tracker's block device. dattobd turns a tracker dormant when an
unmount starts, before the unmount runs, so what the filesystem writes while it unmounts (ext4's
journal checkpoint, XFS pushing its log's metadata home) is tracked by nobody, and the first
backup after the reboot copies only the superblocks and the journal or log (measured: an XFS
volume backed up after a clean reboot differed from its snapshot in such a block). Frozen and
thawed first, the filesystem writes all of it home while the tracker still records. A thaw is
always attempted after a freeze; a failure is logged and never stops the shutdown (exit 0). The
run is recorded root-only in /var/lib/snapfleet/dattobd/quiesce.json (or --state-file): the boot
id it ended, the mount points frozen and thawed, the errors. --dry-run only says what it would do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import errno
import fcntl
import json
import os
import re
import shlex
import stat
import struct
import subprocess
import sys
import tempfile
import time

SCHEMA = 1
PROC = '/proc/datto-info'
SCRIPTS_DIR = '/etc/datto/dla'
MOUNTINFO = '/proc/self/mountinfo'
BOOT_LOG = '/run/snapfleet-dattobd/boot-reload.log'
STATE_FILE = '/var/lib/snapfleet/dattobd/boot-check.json'
QUIESCE_STATE_FILE = '/var/lib/snapfleet/dattobd/quiesce.json'
BOOT_ID = '/proc/sys/kernel/random/boot_id'
SETTLE_STEP = 2.0
# How long (within --settle) an unverified tracker whose filesystem is mounted writable is looked at
# again before it is reported: the driver turns it active once the mount call returns (see _waiting).
UNVERIFIED_GRACE = 10.0
FAILURES = ('missing', 'failed', 'unverified', 'late', 'duplicate')
STATE_NAMES = {0: 'dormant incremental', 1: 'dormant snapshot', 2: 'active incremental',
               3: 'active snapshot', 4: 'unverified incremental', 5: 'unverified snapshot'}
COW_HEADER = struct.Struct('<IIQQQ16sQQ')
COW_MAGIC = 4776


class CheckError(Exception):
    pass


# --- inputs ---------------------------------------------------------------------------------

def read_timed(path, timeout=10):
    """Text of ``path`` read by a child process (abandoned on timeout), or None if absent."""
    if not os.path.exists(path):
        return None
    proc = subprocess.Popen(['cat', path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, close_fds=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            try:
                proc.kill()
            except OSError:
                pass
            raise CheckError('reading %s did not finish within %ss; the dattobd driver looks wedged '
                             '(see expand-cow-file in docs/troubleshooting.md)' % (path, timeout))
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise CheckError('cannot read %s: %s' % (path, err.decode('utf-8', 'replace').strip()))
    return out.decode('utf-8', 'surrogateescape')


_DEV_RE = re.compile(r'\{\s*"minor": (\d+),\s*"cow_file": "(.*?)",\s*"block_device": "(.*?)",'
                     r'(.*?)"state": (\d+)\s*\}', re.S)
_KEY_RE = re.compile(r'"(seq_id|error|uuid)": ("?)(-?[0-9a-f]+)\2')


def parse_proc(text):
    """``{minor: tracker dict}`` from /proc/datto-info text (unescaped paths tolerated)."""
    if text is None:
        return None
    try:
        devices = json.loads(text)['devices']
        return dict((d['minor'], dict(minor=d['minor'], state=d['state'], error=d.get('error'),
                                      seq_id=d.get('seq_id'), uuid=d.get('uuid'),
                                      cow_file=d.get('cow_file'), block_device=d.get('block_device')))
                    for d in devices)
    except (ValueError, KeyError, TypeError):
        pass
    if '"devices"' not in text:
        raise CheckError('/proc/datto-info is not in the format dattobd prints')
    trackers = {}
    for m in _DEV_RE.finditer(text):
        extra = dict((k, v) for k, q, v in _KEY_RE.findall(m.group(4)))
        trackers[int(m.group(1))] = dict(
            minor=int(m.group(1)), cow_file=m.group(2), block_device=m.group(3), state=int(m.group(5)),
            error=int(extra['error']) if 'error' in extra else None,
            seq_id=int(extra['seq_id']) if 'seq_id' in extra else None, uuid=extra.get('uuid'))
    return trackers


def parse_script(text):
    """``(mode, block_device, cow_file, minor)`` of a reload script, or None."""
    for line in text.split('\n'):
        line = line.strip()
        if line.startswith('#') or 'reload-' not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            return None
        for i, word in enumerate(words):
            if word in ('reload-snapshot', 'reload-incremental'):
                args = words[i + 1:]
                if len(args) >= 2 and args[0] == '-c':
                    args = args[2:]
                elif args and args[0].startswith('-c'):
                    args = args[1:]
                if len(args) != 3 or not re.match(r'\A(0|[1-9][0-9]{0,2})\Z', args[2]):
                    return None
                return (word[len('reload-'):], args[0], args[1], int(args[2]))
    return None


def scan_scripts(directory):
    scripts = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return scripts
    for name in names:
        if not name.startswith('reload_'):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, 'rb') as f:
                text = f.read(65536).decode('utf-8', 'surrogateescape')
        except (OSError, IOError):
            text = ''
        parsed = parse_script(text)
        scripts.append(dict(name=name, path=path, parsed=parsed,
                            ours='# snapfleet.dattobd: managed reload script (ours)' in text.split('\n')))
    return scripts


def _unescape_mount(value):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), value)


def parse_mountinfo(text):
    """List of ``dict(dev=(major, minor), mount_point, writable, whole)``; ``whole`` is False for bind
    mounts of a subdirectory (PrivateTmp's /tmp, container volumes...)."""
    mounts = []
    for line in (text or '').split('\n'):
        fields = line.split(' ')
        if len(fields) < 6 or ':' not in fields[2]:
            continue
        major, minor = fields[2].split(':', 1)
        try:
            dev = (int(major), int(minor))
        except ValueError:
            continue
        opts = fields[5].split(',')
        mounts.append(dict(dev=dev, mount_point=_unescape_mount(fields[4]), writable='rw' in opts,
                           whole=fields[3] == '/'))
    return mounts


def device_number(path):
    """``(major, minor)`` of a block device path, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev))


def parse_boot_log(text):
    """``dict(present, modprobe, scripts={name: rc}, done)`` from the initramfs log."""
    log = dict(present=text is not None, modprobe=None, scripts={}, done=False, problems=[], refused={}, skipped={},
               activated=[], active=[])
    for line in (text or '').split('\n'):
        words = line.split()
        if not words:
            continue
        if words[0] == 'modprobe':
            log['modprobe'] = words[1] if len(words) > 1 else None
        elif words[0] == 'script' and len(words) >= 4 and words[2] == 'refused':
            log['refused'][words[1]] = ' '.join(words[3:])
        elif words[0] == 'script' and len(words) >= 4 and words[2] == 'skipped':
            log['skipped'][words[1]] = ' '.join(words[3:])
        elif words[0] == 'lv' and len(words) >= 4 and words[2] == 'activated':
            log['activated'].append(words[1])
        elif words[0] == 'lv' and len(words) >= 4 and words[2] == 'active':
            log['active'].append(words[1])
        elif words[0] == 'script' and len(words) >= 4 and words[2] == 'rc':
            try:
                log['scripts'][words[1]] = int(words[3])
            except ValueError:
                pass
        elif words[0] == 'done':
            log['done'] = True
        elif words[0] in ('no', 'root', 'mount'):
            log['problems'].append(line.strip())
    return log


def read_cow_header(path):
    """Header facts of a COW file (``uuid``, ``seq_id``, ``clean``, ``index_only``), or None."""
    try:
        with open(path, 'rb') as f:
            data = f.read(COW_HEADER.size)
    except (OSError, IOError):
        return None
    if len(data) < COW_HEADER.size:
        return None
    magic, flags, fpos, fsize, seqid, uuid, version, nr_changed = COW_HEADER.unpack(data)
    if magic != COW_MAGIC:
        return None
    return dict(uuid=uuid.hex(), seq_id=seqid, clean=bool(flags & 1), index_only=bool(flags & 2))


# --- classification ---------------------------------------------------------------------------

def _errno_name(num):
    if num is None:
        return None
    return errno.errorcode.get(abs(num), 'E%d' % abs(num))


_FAILED_HINTS = {
    'EINVAL': 'the COW file was not left clean (unclean shutdown, power loss, missing shutdown hook) '
              'or not in the state the reload mode needs',
    'ENOENT': 'the COW file does not exist',
    'EFBIG': 'the COW file filled up',
    'EIO': 'an I/O error, or the filesystem was mounted writable a second time',
    'ENODEV': 'the block device went away',
}


def classify(scripts, trackers, mounts, boot_log, devnum=device_number, cow_reader=read_cow_header):
    """The per-volume verdicts; pure apart from ``devnum`` and ``cow_reader`` (injectable)."""
    volumes = []
    declared = set()
    shared = _shared_devices(scripts, devnum)
    for script in scripts:
        entry = dict(script=script['path'], ours=script['ours'], minor=None, expected_mode=None,
                     block_device=None, cow_file=None, state=None, state_name=None, error=None,
                     error_name=None, seq_id=None, uuid=None, mount_point=None, mounted_writable=None,
                     cow_header=None, status=None, rebaseline_required=False, message=None)
        volumes.append(entry)
        if script['parsed'] is None:
            entry['status'] = 'unknown'
            entry['message'] = '%s is not a reload command this check understands' % script['path']
            continue
        mode, bdev, cow, minor = script['parsed']
        entry.update(minor=minor, expected_mode=mode, block_device=bdev, cow_file=cow)
        declared.add(minor)
        dev = devnum(bdev)
        mount = None
        if dev is not None:
            candidates = [m for m in mounts if m['dev'] == dev]
            # The filesystem's own mount (not a bind of a subdirectory), writable first, shortest path.
            candidates.sort(key=lambda m: (not m.get('whole', True), not m['writable'], len(m['mount_point'])))
            mount = (candidates or [None])[0]
            entry['mounted_writable'] = any(m['writable'] for m in candidates)
        if mount is not None:
            entry['mount_point'] = mount['mount_point']
        elif dev is None:
            entry['mounted_writable'] = None
        else:
            entry['mounted_writable'] = False
        tracker = trackers.get(minor) if trackers is not None else None
        if script['name'] in shared:
            entry['status'] = 'duplicate'
            entry['message'] = ('minor %d (%s): %s also reload this device (one tracker per device: one script is '
                                'stale); the boot hook refuses both, so the tracker %s: the next backup must be full. '
                                'The backup or the snapshot module removes the stale script.'
                                % (minor, bdev, ', '.join(shared[script['name']]),
                                   'is lost' if tracker is None else 'may come from the stale one'))
            entry['rebaseline_required'] = True
            if tracker is not None:
                entry.update(state=tracker['state'], state_name=STATE_NAMES.get(tracker['state']),
                             error=tracker.get('error'), error_name=_errno_name(tracker.get('error')),
                             seq_id=tracker.get('seq_id'), uuid=tracker.get('uuid'))
            continue
        if tracker is None:
            entry['status'] = 'missing'
            if trackers is None:
                why = 'the dattobd module is not loaded'
            elif boot_log['present'] and script['name'] in boot_log['scripts']:
                why = 'its reload script failed in the initramfs (status %d)' % boot_log['scripts'][script['name']]
            elif boot_log['present'] and script['name'] in boot_log.get('skipped', {}):
                why = 'the initramfs skipped its reload script (%s; see the kernel log)' % boot_log['skipped'][script['name']]
            elif dev is None:
                why = 'its block device %s does not exist' % bdev
            else:
                why = 'its reload did not run at boot'
            entry['message'] = 'minor %d (%s): no tracker: %s.' % (minor, bdev, why)
            if entry['mounted_writable']:
                entry['message'] += (' %s is mounted writable without tracking: the next backup must be '
                                     'full.' % entry['mount_point'])
            if mount is not None:
                entry['cow_header'] = cow_reader(mount['mount_point'].rstrip('/') + cow)
            entry['rebaseline_required'] = True
            continue
        state = tracker['state']
        entry.update(state=state, state_name=STATE_NAMES.get(state, 'state %s' % state),
                     error=tracker.get('error'), error_name=_errno_name(tracker.get('error')),
                     seq_id=tracker.get('seq_id'), uuid=tracker.get('uuid'))
        if tracker.get('error'):
            entry['status'] = 'failed'
            entry['message'] = 'minor %d (%s): the tracker failed with %s: %s; the next backup must be full.' % (
                minor, bdev, entry['error_name'], _FAILED_HINTS.get(entry['error_name'], 'see dmesg'))
            entry['rebaseline_required'] = True
        elif state & 4:
            if entry['mounted_writable']:
                entry['status'] = 'unverified'
                entry['message'] = ('minor %d (%s): still unverified although %s is mounted writable: the '
                                    'driver did not see the mount (new mount API, upstream issue #422); '
                                    'writes are not tracked. Set dattobd_systemd_force_mount2 and reboot.'
                                    % (minor, bdev, entry['mount_point']))
                entry['rebaseline_required'] = True
            else:
                entry['status'] = 'pending'
                entry['message'] = 'minor %d (%s): reloaded, waiting for its filesystem to be mounted writable.' % (
                    minor, bdev)
        elif boot_log['present'] and boot_log['done'] and boot_log['scripts'].get(script['name']) != 0:
            entry['status'] = 'late'
            entry['message'] = ('minor %d (%s): the tracker exists but was not reloaded by the initramfs; it was '
                                'reloaded later, possibly after a writable mount: the next backup must be full.'
                                % (minor, bdev))
            entry['rebaseline_required'] = True
        else:
            entry['status'] = 'ok'
            entry['message'] = 'minor %d (%s): %s.' % (minor, bdev, entry['state_name'])
            tracker_mode = 'snapshot' if state & 1 else 'incremental'
            if tracker_mode != mode:
                entry['message'] += ' Warning: the reload script says %s mode.' % mode
    undeclared = sorted(m for m in (trackers or {}) if m not in declared)
    return volumes, undeclared


def _shared_devices(scripts, devnum):
    """``{script name: [names of the other scripts naming its block device]}`` for scripts of different
    minors that reload one device (by device number when it exists, else by name), as the boot hook
    refuses them."""
    keys = {}
    for script in scripts:
        if script['parsed'] is None:
            continue
        bdev = script['parsed'][1]
        dev = devnum(bdev)
        keys.setdefault(dev if dev is not None else bdev, []).append(script)
    shared = {}
    for group in keys.values():
        if len(set(s['parsed'][3] for s in group)) < 2:
            continue
        for script in group:
            shared[script['name']] = [o['name'] for o in group if o is not script]
    return shared


def check(proc_text, scripts, mountinfo_text, boot_log_text, devnum=device_number, cow_reader=read_cow_header,
          boot_id=None, now=None):
    """The whole report (the state file content)."""
    trackers = parse_proc(proc_text)
    boot_log = parse_boot_log(boot_log_text)
    volumes, undeclared = classify(scripts, trackers, parse_mountinfo(mountinfo_text), boot_log,
                                   devnum=devnum, cow_reader=cow_reader)
    problems = [v['message'] for v in volumes if v['status'] in FAILURES + ('unknown',)]
    return dict(
        schema=SCHEMA,
        checked_at=(now or datetime.datetime.now(datetime.timezone.utc)).strftime('%Y-%m-%dT%H:%M:%SZ'),
        boot_id=boot_id,
        driver_loaded=trackers is not None,
        initramfs_log=dict(present=boot_log['present'], modprobe=boot_log['modprobe'],
                           scripts=boot_log['scripts'], completed=boot_log['done'],
                           problems=boot_log['problems'], refused=boot_log['refused'],
                           skipped=boot_log['skipped'], activated=boot_log['activated'],
                           already_active=boot_log['active']),
        ok=not any(v['status'] in FAILURES for v in volumes),
        volumes=volumes,
        undeclared_trackers=undeclared,
        rebaseline_required=sorted(v['minor'] for v in volumes if v['rebaseline_required']),
        problems=problems,
    )


# --- output -------------------------------------------------------------------------------------

def read_boot_id(path):
    """This boot's id (``/proc/sys/kernel/random/boot_id``), or None when ``path`` does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip()


def write_state(path, report):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    fd, tmp = tempfile.mkstemp(prefix='.boot-check.', dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(report, f, indent=2, sort_keys=True)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory):
    """Best-effort fsync of ``directory`` so that the rename is durable (as the library's fileutil.fsync_dir)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- quiesce at shutdown (--quiesce) ----------------------------------------------------------

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
# /proc/datto-info state bit of an active tracker (2: active incremental, 3: active snapshot).
ACTIVE_BIT = 2


def active_block_devices(trackers):
    """The block devices of the active trackers without an error (``parse_proc`` output)."""
    return [t['block_device'] for t in (trackers or {}).values()
            if t.get('block_device') and t['state'] & ACTIVE_BIT and not t.get('error')]


def quiesce_points(devices, mounts, devnum=device_number):
    """The writable mount points (each once, in mountinfo order) of ``devices``: what --quiesce
    freezes and thaws."""
    numbers = set(devnum(d) for d in devices)
    numbers.discard(None)
    points = []
    for mount in mounts:
        if mount['dev'] in numbers and mount['writable'] and mount['mount_point'] not in points:
            points.append(mount['mount_point'])
    return points


def freeze_thaw(point, ioctl=fcntl.ioctl, opener=os.open):
    """Freeze then thaw the filesystem mounted at ``point``; an error text, or None."""
    try:
        fd = opener(point, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError as e:
        return 'cannot open %s: %s' % (point, e.strerror)
    try:
        try:
            ioctl(fd, FIFREEZE, 0)
        except (OSError, IOError) as e:
            return 'cannot freeze %s: %s' % (point, e.strerror)
        try:
            ioctl(fd, FITHAW, 0)
        except (OSError, IOError) as e:
            return 'cannot thaw %s: %s (it may stay frozen)' % (point, e.strerror)
        return None
    finally:
        os.close(fd)


def _quiesce_log(level, message):
    """``message`` on stderr (the journal) and, best effort, in the kernel log: the journal may be
    stopping at shutdown."""
    emit(level, 'snapfleet-dattobd-quiesce: %s' % message)
    try:
        with open('/dev/kmsg', 'w') as f:
            f.write('snapfleet-dattobd-quiesce: %s\n' % message)
    except (OSError, IOError):
        pass


def quiesce(args, ioctl=fcntl.ioctl, opener=os.open, devnum=device_number):
    """--quiesce: freeze and thaw what :func:`quiesce_points` names, record it; always 0."""
    state = dict(schema=SCHEMA, boot_id=read_boot_id(args.boot_id),
                 time=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), trackers=0, quiesced=[], errors=[])
    try:
        devices = active_block_devices(parse_proc(read_timed(args.proc, args.timeout)))
        with open(args.mountinfo) as f:
            points = quiesce_points(devices, parse_mountinfo(f.read()), devnum)
    except (CheckError, OSError, IOError) as exc:
        devices, points = [], []
        state['errors'].append('cannot tell what to quiesce: %s' % exc)
        _quiesce_log('err', state['errors'][-1])
    state['trackers'] = len(devices)
    if not points and not state['errors']:
        _quiesce_log('info', 'no mounted filesystem of an active tracker (%d tracker(s)): nothing to quiesce'
                     % len(devices))
    for point in points:
        if args.dry_run:
            _quiesce_log('info', 'would freeze and thaw %s' % point)
            continue
        error = freeze_thaw(point, ioctl=ioctl, opener=opener)
        if error:
            state['errors'].append(error)
            _quiesce_log('err', error)
        else:
            state['quiesced'].append(point)
            _quiesce_log('info', 'froze and thawed %s (its metadata written home while tracked)' % point)
    if not args.dry_run and not args.no_state:
        path = args.state_file or QUIESCE_STATE_FILE
        try:
            write_state(path, state)
        except (OSError, IOError) as exc:
            _quiesce_log('err', 'cannot write %s: %s' % (path, exc))
    return 0


def emit(level, message, stream=None):
    stream = stream or sys.stderr
    prefix = {'err': '<3>', 'warning': '<4>', 'info': '<6>'}[level] if os.environ.get('JOURNAL_STREAM') else ''
    stream.write('%s%s\n' % (prefix, message.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')))


def _waiting(volume, unverified_since, now):
    """Whether a later look can tell more: reloaded but not mounted yet, missing and not mounted yet, or
    unverified although mounted writable for less than :data:`UNVERIFIED_GRACE` seconds.

    A missing tracker stays missing, but whether its filesystem was then mounted writable (written
    untracked) is what the report must say. A mount shows in mountinfo before dattobd's hook on the
    mount call has run and turned the tracker active: a nofail mount that ends while the check looks
    is first seen unverified (measured: a clean reboot of the ``reboot`` scenario, /data-xfs mounted
    after local-fs.target). ``unverified_since``: ``{minor: when first seen unverified}``, updated here.
    """
    if volume['status'] == 'unverified':
        first = unverified_since.setdefault(volume['minor'], now)
        return now - first < UNVERIFIED_GRACE
    return volume['status'] == 'pending' or (volume['status'] == 'missing' and not volume.get('mounted_writable'))


def _now():
    return time.monotonic()


def _pause(seconds):
    time.sleep(seconds)


def _check_once(args):
    """Read the driver, the mounts, the initramfs log and the scripts once; return the report."""
    proc_text = read_timed(args.proc, args.timeout)
    with open(args.mountinfo) as f:
        mountinfo = f.read()
    boot_log = None
    if os.path.exists(args.boot_log):
        with open(args.boot_log) as f:
            boot_log = f.read()
    return check(proc_text, scan_scripts(args.scripts_dir), mountinfo, boot_log, devnum=device_number,
                 boot_id=read_boot_id(args.boot_id))


def main(argv=None):
    parser = argparse.ArgumentParser(description='Check that every declared dattobd tracker came back after boot.')
    parser.add_argument('--proc', default=PROC)
    parser.add_argument('--scripts-dir', default=SCRIPTS_DIR)
    parser.add_argument('--mountinfo', default=MOUNTINFO)
    parser.add_argument('--boot-log', default=BOOT_LOG)
    parser.add_argument('--boot-id', default=BOOT_ID)
    parser.add_argument('--state-file', default=None,
                        help='default %s (%s with --quiesce)' % (STATE_FILE, QUIESCE_STATE_FILE))
    parser.add_argument('--no-state', action='store_true', help='do not write the state file')
    parser.add_argument('--timeout', type=float, default=10)
    parser.add_argument('--settle', type=float, default=0,
                        help='while a volume is pending (reloaded, its filesystem not mounted writable yet) '
                             'or missing with its filesystem not mounted yet, or unverified on a writable mount '
                             'for less than 10 s, look again every 2 s for up to this many seconds')
    parser.add_argument('--json', action='store_true', help='print the report on stdout')
    parser.add_argument('--quiesce', action='store_true',
                        help='at shutdown: freeze and thaw the filesystems of the active trackers (no check)')
    parser.add_argument('--dry-run', action='store_true', help='with --quiesce: only say what it would do')
    args = parser.parse_args(argv)
    if args.quiesce:
        return quiesce(args)
    args.state_file = args.state_file or STATE_FILE
    if args.settle < 0 or args.timeout <= 0:
        emit('err', 'snapfleet-dattobd boot check could not run: --settle must be >= 0 and --timeout > 0')
        return 2
    try:
        deadline = _now() + args.settle
        unverified_since = {}
        while True:
            report = _check_once(args)
            now = _now()
            waiting = [v['minor'] for v in report['volumes'] if _waiting(v, unverified_since, now)]
            pending = [v['minor'] for v in report['volumes'] if v['status'] != 'unverified' and v['minor'] in waiting]
            if not waiting or now >= deadline:
                break
            # A nofail mount (or one made by a later unit) comes after local-fs.target: dattobd turns
            # the tracker active when it sees the writable mount, so look again.
            _pause(min(SETTLE_STEP, max(0.0, deadline - _now())))
        if pending and args.settle:
            emit('info', 'snapfleet-dattobd: minors %s still wait for their filesystem after %g s'
                 % (pending, args.settle))
        if not args.no_state:
            write_state(args.state_file, report)
    except (CheckError, OSError, IOError) as exc:
        emit('err', 'snapfleet-dattobd boot check could not run: %s' % exc)
        return 2
    for volume in report['volumes']:
        level = 'err' if volume['status'] in FAILURES else 'warning' if volume['status'] == 'unknown' else 'info'
        emit(level, '%s: %s' % (volume['status'], volume['message']))
    for line in report['initramfs_log']['problems']:
        emit('warning', 'initramfs: %s' % line)
    if report['undeclared_trackers']:
        emit('warning', 'trackers without a reload script (lost at the next reboot): %s'
             % ', '.join(str(m) for m in report['undeclared_trackers']))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + '\n')
    if not report['ok']:
        emit('err', 'snapfleet-dattobd: %d volume(s) need a full backup: minors %s'
             % (len(report['rebaseline_required']), report['rebaseline_required']))
        return 1
    emit('info', 'snapfleet-dattobd: every declared tracker is in place (%d volume(s))' % len(report['volumes']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
