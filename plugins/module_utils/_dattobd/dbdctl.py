# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runner of the ``dbdctl`` command line tool.

``dbdctl`` exits 255 for every failure; the errno is only in its stderr text
(``... check dmesg for more info: <strerror>``) and in the kernel log (``datto: <what>: -<errno>``).
:class:`Dbdctl` builds argument lists (numbers validated and printed without leading zeros,
because dbdctl reads ``0300`` as octal), runs them through :func:`runner.run_timed` with a
timeout, watches the kernel log during the call, and turns a failure into a :class:`DbdctlError`
whose message says what happened and what to do. Every command run (or, in check mode,
planned) is recorded in :attr:`Dbdctl.actions` as ``shlex.join(argv)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno as _errno
import os
import re
import shlex
import time

from . import devices
from .constants import MAX_MINOR, MAX_ULONG
from .errors import DattobdError, DriverTimeout, errno_name
from .runner import run_timed
from . import validation
from . import wedge

DEFAULT_PATHS = ('/usr/bin/dbdctl', '/usr/local/bin/dbdctl', '/usr/sbin/dbdctl', '/sbin/dbdctl', '/bin/dbdctl')
VERSION_PATH = '/sys/module/dattobd/version'

# Operations whose success path leaks the driver's global mutex on 0.12.x.
WEDGING_OPERATIONS = ('expand-cow-file', 'reconfigure-auto-expand')
# EBUSY from these is retried when /dev/datto<minor> is not mounted: udev's probe of a snapshot
# device that just appeared or changed (blkid) holds it open for a moment.
BUSY_RETRY_OPERATIONS = ('transition-to-incremental', 'transition-to-snapshot', 'destroy')
BUSY_RETRY_DELAYS = (0.5, 1.0, 2.0)
UDEVADM_PATHS = ('/usr/bin/udevadm', '/bin/udevadm', '/sbin/udevadm', '/usr/sbin/udevadm')


def snapshot_mounted(minor, host=None):
    """Whether ``/dev/datto<minor>`` is mounted (an EBUSY that no retry cures); False when unknown."""
    try:
        return devices.node_mount('/dev/datto%d' % int(minor), host) is not None
    except DattobdError:
        return False


class DbdctlError(DattobdError):
    """A dbdctl call failed (or was refused before it ran)."""


# --- strerror text -> errno ----------------------------------------------------------------

def _strerror_table():
    table = {}
    for num in sorted(_errno.errorcode):
        text = os.strerror(num)
        table.setdefault(text, num)
    return table


_STRERROR = _strerror_table()


def errno_from_text(text):
    """The errno whose strerror() is ``text`` (``'Invalid argument'`` -> 22), else None."""
    if text is None:
        return None
    return _STRERROR.get(text.strip())


_NOT_LOADED_RE = re.compile(r'driver does not appear to be loaded')
_DRIVER_ERR_RE = re.compile(r'driver returned an error performing specified action\. '
                            r'check dmesg for more info: (?P<text>[^\n]*)')
_PARAM_ERR_RE = re.compile(r'error interpreting (?P<what>[a-z ]+) parameters: (?P<text>[^\n]*)')
_DMESG_RE = re.compile(r'^(?:\[\s*[0-9.]+\]\s*)?datto: (?P<msg>.*?)(?:: (?P<err>-?[0-9]+))?\s*$')


# --- explanations -------------------------------------------------------------------------
# Each rule: (operations or None for any, errno name or None for any, dmesg regex or None,
#             message, hint). The first rule that matches wins; message and hint are
# formatted with: op, minor, block_device, cow_file, errno, strerror.

_RULES = [
    (None, 'EINVAL', r'minor number specified is out of range',
     'minor {minor} is out of range for the loaded driver.',
     'Use a minor below max_snap_devices (/sys/module/dattobd/parameters/max_snap_devices, default 24), '
     'or load dattobd with a larger max_snap_devices.'),
    (('setup-snapshot', 'reload-snapshot', 'reload-incremental'), 'EBUSY', r'already exists',
     'minor {minor} is already used by another tracker.',
     'Pick a free minor (see snapfleet.dattobd.info free_minors) or let the module choose one.'),
    (None, 'ENOENT', r'device specified does not exist',
     'there is no tracker on minor {minor}.',
     'Check /proc/datto-info (snapfleet.dattobd.info) for the trackers that exist.'),
    (None, 'EBUSY', r'device specified is busy',
     '/dev/datto{minor} is busy: the snapshot device is mounted or held open (a dd, a backup, a udev probe).',
     'Unmount /dev/datto{minor} and stop every process that has it open (fuser -v /dev/datto{minor}), '
     'then retry.'),
    (('setup-snapshot',), 'EINVAL', r'already being traced',
     '{block_device} is already tracked by another minor.',
     'A block device can have one tracker only; manage the existing tracker (see /proc/datto-info).'),
    (('setup-snapshot',), 'EINVAL', r'is not on',
     'the COW file {cow_file} is not on the filesystem of {block_device}.',
     'Put the COW file on the tracked filesystem itself (dattobd needs it there).'),
    (('setup-snapshot',), 'EINVAL', r'illegal to perform setup while unmounted',
     '{block_device} is not mounted read-write.',
     'Mount the filesystem read-write before setting up a snapshot.'),
    (('reload-snapshot', 'reload-incremental'), 'EINVAL', r'illegal to perform reload while mounted',
     '{block_device} is mounted read-write; a reload must happen before the read-write mount.',
     'Reloads belong in the early boot (reload scripts); unmount the filesystem first to reload by hand.'),
    (None, 'EINVAL', r'in the fail state',
     'the tracker on minor {minor} is in the failed state.',
     'Its change tracking is lost: destroy it and set it up again (recover: rebaseline), then take a full backup.'),
    (('transition-to-incremental', 'expand-cow-file', 'reconfigure-auto-expand'), 'EINVAL',
     r'not in active snapshot mode',
     'the tracker on minor {minor} is not an active snapshot.',
     'Check its state in /proc/datto-info: a dormant tracker needs its filesystem mounted read-write.'),
    (('transition-to-snapshot',), 'EINVAL', r'not in active incremental mode',
     'the tracker on minor {minor} is not in active incremental mode.',
     'Check its state in /proc/datto-info: a dormant tracker needs its filesystem mounted read-write.'),
    (('setup-snapshot', 'transition-to-snapshot'), 'EPERM', None,
     'the COW file {cow_file} cannot be created: it is in use (the current COW file of a tracker is immutable).',
     'Use a new COW file name for every snapshot; never reuse the current one.'),
    (('setup-snapshot', 'transition-to-snapshot'), 'ENOENT', r'error creating/opening file',
     'the COW file {cow_file} cannot be created: its directory does not exist.',
     'Create the directory (mode 0700) on the tracked filesystem first.'),
    (('setup-snapshot', 'reload-snapshot', 'reload-incremental'), 'ENOENT', None,
     'the block device {block_device} does not exist.',
     'Check the device path (ls -l {block_device}).'),
    (('setup-snapshot', 'reload-snapshot', 'reload-incremental'), 'ENOTBLK', None,
     '{block_device} is not a block device.',
     'Give the block device of the filesystem (e.g. /dev/sda1 or /dev/disk/by-uuid/...).'),
    (('setup-snapshot', 'transition-to-snapshot'), 'EISDIR', None,
     'the COW file path {cow_file} is a directory.',
     'Give a file name for the COW file, not a directory.'),
    (None, 'ENOSPC', None,
     'there is not enough free space on the tracked filesystem for the COW file preallocation.',
     'Free space or pass a smaller fallocate (MiB; the default is 10 % of the volume).'),
    (None, 'EFBIG', None,
     'the COW file is too big for the filesystem, or it filled up.',
     'Pass a smaller fallocate (MiB, not bytes); a filled snapshot is lost: destroy and set it up again.'),
    (None, 'ENOMEM', None,
     'the kernel could not allocate memory for the tracker.',
     'Use a smaller cache_size or free memory, then retry.'),
    (None, 'EPERM', None,
     'the operation was not permitted.',
     'Run as root; check that the COW file is not the current COW file of a tracker.'),
    (None, 'EACCES', None,
     'permission denied.',
     'Run as root.'),
]

_COMPILED_RULES = [(ops, err, re.compile(rx) if rx else None, msg, hint)
                   for ops, err, rx, msg, hint in _RULES]


class _Fmt(dict):
    def __missing__(self, key):
        return '?'


def explain(op, errno_num, dmesg_lines, context):
    """Message and hint for a driver error of ``op`` with ``errno_num`` and the new dmesg lines."""
    name = errno_name(errno_num) if errno_num is not None else None
    text = '\n'.join(dmesg_lines or [])
    fmt = _Fmt((k, v) for k, v in (context or {}).items() if v is not None)
    fmt.update(op=op, errno=name or 'unknown', strerror=os.strerror(errno_num) if errno_num else 'unknown error')
    for ops, err, rx, msg, hint in _COMPILED_RULES:
        if ops is not None and op not in ops:
            continue
        if err is not None and err != name:
            continue
        if rx is not None and not rx.search(text):
            continue
        return msg.format_map(fmt), hint.format_map(fmt)
    return ('the driver refused it ({errno}: {strerror}).'.format_map(fmt),
            'Read the dmesg lines attached (dmesg | grep datto) for the reason.')


# --- kernel log watching ------------------------------------------------------------------

class KmsgWatcher(object):
    """Collect kernel log lines that appear while a command runs (best effort).

    Reads ``/dev/kmsg`` non-blocking from its end. When ``/dev/kmsg`` cannot be opened (some
    containers, hardened hosts) it falls back to the ``dmesg`` command: the lines stamped later
    than the last line seen at :meth:`start`. When neither works it collects nothing (the error
    message still carries the errno from dbdctl's stderr).
    """

    def __init__(self, path='/dev/kmsg', dmesg=('dmesg',), runner=None):
        self.path = path
        self.fd = None
        self.dmesg = list(dmesg) if dmesg else None
        self.runner = runner or run_timed
        self.since = None

    def start(self):
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.close()
            lines = self._dmesg()
            if lines is not None:
                stamps = [t for t in (dmesg_stamp(line) for line in lines) if t is not None]
                self.since = max(stamps) if stamps else -1.0

    def _dmesg(self):
        if not self.dmesg:
            return None
        try:
            rc, out, dummy = self.runner(self.dmesg, timeout=10)
        except DattobdError:
            return None
        return out.splitlines() if rc == 0 else None

    def collect(self):
        lines = []
        if self.fd is None:
            if self.since is not None:
                since, self.since = self.since, None
                new = self._dmesg() or []
                lines = [line for line in new if (dmesg_stamp(line) or -1.0) > since]
            return lines
        try:
            for dummy in range(10000):
                try:
                    record = os.read(self.fd, 8192)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == _errno.EPIPE:  # overwritten records: go on
                        continue
                    break
                if not record:
                    break
                line = format_kmsg_record(record)
                if line is not None:
                    lines.append(line)
        finally:
            self.close()
        return lines

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def dmesg_stamp(line):
    """``'[ 1665.130159] datto: x'`` -> ``1665.130159``; None when the line has no timestamp."""
    m = re.match(r'^\[\s*([0-9]+\.[0-9]+)\]', line)
    return float(m.group(1)) if m else None


def format_kmsg_record(record):
    """``b'3,1234,1665130159,-;datto: x: -22\\n'`` -> ``'[ 1665.130159] datto: x: -22'``."""
    text = record.decode('utf-8', 'replace')
    head, sep, body = text.partition(';')
    if not sep:
        return None
    body = body.split('\n', 1)[0]
    fields = head.split(',')
    usec = validation.to_int(fields[2]) if len(fields) > 2 else None
    if usec is None or usec < 0:
        return body
    return '[%5d.%06d] %s' % (usec // 1000000, usec % 1000000, body)


# --- argument validation ------------------------------------------------------------------

def number(value, name, minimum=0, maximum=MAX_ULONG):
    """Validate a non-negative integer and render it in decimal without leading zeros."""
    if isinstance(value, bool):
        raise DbdctlError('%s must be an integer, not %r.' % (name, value))
    if isinstance(value, str):
        number = validation.to_int(value, strip=True)
        if number is None or number < 0:
            raise DbdctlError('%s must be a non-negative decimal integer, got %r.' % (name, value))
        value = number
    return str(validation.check_between(value, name, minimum, maximum, error=DbdctlError))


def abs_path(value, name):
    if not isinstance(value, str) or not value:
        raise DbdctlError('%s must be a non-empty path.' % name)
    if '\0' in value or '\n' in value:
        raise DbdctlError('%s contains a NUL byte or a newline: %r.' % (name, value))
    if not value.startswith('/'):
        raise DbdctlError('%s must be an absolute path, got %r (dbdctl would resolve it against '
                          'its working directory).' % (name, value))
    return value


def parse_version(text):
    """``'0.12.1'`` -> ``(0, 12, 1)``; None when it cannot be read."""
    if not text:
        return None
    m = re.match(r'^\s*([0-9]+)\.([0-9]+)(?:\.([0-9]+))?', text)
    if not m:
        return None
    return tuple(int(x or 0) for x in m.groups())


def read_driver_version(path=VERSION_PATH):
    try:
        with open(path) as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class Dbdctl(object):
    """dbdctl with validated argv, timeouts, error explanations and an action log."""

    def __init__(self, path='dbdctl', timeout=60, check_mode=False, runner=None, watcher_factory=None,
                 driver_version=None):
        self.path = path
        self.timeout = timeout
        self.check_mode = check_mode
        self.runner = runner or run_timed
        self.watcher_factory = watcher_factory or KmsgWatcher
        self.driver_version = driver_version
        self.actions = []
        self.calls = []
        self.sleep = time.sleep
        self.busy_delays = BUSY_RETRY_DELAYS
        self.is_mounted = snapshot_mounted
        self.settle = self._settle

    # --- argv builders ------------------------------------------------------------------
    def argv(self, op, minor=None, block_device=None, cow_file=None, cache_size=None, fallocate=None,
             size=None, step=None, reserved=None):
        """The exact argv of ``op`` (validated).

        Parameters: one per argument of the dbdctl commands (each command takes some of them).
        """
        argv = [self.path, op]
        mnr = number(minor, 'minor', 0, MAX_MINOR) if op != 'help' else None
        if op == 'setup-snapshot':
            if cache_size is not None:
                argv += ['-c', number(cache_size, 'cache_size')]
            if fallocate is not None:
                argv += ['-f', number(fallocate, 'fallocate (MiB)')]
            argv += [abs_path(block_device, 'block device'), abs_path(cow_file, 'COW file'), mnr]
        elif op in ('reload-snapshot', 'reload-incremental'):
            if cache_size is not None:
                argv += ['-c', number(cache_size, 'cache_size')]
            argv += [abs_path(block_device, 'block device'), abs_path(cow_file, 'COW file (relative to the mount point)'), mnr]
        elif op in ('destroy', 'transition-to-incremental'):
            argv += [mnr]
        elif op == 'transition-to-snapshot':
            if fallocate is None:
                raise DbdctlError('transition-to-snapshot needs an explicit fallocate: without -f the driver '
                                  'reuses the stored size, which after a reload is only the index size.')
            argv += ['-f', number(fallocate, 'fallocate (MiB)', 1), abs_path(cow_file, 'COW file'), mnr]
        elif op == 'reconfigure':
            if cache_size is not None:
                argv += ['-c', number(cache_size, 'cache_size')]
            argv += [mnr]
        elif op == 'expand-cow-file':
            argv += [number(size, 'size (MiB)', 1), mnr]
        elif op == 'reconfigure-auto-expand':
            if reserved is not None:
                argv += ['-r', number(reserved, 'reserved space (MiB)')]
            argv += [number(step, 'step size (MiB)'), mnr]
        else:
            raise DbdctlError('Unknown dbdctl operation %r.' % (op,))
        return argv

    # --- running --------------------------------------------------------------------------
    def refuse_wedging(self, op):
        if op not in WEDGING_OPERATIONS:
            return
        version = self.driver_version
        parsed = parse_version(version)
        if parsed is None or parsed[:2] == (0, 12):
            raise DbdctlError(
                'Refusing %s on dattobd %s: on 0.12.x a successful %s leaves the driver\'s global lock held, '
                'after which every dbdctl call and every read of /proc/datto-info hangs until a reboot.'
                % (op, version or '(unknown version)', op),
                hint='Size the COW file up front with fallocate (MiB) instead, or upgrade dattobd to a fixed release.',
                operation=op, driver_version=version)

    def call(self, op, **kwargs):
        """Run (or in check mode only record) one dbdctl operation. Returns a call record dict.

        A transition or destroy refused with EBUSY while ``/dev/datto<minor>`` is not mounted is
        tried again after ``udevadm settle`` (up to ``busy_delays``): udev probes a snapshot device
        right after it appears. The retries are in the action log.
        """
        delays = list(self.busy_delays) if op in BUSY_RETRY_OPERATIONS else []
        while True:
            try:
                return self._call(op, **kwargs)
            except DbdctlError as exc:
                if exc.details.get('errno_name') != 'EBUSY' or not delays or kwargs.get('minor') is None \
                        or self.is_mounted(kwargs['minor']):
                    raise
                delay = delays.pop(0)
                self.settle()
                self.actions.append('(EBUSY, /dev/datto%s not mounted: udevadm settle, retry in %.1f s)'
                                    % (kwargs['minor'], delay))
                self.sleep(delay)

    def _settle(self):
        udevadm = first_executable(UDEVADM_PATHS)
        if udevadm:
            try:
                self.runner([udevadm, 'settle', '--timeout=10'], timeout=20)
            except DattobdError:
                pass

    def _call(self, op, **kwargs):
        self.refuse_wedging(op)
        argv = self.argv(op, **kwargs)
        cmd = shlex.join(argv)
        self.actions.append(cmd)
        record = {'op': op, 'argv': argv, 'cmd': cmd, 'rc': None, 'stdout': '', 'stderr': '', 'dmesg': []}
        self.calls.append(record)
        if self.check_mode:
            return record
        wedge.check()  # a driver wedged earlier in this call or this boot: not even tried
        watcher = self.watcher_factory()
        watcher.start()
        try:
            rc, out, err = self.runner(argv, timeout=self.timeout)
        except DattobdError as exc:
            exc.details.setdefault('dmesg', watcher.collect())
            exc.details.setdefault('cmd', cmd)
            if isinstance(exc, DriverTimeout):
                raise wedge.mark(exc, 'dbdctl %s' % op)
            raise
        dmesg = watcher.collect()
        record.update(rc=rc, stdout=out, stderr=err, dmesg=dmesg)
        if rc != 0:
            raise self.error(op, argv, rc, out, err, dmesg, kwargs)
        return record

    def error(self, op, argv, rc, out, err, dmesg, context):
        """Turn a failed call into a :class:`DbdctlError`."""
        context = dict(context)
        details = dict(cmd=shlex.join(argv), rc=rc, stdout=out,
                       stderr=err, dmesg=list(dmesg or []), operation=op)
        if _NOT_LOADED_RE.search(err or ''):
            return DbdctlError(
                'dbdctl %s failed: the dattobd driver is not loaded (/dev/datto-ctl is missing).' % op,
                hint='Load it (modprobe dattobd) or run snapfleet.dattobd.engine to build and load it.',
                errno_name='ENODEV', **details)
        m = _DRIVER_ERR_RE.search(err or '')
        if m:
            num = errno_from_text(m.group('text'))
            # The kernel log carries the errno too: prefer it when stderr's text is unknown.
            if num is None:
                for line in dmesg or []:
                    d = _DMESG_RE.match(line)
                    if d and d.group('err'):
                        num = abs(int(d.group('err')))
                        break
            msg, hint = explain(op, num, dmesg, context)
            return DbdctlError('dbdctl %s failed (%s): %s' % (op, errno_name(num) or m.group('text'), msg),
                               hint=hint, errno=num, errno_name=errno_name(num), **details)
        p = _PARAM_ERR_RE.search(err or '')
        if p or 'invalid option' in (err or '') or 'Usage:' in (out or ''):
            return DbdctlError(
                'dbdctl %s rejected its arguments (%s).' % (op, (err or out or '').strip().splitlines()[0]
                                                            if (err or out or '').strip() else 'usage'),
                hint='This dbdctl does not accept the command line shown in cmd; check the dbdctl version '
                     '(dbdctl help) and report it if it is the snapfleet.dattobd collection\'s fault.',
                errno_name='EINVAL', **details)
        return DbdctlError('dbdctl %s failed with exit code %s: %s' % (op, rc, (err or out or 'no output').strip()),
                           hint='Read the dmesg lines attached (dmesg | grep datto).', **details)


def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def first_executable(paths):
    """The first of ``paths`` that is an executable file, or None."""
    return next((p for p in paths if _executable(p)), None)


def find(module=None, path=None):
    """Path of dbdctl: ``path`` when given (must be executable), else PATH and the usual places."""
    if path:
        if not _executable(path):
            raise DbdctlError('dbdctl_path %s is not an executable file.' % path,
                              hint='Install dattobd-utils or fix dbdctl_path.')
        return path
    found = None
    if module is not None:
        found = module.get_bin_path('dbdctl', required=False, opt_dirs=['/usr/local/bin', '/usr/sbin', '/sbin'])
    if not found:
        found = first_executable(DEFAULT_PATHS)
    if not found:
        raise DbdctlError('dbdctl was not found.',
                          hint='Install the dattobd tools (dattobd-utils) or set dbdctl_path; '
                               'snapfleet.dattobd.engine can install them.')
    return found
