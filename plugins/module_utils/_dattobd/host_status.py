# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's dattobd status, read only: what the ``info`` module returns (:func:`gather`), and what the fleet
report reads of a host (:func:`collect`: that and the backup records), which the ``backup`` module's host form
also returns (its ``status`` option): a backup run needs no status tasks of its own."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import platform
import shlex

from . import dbdctl, devices, dkms, dkms_facts, hygiene, kernels, planner, procinfo, runner, wedge
from . import backup_record as records
from . import reload as reload_lib
from .errors import DattobdError, DriverTimeout, fail_module

PARAMS_DIR = '/sys/module/dattobd/parameters'
OPT_DIRS = ['/usr/local/bin', '/usr/sbin', '/sbin']
WEDGE_CLEARS = 'a hard reset (a clean reboot hangs): see docs/troubleshooting.md'


class InfoHost(object):
    """Host access of the status gathering (unit tests replace it). ``which(name, opt_dirs)``: the path of a
    command or None (a module's ``get_bin_path``); without it, the PATH and the usual sbin directories."""

    def __init__(self, which=None):
        self.which = which

    def procinfo(self, timeout):
        return procinfo.read(timeout=timeout)

    def driver_version(self):
        return dbdctl.read_driver_version()

    def module_parameters(self):
        params = {}
        try:
            names = sorted(os.listdir(PARAMS_DIR))
        except OSError:
            return params
        for name in names:
            try:
                with open(os.path.join(PARAMS_DIR, name)) as f:
                    params[name] = f.read().strip()
            except (OSError, UnicodeDecodeError):
                params[name] = None
        return params

    def max_snap_devices(self):
        return procinfo.max_snap_devices()

    def tools_record(self):
        """The engine role's record of the tools it built from source (its version), or None."""
        return dkms_facts.read_tools_record()

    def bin(self, name, path=None):
        if path:
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        if self.which is not None:
            return self.which(name, OPT_DIRS)
        for directory in os.environ.get('PATH', '/usr/bin:/bin').split(os.pathsep) + OPT_DIRS:
            found = os.path.join(directory, name)
            if directory and os.path.isfile(found) and os.access(found, os.X_OK):
                return found
        return None

    def run(self, argv, timeout):
        return runner.run_timed(argv, timeout=timeout)

    def kernel(self):
        return platform.release()

    def path_kind(self, path):
        """'directory', 'missing' or 'other' (a regular file, a device...) for ``path``."""
        if os.path.isdir(path):
            return 'directory'
        return 'other' if os.path.lexists(path) else 'missing'

    def reload_scan(self, directory):
        return reload_lib.scan(directory)

    def reload_compare(self, scans, info):
        return reload_lib.compare(scans, info)

    def devices_host(self):
        """Host access of the stray COW scan (block devices, mounts, directories)."""
        return devices.Host()

    def kernel_host(self, timeout):
        """Host access of the kernel gate and the conflict scan (files below /)."""
        return kernels.Host(self.run, self.bin, root='/', timeout=min(timeout, 30))


def read_driver(host, timeout, check_mode=False):
    """``(ProcInfo, marker)``: /proc/datto-info, or, when the driver is wedged, no tracker and the wedge marker.

    A marker of this boot (wedge.py) means the driver is not read at all; a read that times out marks it
    (the marker file is not written in check mode).
    """
    marker = wedge.read()
    if marker is None:
        try:
            return host.procinfo(timeout), None
        except DriverTimeout as exc:
            marker = wedge.mark(exc, 'reading %s' % procinfo.PROC_PATH,
                                persist=not check_mode).details['driver_wedged']
    return procinfo.ProcInfo(True), dict(marker, clears=WEDGE_CLEARS)


def gather(p, host, check_mode=False, warn=None):
    """What the info module returns: the driver, its trackers, the tools, DKMS, the kernel gate, other snapshot
    drivers, the reload scripts and stray COW files. ``p``: the info module's options (:func:`argument_spec`),
    ``warn(text)``: where warnings go. Reads only, except the wedge marker (wedge.py) outside check mode."""
    warn = warn or (lambda text: None)
    timeout = p['timeout']
    actions = []
    info, wedged = read_driver(host, timeout, check_mode=check_mode)
    if wedged:
        warn('The dattobd driver is wedged since %s (%s): its trackers cannot be read. %s'
             % (wedged.get('since'), wedged.get('reason'), wedge.RECOVERY))
    result = dict(changed=False, loaded=info.loaded, driver_version=host.driver_version() if info.loaded else None,
                  proc_version=info.version, module_parameters=host.module_parameters() if info.loaded else {},
                  trackers=[t.to_dict() for t in info.devices], actions=actions, driver_wedged=wedged)
    max_devices = host.max_snap_devices()
    result['max_snap_devices'] = max_devices
    result['free_minors'] = info.free_minors(max_devices) if info.loaded else []

    tools = dict(dbdctl=host.bin('dbdctl', p['dbdctl_path']), update_img=host.bin('update-img'), version=None)
    if p['dbdctl_path'] and not tools['dbdctl']:
        warn('dbdctl_path %r is not an executable file: dbdctl is reported as not found.' % p['dbdctl_path'])
    # the engine module's answer (dkms_facts.query_tools_version): the engine role's record, else the packages
    tools['version'], ran = dkms_facts.query_tools_version(lambda argv: host.run(argv, min(timeout, 30)),
                                                           host.tools_record(), host.bin('dpkg-query'), host.bin('rpm'))
    actions.extend(shlex.join(cmd) for cmd in ran)
    result['tools'] = tools

    kernel = host.kernel()
    result['dkms'], dkms_all = _dkms_view(host, p, kernel, timeout, actions)

    khost = host.kernel_host(timeout)
    result['kernel_gate'] = kernels.gather(khost, dkms.os_family(dkms.Paths(khost.root)), kernel,
                                           dkms_entries=result['dkms']['entries'], version=result['driver_version'])
    result['conflicts'] = hygiene.conflicts(khost, dkms_all)
    actions.extend(khost.commands)
    if result['conflicts']:
        warn('Other snapshot drivers on this host: %s.' % '; '.join(hygiene.describe(result['conflicts'])))

    scans, result['reload'] = _reload_view(host, p, info, wedged, warn)
    result['stray_cow_files'] = _strays(host, p, result['trackers'], scans, wedged, warn)
    result['summary'] = summarize(result)
    return result


def _dkms_view(host, p, kernel, timeout, actions):
    """``(the info module's dkms section, the text of `dkms status` or None)``.

    One `dkms status` (every module) serves both dattobd's entries and the other drivers' (the conflict
    scan): dkms is a shell script that takes seconds per call on a slow host."""
    dk = dict(available=False, kernel=kernel, state=None, entries=[], error=None)
    path = host.bin('dkms') if p['dkms'] else None
    if not path:
        return dk, None
    dk['available'] = True
    cmd = [path, 'status']
    actions.append(shlex.join(cmd))
    try:
        rc, out, err = host.run(cmd, timeout)
    except DattobdError as exc:
        dk['error'] = exc.full_msg
        return dk, None
    if rc != 0:
        dk['error'] = (err or out).strip() or 'dkms status exited %d' % rc
        return dk, None
    dk['entries'] = dkms.parse_dkms_status(out)
    states = [e['state'] for e in dk['entries'] if e['kernel'] == kernel]
    for wanted in ('installed', 'installed-weak', 'built', 'added'):
        if wanted in states:
            dk['state'] = wanted
            break
    if dk['state'] is None and dk['entries']:
        dk['state'] = 'added' if any(e['kernel'] is None for e in dk['entries']) else None
    return dk, out


def _reload_view(host, p, info, wedged, warn):
    """``(the reload scripts read or None, the info module's reload section)``."""
    kind = host.path_kind(p['reload_dir'])
    if kind == 'directory':
        scans = host.reload_scan(p['reload_dir'])
        # wedged: the trackers are unknown, so is the drift (null, never "every script drifts")
        drift = host.reload_compare(scans, info) if scans is not None and not wedged else None
    else:
        # Nothing to compare the trackers with: whether the scripts are in sync is unknown.
        warn('reload_dir %s %s: no reload script can be read, so whether the trackers come back after '
             'a reboot is unknown (reload.in_sync is null).'
             % (p['reload_dir'], 'does not exist' if kind == 'missing' else 'is not a directory'))
        scans = drift = None
    return scans, dict(directory=p['reload_dir'], scripts=scans or [], drift=drift or [],
                       in_sync=not drift if drift is not None else None)


def _strays(host, p, trackers, scans, wedged, warn):
    """COW files on tracked filesystems that no tracker and no reload script names (a warning names them)."""
    sources = [(t['block_device'], t['cow_file']) for t in trackers]
    sources += [(s.get('block_device'), s.get('cow_file')) for s in scans or []]
    if wedged:
        sources = []  # the live trackers' COW files are unknown: none is called stray
    try:
        strays = hygiene.tracked_strays(host.devices_host(), sources, p['cow_name'],
                                        protected=hygiene.pending_cow_files(p['backup_state_dir']))
    except DattobdError as exc:
        warn('Stray COW files were not looked for: %s' % exc.msg)
        return []
    if strays:
        warn('Stray COW files (no tracker or reload script names them): %s. Remove them with '
             'snapfleet.dattobd.snapshot cleanup=true.' % ', '.join(f['path'] for f in strays))
    return strays


def summarize(r):
    if r.get('driver_wedged'):
        w = r['driver_wedged']
        return 'dattobd %s is wedged since %s (%s): its trackers cannot be read; only a hard reset clears it.' % (
            r['driver_version'] or '(unknown version)', w.get('since') or 'earlier in this boot', w.get('reason'))
    if not r['loaded']:
        text = 'dattobd is not loaded (no /proc/datto-info): no tracker exists'
        if r['dkms']['state']:
            text += '; DKMS has it %s for kernel %s' % (r['dkms']['state'], r['dkms']['kernel'])
        n = len(r['reload']['scripts'])
        if n:
            text += '; %d reload script(s) are waiting for the next boot' % n
        return text + '.'
    trackers = r['trackers']
    counts = {}
    for t in trackers:
        key = 'failed' if t['failed'] else t['phase']
        counts[key] = counts.get(key, 0) + 1
    detail = ', '.join('%d %s' % (v, k) for k, v in sorted(counts.items()))
    text = 'dattobd %s loaded, %d tracker%s%s, %d free minors' % (
        r['driver_version'] or r['proc_version'] or '(unknown version)', len(trackers),
        '' if len(trackers) == 1 else 's', ' (%s)' % detail if detail else '', len(r['free_minors']))
    if r['reload']['in_sync'] is True:
        text += ', reload scripts in sync'
    elif r['reload']['in_sync'] is False:
        text += ', reload scripts drift from the trackers (%d problem%s)' % (
            len(r['reload']['drift']), '' if len(r['reload']['drift']) == 1 else 's')
    return text + '.'


def argument_spec():
    return dict(
        reload_dir=dict(type='path', default='/etc/datto/dla'),
        dkms=dict(type='bool', default=True),
        cow_name=dict(type='str', default='.datto_{minor}_{seq}'),
        backup_state_dir=dict(type='path', default='/var/lib/snapfleet/dattobd/backups'),
        timeout=dict(type='int', default=60),
        dbdctl_path=dict(type='path'),
    )


UNEXPECTED = dict(msg='Unexpected error while gathering dattobd facts: %s',
                  hint='Please report this to the snapfleet.dattobd maintainers.')


def module_runner(module, host):
    """The ``info`` module's work on its validated ``module.params``: :func:`gather` on ``host`` (an
    :class:`InfoHost`). A wedged driver found on the way fails with ``wedged`` set."""
    p = module.params
    if p['timeout'] < 1:
        raise DattobdError('timeout must be at least 1 second, got %d.' % p['timeout'])
    if not os.path.isabs(p['reload_dir']):
        raise DattobdError('reload_dir must be an absolute path, got %r.' % p['reload_dir'])
    planner.validate_cow_name(p['cow_name'])
    try:
        return gather(p, host, check_mode=module.check_mode, warn=module.warn)
    except DriverTimeout as exc:
        fail_module(module, exc, wedged=True)


def collect(host, state_dir, timeout=60, dbdctl_path=None, cow_name=None, check_mode=False, warn=None):
    """What the fleet report reads of a host: ``{'info', 'records', 'failed', 'wedged', 'msg'}``.

    ``info``: :func:`gather` with the info module's defaults (``timeout``, ``dbdctl_path``, ``cow_name`` and the
    records' ``state_dir`` given), None when it failed: then ``failed`` is true, ``msg`` says why and ``wedged``
    whether a driver call timed out. ``records``: every backup record in ``state_dir`` (they do not need the
    driver, so a host whose driver fails still shows its volumes). Never raises for the host's state."""
    p = dict((name, spec.get('default')) for name, spec in argument_spec().items())
    p.update(timeout=timeout, dbdctl_path=dbdctl_path, backup_state_dir=state_dir)
    if cow_name:
        p['cow_name'] = cow_name
    out = dict(info=None, records=[], failed=False, wedged=False, msg='')
    try:
        out['info'] = gather(p, host, check_mode=check_mode, warn=warn)
    except DattobdError as exc:
        out.update(failed=True, wedged=isinstance(exc, DriverTimeout), msg=exc.full_msg)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        out.update(failed=True, msg='Unexpected error while gathering dattobd facts: %s' % exc)
    out['records'] = [record for dummy, record in records.read_records(state_dir) if isinstance(record, dict)]
    return out
