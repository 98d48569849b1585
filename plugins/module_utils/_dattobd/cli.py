# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``snapfleet-dattobd``: the host-local runner, a backup cycle without Ansible (docs/user-guide.md).

The ``backup`` role installs it as one file (a zipapp of this library, ``hostapp.py``) with a
configuration file (``/etc/snapfleet/dattobd/backup.json``, root-only); the ``systemd`` role's
timer runs ``snapfleet-dattobd backup``.

* ``backup``: one cycle per configured volume, each exactly the ``backup`` module's
  (:func:`backup.run_volume` with the module's argument spec, defaults and validation,
  :func:`load_config`): the same records, locks and metrics, so the fleet report reads
  host-scheduled and controller-driven runs alike. Refused before anything starts (nothing
  written) when the configuration is invalid or another cycle holds a lock.
* ``status``: the driver, its trackers and the last cycle of every backup record, for a person or
  (``--json``) a program. Reads only.

Exit status: :data:`EXIT_OK`, :data:`EXIT_FAILED` (a cycle failed, or status could not read),
:data:`EXIT_USAGE` (bad arguments or configuration), :data:`EXIT_BUSY` (another cycle holds a
lock). Any failure ends with exactly one line on stderr; never a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import errno
import fcntl
import json
import os
import stat
import sys

from . import backup as backup_mod
from . import backup_record as records
from . import boot_state
from . import options
from . import procinfo
from . import wedge
from .errors import DattobdError

PROG = 'snapfleet-dattobd'
DEFAULT_PATH = '/usr/local/sbin/snapfleet-dattobd'
DEFAULT_CONFIG = '/etc/snapfleet/dattobd/backup.json'
CONFIG_FORMAT = 1
CONFIG_MAX_BYTES = 1024 * 1024
# Options of the backup module a configuration does not hold: each run of the runner sets them.
PER_RUN = ('full', 'run_boot_id')
# Nor the host form of the module (a list of volumes): the configuration is a list of volumes itself.
NOT_PER_VOLUME = PER_RUN + ('volumes',)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: try again later

STATUS_TIMEOUT = 10


class Refused(DattobdError):
    """The runner does not start (``code``: the exit status); nothing was written."""

    def __init__(self, msg, code=EXIT_USAGE, **details):
        DattobdError.__init__(self, msg, **details)
        self.code = code


def one_line(text):
    """``text`` on one line: every run of whitespace (newlines, tabs...) one space."""
    return ' '.join(str(text).split())


# --- the configuration ---------------------------------------------------------------------

def volume_spec():
    """The options of one configured volume: the ``backup`` module's, less those each run sets."""
    spec = backup_mod.argument_spec()
    for name in NOT_PER_VOLUME:
        spec.pop(name)
    spec['group'] = dict(type='str')  # a consistency group, as in the module's volumes (backup_group.Group)
    return spec


def volume_params(defaults, volume, where):
    """The backup module's parameters of one configured volume (``defaults`` under ``volume``), checked by the
    module's argument spec and its validation (:func:`backup.validate_params`). Raises :class:`Refused`."""
    if not isinstance(volume, dict):
        raise Refused('%s must be a dictionary of backup options, got %r.' % (where, volume))
    merged = dict(defaults)
    merged.update(volume)
    for name in ('device', 'image'):  # optional in the module's spec (its host form has neither)
        if merged.get(name) is None:
            raise Refused('%s.%s is required.' % (where, name))
    try:
        params = options.apply_spec(volume_spec(), merged, where + '.')
        params.update(full=False, run_boot_id=None)
        try:
            backup_mod.check_group_hooks(where, volume, params.get('group'))
        except DattobdError as exc:  # its message names the volume
            raise Refused(exc.msg)
        if params.get('group') is None:
            params.pop('group')  # a volume alone: the module's parameters exactly
        backup_mod.validate_params(dict(params))  # reads only; run_cycle validates again
    except Refused:
        raise
    except DattobdError as exc:
        raise Refused('%s: %s' % (where, exc.msg))
    return params


def check_config(doc):
    """The volumes' parameters of a configuration document (a dict); raises :class:`Refused`."""
    if not isinstance(doc, dict):
        raise Refused('the configuration must be a JSON object, got %s.' % type(doc).__name__)
    unknown = sorted(str(k) for k in doc if k not in ('format', 'defaults', 'volumes'))
    if unknown:
        raise Refused('unknown configuration key %s (known: format, defaults, volumes).' % ', '.join(unknown))
    if doc.get('format') != CONFIG_FORMAT:
        raise Refused('configuration format %r is not %d (written by another version of the collection?).'
                      % (doc.get('format'), CONFIG_FORMAT))
    defaults = doc.get('defaults') or {}
    if not isinstance(defaults, dict):
        raise Refused('defaults must be a dictionary of backup options, got %r.' % (defaults,))
    volumes = doc.get('volumes')
    if not isinstance(volumes, list):
        raise Refused('volumes must be a list, got %r.' % (volumes,))
    out = [volume_params(defaults, v, 'volumes[%d]' % i) for i, v in enumerate(volumes)]
    seen = {}
    for i, p in enumerate(out):
        p['name'] = p['name'] or os.path.basename(p['image'])
        for key in ('image', 'name'):
            other = seen.get((key, records.normalized_image(p[key]) if key == 'image' else p[key]))
            if other is not None:
                raise Refused('volumes[%d] and volumes[%d] have the same %s %r: each volume needs its own.'
                              % (other, i, key, p[key]))
            seen[(key, records.normalized_image(p[key]) if key == 'image' else p[key])] = i
    return out


def _same(value, default):
    """``value`` is ``default``: equal and of the same type (30 and 30.0 are the same number; 1 is not True)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return value == default
    return type(value) is type(default) and value == default


def render_config(defaults, volumes):
    """The configuration file's bytes (checked by :func:`check_config`: a bad one raises :class:`Refused`).

    A default that is null or the backup module's own default is left out (the runner applies it anyway), so the
    backup call's ``runner`` option and the ``runner`` module write the same file for the same settings."""
    spec = volume_spec()
    kept = dict((name, value) for name, value in (defaults or {}).items()
                if value is not None and not (name in spec and 'default' in spec[name]
                                              and _same(value, spec[name]['default'])))
    doc = {'format': CONFIG_FORMAT, 'defaults': kept, 'volumes': list(volumes or [])}
    check_config(json.loads(json.dumps(doc)))
    return (json.dumps(doc, indent=2, sort_keys=True) + '\n').encode('utf-8')


def _check_private(path, st):
    """Refuse a configuration others could change: its hooks run as root."""
    if st.st_uid not in (0, os.geteuid()) or stat.S_IMODE(st.st_mode) & 0o022:
        raise Refused('%s can be changed by others (mode %04o, uid %d): its hooks would run as root.'
                      % (path, stat.S_IMODE(st.st_mode), st.st_uid))


def open_config(path):
    """``(file descriptor, parameters of every volume)`` of the configuration file ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except OSError as exc:
        raise Refused('cannot read the configuration %s: %s.' % (path, os.strerror(exc.errno)))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused('the configuration %s is not a regular file.' % path)
        _check_private(path, st)
        _check_private(os.path.dirname(os.path.abspath(path)), os.stat(os.path.dirname(os.path.abspath(path))))
        data = os.read(fd, CONFIG_MAX_BYTES + 1)
        if len(data) > CONFIG_MAX_BYTES:
            raise Refused('the configuration %s is larger than %d bytes.' % (path, CONFIG_MAX_BYTES))
        try:
            doc = json.loads(data.decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused('the configuration %s is not valid JSON: %s.' % (path, exc))
        try:
            return fd, check_config(doc)
        except Refused as exc:
            raise Refused('the configuration %s is invalid: %s' % (path, exc.msg))
    except BaseException:
        os.close(fd)
        raise


# --- backup ------------------------------------------------------------------------------------

def _hold(fd, path):
    """One runner per configuration: flock of the configuration file itself (read-only is enough)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise Refused('another %s backup of %s is running.' % (PROG, path), code=EXIT_BUSY)
        raise


def _describe_ok(name, result):
    figures = ''
    if result.get('bytes') is not None:
        figures = ', %s blocks, %s bytes in %s s' % (result.get('blocks'), result.get('bytes'), result.get('cycle_seconds'))
    return '%s: ok, %s backup%s; next run %s' % (name, result.get('mode'), figures, result.get('next_run'))


def _describe_failure(result):
    """A failed volume's entry (:func:`backup.run_volumes`) in one line."""
    where = ' at step %s' % result['step'] if result.get('step') else ''
    hint = ' Hint: %s' % result['hint'] if result.get('hint') else ''
    return one_line('failed%s: %s%s' % (where, result.get('msg'), hint))


def run_backup(volumes, out, check_mode=False, full=False, ops_factory=None, boot_id=None):
    """Every volume's cycle (``volumes``: :func:`check_config` parameters), as the module's host form runs them
    (:func:`backup.run_volumes`: one after the other, a consistency group together). Returns ``(results, failures)``.

    ``results``: one dict per volume (the module's result, or its failure with ``failed``);
    ``failures``: ``(name, one-line reason)``. A signal that stopped a cycle stops the run.
    """
    if boot_id is None:
        boot_id = boot_state.read_boot_id()
    volumes = [dict(params, full=bool(full or params.get('full')), run_boot_id=boot_id or None) for params in volumes]

    def make_ops(params):
        return ops_factory(params) if ops_factory else backup_mod.volume_ops(params)
    try:
        done = backup_mod.run_volumes(volumes, make_ops, check_mode=check_mode, handle_signals=True)
    except DattobdError as exc:  # a volume refused before any ran (run_volumes validates every one first)
        raise Refused(exc.msg)
    results, failures = [], []
    for result in done['volumes']:
        name = result['name']
        if result['failed']:
            line = _describe_failure(result)
            results.append(result)
            failures.append((name, line))
            out.write('%s: %s\n' % (name, line))
            for warning in result.get('warnings') or []:
                out.write('%s: warning: %s\n' % (name, one_line(warning)))
            if result.get('step') == 'interrupted':
                break
            continue
        results.append(result)
        out.write(_describe_ok(name, result) + '\n')
        for warning in result.get('warnings') or []:
            out.write('%s: warning: %s\n' % (name, one_line(warning)))
    for warning in (done.get('ping') or {}).get('warnings') or []:  # the run's pings to its monitor (ping.py)
        out.write('warning: %s\n' % one_line(warning))
    return results, failures


def cmd_backup(args, out, ops_factory=None):
    fd, volumes = open_config(args.config)
    try:
        _hold(fd, args.config)
        wanted = list(args.volume or [])
        unknown = sorted(set(wanted) - set(p['name'] for p in volumes))
        if unknown:
            raise Refused('no configured volume is named %s (configured: %s).'
                          % (', '.join(unknown), ', '.join(p['name'] for p in volumes) or 'none'))
        volumes = [p for p in volumes if not wanted or p['name'] in wanted]
        if not volumes:
            raise Refused('no volume is configured in %s: nothing to back up.' % args.config)
        for params in volumes:  # refuse before any cycle starts: a cycle started elsewhere holds a lock
            try:
                records.check_not_locked(params['state_dir'], params['image'])
            except DattobdError as exc:
                raise Refused('%s: %s Nothing was started.' % (params['name'], exc.msg), code=EXIT_BUSY)
            except OSError as exc:
                raise Refused('%s: cannot check the lock of %s: %s.' % (params['name'], params['image'], exc))
        results, failures = run_backup(volumes, out if not args.json else _Null(), check_mode=args.check,
                                       full=args.full, ops_factory=ops_factory)
    finally:
        os.close(fd)
    if args.json:
        out.write(json.dumps({'failed': bool(failures), 'check_mode': bool(args.check), 'volumes': results},
                             sort_keys=True, default=str) + '\n')
    if failures:
        raise DattobdError('backup failed for %s' % '; '.join('%s (%s)' % f for f in failures))
    return EXIT_OK


class _Null(object):
    def write(self, text):
        pass


# --- status ------------------------------------------------------------------------------------

def _driver():
    """The driver as ``status`` shows it (never raises)."""
    out = {'loaded': False, 'version': None, 'trackers': [], 'error': None, 'wedged': wedge.read()}
    try:
        info = procinfo.read(timeout=STATUS_TIMEOUT)
    except DattobdError as exc:
        out['error'] = one_line(exc.msg)
        out['wedged'] = wedge.read()
        return out
    out.update(loaded=info.loaded, version=info.version, trackers=[t.to_dict() for t in info.devices])
    return out


def status(config, state_dir=None):
    """The host's status as a dict: driver and trackers, configured volumes, backup records. Reads only."""
    volumes, problem = [], None
    if config:
        try:
            fd, volumes = open_config(config)
            os.close(fd)
        except Refused as exc:
            problem = exc.msg
    dirs = [state_dir] if state_dir else sorted(set(p['state_dir'] for p in volumes)) or [records.DEFAULT_STATE_DIR]
    found = []
    for directory in dirs:
        for name, record in records.read_records(directory):
            found.append(dict(record or {'error': 'not a backup record (no JSON object)'}, file=os.path.join(directory, name)))
    by_image = dict((records.normalized_image(r['image']), r['file']) for r in found if isinstance(r.get('image'), str))
    configured = [{'name': p['name'], 'device': p['device'], 'image': p['image'],
                   'record': by_image.get(records.normalized_image(p['image']))} for p in volumes]
    return {'driver': _driver(), 'config': config, 'config_error': problem, 'state_dirs': dirs,
            'volumes': configured, 'records': found}


def _status_text(st):
    lines = []
    drv = st['driver']
    if drv['wedged']:
        wedged = drv['wedged']
        lines.append('driver: WEDGED since %s (%s): only a reboot clears it'
                     % (wedged.get('since'), one_line(wedged.get('reason'))))
    elif drv['error']:
        lines.append('driver: cannot be read: %s' % drv['error'])
    elif not drv['loaded']:
        lines.append('driver: not loaded')
    else:
        count = len(drv['trackers'])
        lines.append('driver: loaded, version %s, %d tracker%s' % (drv['version'], count, '' if count == 1 else 's'))
    for t in drv['trackers']:
        lines.append('  datto%s  %-28s %s  cow %s  seq %s'
                     % (t['minor'], t['state_name'], t['block_device'], t['cow_file'], t['seq_id']))
    if st['config_error']:
        lines.append('config: %s' % st['config_error'])
    for v in st['volumes']:
        if not v['record']:
            lines.append('volume %s (%s -> %s): no backup yet' % (v['name'], v['device'], v['image']))
    lines.append('backups (%s):' % ', '.join(st['state_dirs']))
    if not st['records']:
        lines.append('  none')
    for r in st['records']:
        if 'error' in r and 'image' not in r:
            lines.append('  %s: %s' % (r['file'], r['error']))
            continue
        result = r.get('last_result') or 'started'
        line = '  %s  %s -> %s  last %s %s (%s)' % (r.get('name'), r.get('device'), r.get('image'), result.upper()
                                                    if result != 'ok' else result, r.get('finished') or r.get('started'),
                                                    r.get('mode'))
        if result != 'ok':
            line += ' at step %s: %s' % (r.get('step'), one_line(r.get('msg') or ''))
        line += '; last success %s; next run %s' % (r.get('last_success') or 'never', r.get('next_run'))
        lines.append(line)
    return '\n'.join(lines) + '\n'


def cmd_status(args, out):
    config = args.config if (args.config_given or os.path.exists(args.config)) else None
    st = status(config, args.state_dir)
    out.write(json.dumps(st, sort_keys=True, default=str) + '\n' if args.json else _status_text(st))
    if st['config_error']:
        raise DattobdError(st['config_error'])
    return EXIT_OK


# --- command line ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Refused('%s (see %s --help)' % (message, PROG))


def parser():
    top = _Parser(prog=PROG, description='Backup cycles of the volumes tracked by dattobd, run on this host '
                  '(snapfleet.dattobd). Exit status: 0 done, 1 a cycle failed, 2 bad arguments or '
                  'configuration, 75 another cycle is running.')
    sub = top.add_subparsers(dest='command', metavar='{backup,status}')
    sub.required = True
    b = sub.add_parser('backup', help='run one backup cycle of every configured volume (as the backup module)')
    s = sub.add_parser('status', help="show the driver's trackers and the last cycle of every volume (reads only)")
    for p in (b, s):
        p.add_argument('--config', default=None, help='configuration file (default %s)' % DEFAULT_CONFIG)
        p.add_argument('--json', action='store_true', help='print JSON')
    b.add_argument('--volume', action='append', metavar='NAME', help='only this volume (repeat for more)')
    b.add_argument('--full', action='store_true', help='take a full backup of every volume this run')
    b.add_argument('--check', action='store_true', help='report what a run would do; change nothing (check mode)')
    s.add_argument('--state-dir', default=None, help='directory of the backup records (default: the configuration\'s)')
    return top


def main(argv=None, out=None, err=None, ops_factory=None):
    """Run the command line ``argv``; returns the exit status. One line on ``err`` for any failure."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        try:
            args = parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        args.config_given = args.config is not None
        args.config = args.config or DEFAULT_CONFIG
        if args.command == 'backup':
            return cmd_backup(args, out, ops_factory=ops_factory)
        return cmd_status(args, out)
    except Refused as exc:
        err.write('%s: %s\n' % (PROG, one_line(exc.msg)))
        return exc.code
    except DattobdError as exc:
        err.write('%s: %s\n' % (PROG, one_line(exc.msg)))
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write('%s: interrupted\n' % PROG)
        return EXIT_FAILED
    except Exception as exc:  # pylint: disable=broad-except
        err.write('%s: unexpected error: %s: %s\n' % (PROG, type(exc).__name__, one_line(exc)))
        return EXIT_FAILED
