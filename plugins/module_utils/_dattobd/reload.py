# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot reload scripts ``/etc/datto/dla/reload_*``.

dattobd keeps no configuration: after a reboot a tracker exists again only if
``dbdctl reload-incremental|reload-snapshot`` runs in the initramfs before its filesystem is
mounted writable. The boot hook mounts ``/`` read-only at ``/etc/datto/dla/mnt`` and executes every
``/etc/datto/dla/mnt/etc/datto/dla/reload_*``. This module writes, removes, reads and checks those
scripts:

* :func:`render` builds the text of one script: ``#!/bin/sh``, a marker comment (so the
  collection manages only its own scripts) and ONE ``dbdctl`` line. Every argument is validated
  strictly and single-quoted, so no path can inject shell syntax (busybox ``sh`` runs it).
* :func:`ensure` / :func:`remove` write atomically (temporary file in the same directory,
  fsync, rename, fsync of the directory); scripts are 0700 and the directory 0700.
* :func:`scan` reads every ``reload_*`` file (ours and foreign ones), :func:`compare` reports the
  drift between those scripts and the live trackers of ``/proc/datto-info``.

Standard library only: this runs on managed hosts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import shlex
import stat
import unicodedata

from . import devices
from .constants import MAX_MINOR, MAX_ULONG
from .errors import DattobdError
from .fileutil import atomic_write, fsync_dir
from . import validation

DEFAULT_DIR = '/etc/datto/dla'
DEFAULT_DBDCTL = '/usr/bin/dbdctl'
SCRIPT_PREFIX = 'reload_'
OUR_PREFIX = 'reload_snapfleet_'
MARKER = '# snapfleet.dattobd: managed reload script (ours)'
FORMAT_LINE = '# format: 1; written after every setup and transition; edits are overwritten'
SCRIPT_MODE = 0o700
DIR_MODE = 0o700
MODES = ('snapshot', 'incremental')
COMMANDS = {'snapshot': 'reload-snapshot', 'incremental': 'reload-incremental'}
MAX_CACHE = MAX_ULONG
PATH_MAX = 4095
# Larger files are not reload scripts; never read more than this.
MAX_SCRIPT_BYTES = 65536

# Device names that stay the same from boot to boot and exist in early boot once udev (or
# device-mapper / md assembly) ran. Kernel names (/dev/sda1, /dev/vdb, /dev/dm-3) may change.
STABLE_PREFIXES = ('/dev/disk/by-uuid/', '/dev/disk/by-partuuid/', '/dev/disk/by-id/',
                   '/dev/disk/by-label/', '/dev/disk/by-partlabel/', '/dev/disk/by-path/',
                   '/dev/mapper/', '/dev/md/')

_OUR_NAME_RE = re.compile(r'\A' + OUR_PREFIX + r'(0|[1-9][0-9]{0,2})\Z')


# --- validation ---------------------------------------------------------------------------

def _bad_char(value):
    """The first character of ``value`` that is a control character (C0, DEL, C1) or a lone
    surrogate that is not an escaped byte, else None."""
    for ch in value:
        code = ord(ch)
        if code < 0x20 or code == 0x7f or 0x80 <= code <= 0x9f:
            return ch
        if unicodedata.category(ch) in ('Cc', 'Zl', 'Zp'):
            return ch
        if 0xd800 <= code <= 0xdfff and not 0xdc80 <= code <= 0xdcff:
            return ch
    return None


def _check_path(what, value, must_start='/'):
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'surrogateescape')
    if not isinstance(value, str) or value == '':
        raise DattobdError('The %s must be a non-empty path, got %r.' % (what, value))
    bad = _bad_char(value)
    if bad is not None:
        raise DattobdError('The %s %r contains the control character %r; reload scripts refuse '
                           'newlines, NUL and other control characters.' % (what, value, bad),
                           hint='Rename the file or device so that its path is printable.')
    if not value.startswith(must_start):
        raise DattobdError('The %s %r must be an absolute path starting with %r.' % (what, value, must_start))
    if len(value.encode('utf-8', 'surrogateescape')) > PATH_MAX:
        raise DattobdError('The %s is longer than %d bytes.' % (what, PATH_MAX))
    parts = value.split('/')[1:]
    if value != '/' and (value.endswith('/') or '' in parts or '.' in parts or '..' in parts):
        raise DattobdError('The %s %r is not a normalized path (no "//", "/./", "/../" or trailing '
                           '"/" allowed).' % (what, value))
    return value


def validate_minor(minor):
    """Return ``minor`` as an int in 0..255; accepts ints and canonical decimal strings."""
    if isinstance(minor, bool):
        raise DattobdError('The minor must be an integer 0..%d, got %r.' % (MAX_MINOR, minor))
    minor = validation.to_int(minor, canonical=True)
    if minor is None or not 0 <= minor <= MAX_MINOR:
        raise DattobdError('The minor must be an integer 0..%d, got %r.' % (MAX_MINOR, minor))
    return minor


def validate_cache_size(cache_size):
    """None (or 0: the module default) -> None, else a positive int of bytes."""
    if cache_size is None:
        return None
    number = validation.to_int(cache_size, canonical=True)
    if number is None or not 0 <= number <= MAX_CACHE:
        raise DattobdError('cache_size must be a number of bytes 0..%d without sign or leading '
                           'zeros, got %r.' % (MAX_CACHE, cache_size))
    return number or None


def validate_mode(mode):
    if mode not in MODES:
        raise DattobdError('The reload mode must be "snapshot" or "incremental", got %r.' % (mode,))
    return mode


def validate_block_device(block_device):
    return _check_path('block device', block_device, must_start='/dev/')


def validate_cow_relative(cow_relative):
    value = _check_path('COW file path (relative to its mount point)', cow_relative)
    if value == '/':
        raise DattobdError('The COW file path relative to its mount point cannot be "/".')
    return value


def is_stable_name(block_device):
    """True when the name does not depend on probe order (by-uuid, by-id, mapper, md...)."""
    return isinstance(block_device, str) and block_device.startswith(STABLE_PREFIXES)


def quote(value):
    """POSIX single quoting (also correct in busybox ash); safe for every printable string."""
    if re.match(r'\A[A-Za-z0-9_./:@%+,-]+\Z', value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


# --- rendering ------------------------------------------------------------------------------

def script_path(minor, directory=DEFAULT_DIR):
    """``<directory>/reload_snapfleet_<minor>``."""
    return os.path.join(directory, '%s%d' % (OUR_PREFIX, validate_minor(minor)))


def command_argv(minor, block_device, cow_relative, mode, cache_size=None, dbdctl=DEFAULT_DBDCTL):
    """The validated argv of the reload command (what the boot hook will run)."""
    minor = validate_minor(minor)
    mode = validate_mode(mode)
    cache_size = validate_cache_size(cache_size)
    block_device = validate_block_device(block_device)
    cow_relative = validate_cow_relative(cow_relative)
    dbdctl = _check_path('dbdctl path', dbdctl)
    argv = [dbdctl, COMMANDS[mode]]
    if cache_size:
        argv += ['-c', '%d' % cache_size]
    argv += [block_device, cow_relative, '%d' % minor]
    return argv


def render(minor, block_device, cow_relative, mode, cache_size=None, dbdctl=DEFAULT_DBDCTL):
    """Text of the reload script. Raises :class:`DattobdError` for any invalid or hostile input."""
    argv = command_argv(minor, block_device, cow_relative, mode, cache_size=cache_size, dbdctl=dbdctl)
    return '\n'.join([
        '#!/bin/sh',
        MARKER,
        FORMAT_LINE,
        '# minor %d, %s mode; run by the dattobd boot hook before the filesystem is mounted '
        'writable' % (int(argv[-1]), mode),
        ' '.join(quote(a) for a in argv),
        '',
    ])


# --- reading ----------------------------------------------------------------------------------

def parse(text, path=None):
    """Parse a reload script (ours or foreign). Returns a dict as :func:`scan` lists it.

    Foreign scripts (written by hand, by the Datto agent...) are parsed best effort: the first
    line holding ``reload-snapshot`` or ``reload-incremental`` is split with shell rules.
    ``minor`` is None when no command can be understood.
    """
    result = dict(path=path, minor=None, mode=None, block_device=None, cow_file=None,
                  cache_size=None, dbdctl=None, ours=False, error=None)
    lines = text.split('\n')
    result['ours'] = MARKER in lines
    for line in lines:
        stripped = line.strip()
        if stripped.startswith('#') or not re.search(r'(^|[\s/\'"])reload-(snapshot|incremental)\b', stripped):
            continue
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError as exc:
            result['error'] = 'cannot split the command line: %s' % exc
            return result
        if words and words[0] == 'exec':
            words = words[1:]
        cmd_at = None
        for i, word in enumerate(words):
            if word in ('reload-snapshot', 'reload-incremental'):
                cmd_at = i
                break
        if cmd_at is None:
            continue
        args = words[cmd_at + 1:]
        cache = None
        if len(args) >= 2 and args[0] == '-c':
            cache = args[1]
            args = args[2:]
        elif args and args[0].startswith('-c') and len(args[0]) > 2:
            cache = args[0][2:]
            args = args[1:]
        if len(args) != 3:
            result['error'] = 'expected <block device> <cow file> <minor> after %s' % words[cmd_at]
            return result
        try:
            minor = validate_minor(args[2])
            cache = validate_cache_size(cache)
        except DattobdError as exc:
            result['error'] = exc.msg
            return result
        result['minor'] = minor
        result['cache_size'] = cache
        result['mode'] = 'snapshot' if words[cmd_at] == 'reload-snapshot' else 'incremental'
        result['block_device'] = args[0]
        result['cow_file'] = args[1]
        result['dbdctl'] = words[cmd_at - 1] if cmd_at > 0 else None
        return result
    result['error'] = 'no reload-snapshot or reload-incremental command found'
    return result


def _read_script(path):
    """Content of ``path`` (str, surrogateescape) or None if absent; refuses non-regular files."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise DattobdError('Cannot inspect %s: %s.' % (path, exc.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise DattobdError('%s exists but is not a regular file (a symlink, directory or device); '
                           'refusing to touch it.' % path, hint='Remove it by hand, then run again.')
    if st.st_size > MAX_SCRIPT_BYTES:
        raise DattobdError('%s is %d bytes large; that is not a reload script.' % (path, st.st_size),
                           hint='Move it out of the reload directory.')
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
        try:
            data = os.read(fd, MAX_SCRIPT_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DattobdError('Cannot read %s: %s.' % (path, exc.strerror))
    return data.decode('utf-8', 'surrogateescape')


def scan(directory=DEFAULT_DIR):
    """Every ``reload_*`` file of ``directory`` in the order the boot hook runs them (glob order).

    Each entry: ``path, minor, mode, block_device, cow_file, cache_size, ours`` plus ``dbdctl``,
    ``file_mode`` (permission bits), ``executable`` and ``error`` (why it could not be parsed).
    A missing directory gives an empty list.
    """
    try:
        names = os.listdir(directory)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise DattobdError('Cannot list %s: %s.' % (directory, exc.strerror))
    entries = []
    for name in sorted(names):
        if not name.startswith(SCRIPT_PREFIX):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            entry = parse('', path)
            entry['error'] = 'not a regular file'
        else:
            try:
                entry = parse(_read_script(path) or '', path)
            except DattobdError as exc:
                entry = parse('', path)
                entry['error'] = exc.msg
        entry['file_mode'] = '%04o' % stat.S_IMODE(st.st_mode)
        entry['executable'] = bool(st.st_mode & stat.S_IXUSR)
        entries.append(entry)
    return entries


# --- writing ------------------------------------------------------------------------------------

def _ensure_directory(directory, check_mode, actions):
    """Create ``directory`` 0700 (parents 0755) or tighten it to 0700. Returns True if changed."""
    try:
        st = os.lstat(directory)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise DattobdError('Cannot inspect %s: %s.' % (directory, exc.strerror))
        actions.append('create directory %s (mode 0700)' % directory)
        if not check_mode:
            try:
                parent = os.path.dirname(directory.rstrip('/'))
                if parent and not os.path.isdir(parent):
                    os.makedirs(parent, 0o755)
                os.mkdir(directory, DIR_MODE)
                os.chmod(directory, DIR_MODE)
            except OSError as exc2:
                raise DattobdError('Cannot create %s: %s.' % (directory, exc2.strerror))
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise DattobdError('%s is not a directory (a symlink or a file); refusing to write reload '
                           'scripts there.' % directory, hint='Replace it with a directory owned by root.')
    if st.st_uid != os.geteuid():
        raise DattobdError('%s is owned by uid %d, not by uid %d; refusing to write boot scripts into a '
                           'directory another user controls.' % (directory, st.st_uid, os.geteuid()),
                           hint='chown root:root %s' % shlex.quote(directory))
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        _chmod(directory, DIR_MODE, actions, check_mode)
        return True
    return False


def _chmod(path, mode, actions, check_mode):
    """Plan (``actions``) and, unless ``check_mode``, make ``chmod mode path``."""
    actions.append('chmod %04o %s' % (mode, path))
    if not check_mode:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            raise DattobdError('Cannot chmod %s: %s.' % (path, exc.strerror))


def _atomic_write(path, content):
    directory = os.path.dirname(path)
    try:
        atomic_write(path, content.encode('utf-8', 'surrogateescape'), mode=SCRIPT_MODE, strict_dir_sync=True)
    except OSError as exc:
        raise DattobdError('Cannot write %s: %s.' % (path, exc.strerror or exc),
                           hint='Check free space and permissions of %s.' % directory)


def _conflicts(directory, minor, own_path):
    """Other reload scripts that also reload ``minor`` (the boot hook would run both)."""
    warnings = []
    for entry in scan(directory):
        if entry['path'] != own_path and entry['minor'] == minor:
            warnings.append('%s also reloads minor %d; at boot the second reload fails with EBUSY '
                            'or reloads the wrong volume. Remove it.' % (entry['path'], minor))
    return warnings


def ensure(minor, block_device, cow_relative, mode, cache_size=None, directory=DEFAULT_DIR,
           dbdctl=DEFAULT_DBDCTL, check_mode=False):
    """Make ``<directory>/reload_snapfleet_<minor>`` hold exactly the wanted script (0700).

    Returns ``dict(changed, path, before, after, actions, warnings, diff)``; ``before`` is the
    previous text or None. Raises :class:`DattobdError` for invalid input, a foreign file in
    the way, or a write error (the old script then stays in place, untouched).
    """
    content = render(minor, block_device, cow_relative, mode, cache_size=cache_size, dbdctl=dbdctl)
    minor = validate_minor(minor)
    path = script_path(minor, directory)
    actions = []
    changed = _ensure_directory(directory, check_mode, actions)
    before = _read_script(path)
    if before is not None and MARKER not in before.split('\n'):
        raise DattobdError('%s exists but was not written by snapfleet.dattobd (no marker line); '
                           'refusing to overwrite it.' % path,
                           hint='Move it away if it is obsolete, then run again.')
    wrong_mode = False
    if before is not None:
        wrong_mode = stat.S_IMODE(os.lstat(path).st_mode) != SCRIPT_MODE
    if before != content:
        actions.append('write %s' % path)
        if not check_mode:
            _atomic_write(path, content)
        changed = True
    elif wrong_mode:
        _chmod(path, SCRIPT_MODE, actions, check_mode)
        changed = True
    warnings = []
    if not is_stable_name(block_device):
        warnings.append('%s is a kernel name that can change between boots; the reload script should '
                        'name the volume by /dev/disk/by-uuid/... (or /dev/mapper/...).' % block_device)
    if os.path.isdir(directory):
        warnings.extend(_conflicts(directory, minor, path))
    return dict(changed=changed, path=path, before=before, after=content, actions=actions,
                warnings=warnings,
                diff=dict(before_header=path, after_header=path, before=before or '', after=content))


def remove(minor, directory=DEFAULT_DIR, check_mode=False):
    """Remove ``<directory>/reload_snapfleet_<minor>``. Returns ``dict(changed, path, before, actions)``.

    A file without the marker line is not ours and is refused.
    """
    path = script_path(minor, directory)
    before = _read_script(path)
    if before is None:
        return dict(changed=False, path=path, before=None, actions=[])
    if MARKER not in before.split('\n'):
        raise DattobdError('%s was not written by snapfleet.dattobd (no marker line); refusing to '
                           'remove it.' % path, hint='Remove it by hand if it is obsolete.')
    if not check_mode:
        try:
            os.unlink(path)
            fsync_dir(directory, strict=True)
        except OSError as exc:
            raise DattobdError('Cannot remove %s: %s.' % (path, exc.strerror))
    return dict(changed=True, path=path, before=before, actions=['remove %s' % path])


# --- drift -------------------------------------------------------------------------------------

def _trackers(procinfo):
    if procinfo is None:
        return []
    devices = getattr(procinfo, 'devices', procinfo)
    return list(devices or [])


def _get(obj, key):
    if isinstance(obj, dict):
        return obj.get(key)
    value = getattr(obj, key, None)
    return value


def _tracker_mode(tracker):
    mode = _get(tracker, 'mode')
    if mode in MODES:
        return mode
    state = _get(tracker, 'state')
    return 'snapshot' if (state or 0) & 1 else 'incremental'


def compare(scans, procinfo, same_device=devices.same_device_paths):
    """Drift between reload scripts (``scan()`` output) and live trackers.

    ``procinfo`` is a :class:`procinfo.ProcInfo`, a list of Trackers or of dicts with
    ``minor, state, block_device, cow_file``. ``same_device(a, b)`` decides whether two block
    device names are one device (injectable for tests). Returns a list of
    ``dict(minor, problem, path, ours, message, script, tracker)`` where ``problem`` is one of
    ``unparsable_script``, ``duplicate_script``, ``script_without_tracker``,
    ``tracker_without_script``, ``mode_mismatch``, ``cow_file_mismatch``,
    ``block_device_mismatch``, ``not_executable``, ``duplicate_device`` (two scripts of different
    minors reload one device: the boot hook refuses both; one entry per script that does not match
    the device's live tracker, see :func:`duplicates`). Empty list: scripts and trackers agree.
    """
    trackers = dict((_get(t, 'minor'), t) for t in _trackers(procinfo))
    problems, by_minor = _script_problems(scans)
    problems += _duplicate_device_problems(by_minor, trackers, same_device)
    problems += _pairing_problems(by_minor, trackers, same_device)
    return problems


def _problem(minor, problem, message, entry=None, tracker=None):
    """One drift entry of :func:`compare`."""
    return dict(
        minor=minor, problem=problem, message=message,
        path=entry['path'] if entry else None,
        ours=entry['ours'] if entry else None,
        script=dict((k, entry.get(k)) for k in ('mode', 'block_device', 'cow_file', 'cache_size'))
        if entry else None,
        tracker=dict(mode=_tracker_mode(tracker), state=_get(tracker, 'state'),
                     block_device=_get(tracker, 'block_device'), cow_file=_get(tracker, 'cow_file'),
                     error=_get(tracker, 'error'))
        if tracker is not None else None)


def _script_problems(scans):
    """``(problems of the scripts alone, {minor: the first script of that minor})``: unparsable, duplicate
    minor, not executable."""
    problems, by_minor = [], {}
    for entry in scans:
        if entry.get('minor') is None:
            problems.append(_problem(None, 'unparsable_script', '%s cannot be understood (%s); the boot hook runs '
                                     'it anyway.' % (entry['path'], entry.get('error') or 'unknown format'), entry))
            continue
        if entry['minor'] in by_minor:
            problems.append(_problem(entry['minor'], 'duplicate_script', '%s and %s both reload minor %d; the second '
                                     'one fails at boot.' % (by_minor[entry['minor']]['path'], entry['path'],
                                                             entry['minor']), entry))
            continue
        by_minor[entry['minor']] = entry
        if entry.get('executable') is False:
            problems.append(_problem(entry['minor'], 'not_executable', '%s is not executable; the boot hook cannot '
                                     'run it.' % entry['path'], entry))
    return problems, by_minor


def _duplicate_device_problems(by_minor, trackers, same_device):
    """Scripts of different minors that reload one device (see :func:`duplicates`)."""
    problems = []
    for entry, keep, others in duplicates(list(by_minor.values()), trackers, same_device):
        problems.append(_problem(entry['minor'], 'duplicate_device', '%s and %s both reload %s (minors %s); the boot '
                                 'hook refuses to reload either, so the tracker is lost at the next boot. %s' % (
                                     entry['path'], ', '.join(o['path'] for o in others), entry['block_device'],
                                     ', '.join(str(m) for m in sorted([entry['minor']] + [o['minor'] for o in others])),
                                     ('%s matches the live tracker %d: remove %s (snapfleet.dattobd.snapshot or the '
                                      'next backup does).' % (keep['path'], keep['minor'], entry['path']))
                                     if keep is not None else
                                     'No live tracker matches either: the next backup of the device is full.'),
                                 entry, trackers.get(entry['minor'])))
    return problems


def _pairing_problems(by_minor, trackers, same_device):
    """Each minor's script against its live tracker: one without the other, or mode, COW file or device differ."""
    problems = []
    for minor in sorted(set(by_minor) | set(m for m in trackers if m is not None)):
        entry = by_minor.get(minor)
        tracker = trackers.get(minor)
        if tracker is None:
            problems.append(_problem(minor, 'script_without_tracker', '%s reloads minor %d, but no tracker %d exists: '
                                     'the next boot would re-create a stale tracker.' % (entry['path'], minor, minor),
                                     entry))
            continue
        if entry is None:
            problems.append(_problem(minor, 'tracker_without_script', 'Tracker %d has no reload script: it will be '
                                     'lost at the next reboot and the next backup will be full.' % minor, None, tracker))
            continue
        mode = _tracker_mode(tracker)
        if entry['mode'] != mode:
            problems.append(_problem(minor, 'mode_mismatch', '%s reloads minor %d in %s mode but the tracker is in %s '
                                     'mode; the reload would fail (COW file not in the matching state).'
                                     % (entry['path'], minor, entry['mode'], mode), entry, tracker))
        if entry['cow_file'] != _get(tracker, 'cow_file'):
            problems.append(_problem(minor, 'cow_file_mismatch', '%s reloads COW file %s but tracker %d uses %s.'
                                     % (entry['path'], entry['cow_file'], minor, _get(tracker, 'cow_file')),
                                     entry, tracker))
        tracker_bdev = _get(tracker, 'block_device')
        if not (tracker_bdev and entry['block_device'] and same_device(entry['block_device'], tracker_bdev)):
            problems.append(_problem(minor, 'block_device_mismatch', '%s names block device %s but tracker %d traces '
                                     '%s.' % (entry['path'], entry['block_device'], minor, tracker_bdev), entry, tracker))
    return problems


def _matches_tracker(entry, tracker, same_device):
    return (tracker is not None and entry.get('block_device') and _get(tracker, 'block_device')
            and same_device(entry['block_device'], _get(tracker, 'block_device'))
            and entry.get('cow_file') == _get(tracker, 'cow_file'))


def duplicates(entries, trackers, same_device=devices.same_device_paths):
    """Reload scripts of different minors that name one block device (one tracker per device).

    ``entries``: parsed scripts (``scan()`` output); ``trackers``: ``{minor: tracker}`` (live).
    Returns ``[(entry, keep, others)]``, one per script to drop: ``keep`` is the script of the group
    that matches the device's live tracker (same minor, device and COW file), else None (then every
    script of the group is listed); ``others`` are the other scripts of its group.
    """
    parsed = [e for e in entries if e.get('minor') is not None and e.get('block_device')]
    groups = []
    for entry in parsed:
        for group in groups:
            if same_device(group[0]['block_device'], entry['block_device']):
                group.append(entry)
                break
        else:
            groups.append([entry])
    out = []
    for group in groups:
        if len(group) < 2:
            continue
        keep = None
        for entry in group:
            if _matches_tracker(entry, trackers.get(entry['minor']), same_device):
                keep = entry
                break
        for entry in group:
            if entry is not keep:
                out.append((entry, keep, [o for o in group if o is not entry]))
    return out
