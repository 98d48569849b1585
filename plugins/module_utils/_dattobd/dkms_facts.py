# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host as the ``engine`` module sees it (the *gather facts* part of dkms.py's flow): paths under
``Paths.root``, the validated version and kernel names, DKMS status, the loaded module, headers,
the persisted configuration and the DKMS source tree. Reads only."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from . import procinfo as _procinfo
from . import runner as _runner
from . import validation
from .errors import DattobdError

NAME = 'dattobd'
MODPROBE_CONF = '/etc/modprobe.d/dattobd.conf'
MODULES_LOAD_CONF = '/etc/modules-load.d/dattobd.conf'
SYS_MODULE = '/sys/module/dattobd'
DKMS_TREE = '/var/lib/dkms'
TOOLS_VERSION_FILE = '/var/lib/snapfleet/dattobd/tools.version'
# Visible in /sys/module/dattobd/parameters (the others have permission 0).
SYSFS_PARAMETERS = ('max_snap_devices', 'debug')
DEFAULT_BUILD_TIMEOUT = 3600

_VERSION_RE = re.compile(r'^[0-9]+(\.[0-9]+){1,3}([~+-][A-Za-z0-9.]+)?$')
_KERNEL_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+~-]*$')


class Paths(object):
    """Host paths, all below ``root`` (``/`` on a real host)."""

    def __init__(self, root='/'):
        self.root = root

    def p(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def source_dir(self, version):
        return '/usr/src/%s-%s' % (NAME, version)

    def headers(self, kernel):
        return '/lib/modules/%s/build' % kernel

    def make_log(self, version):
        return '%s/%s/%s/build/make.log' % (DKMS_TREE, NAME, version)


def validate_version(version, what='version'):
    if version is None:
        return None
    version = str(version).strip()
    if not _VERSION_RE.match(version):
        raise DattobdError('Invalid dattobd %s %r.' % (what, version),
                           hint='Use a release number such as 0.12.1.')
    return version


def validate_kernel(kernel):
    kernel = str(kernel).strip()
    if not _KERNEL_RE.match(kernel) or '..' in kernel:
        raise DattobdError('Invalid kernel release %r.' % (kernel,),
                           hint='Use a release as printed by "uname -r", e.g. 6.1.0-28-amd64.')
    return kernel


# --- DKMS status ---------------------------------------------------------------------------

_STATUS_NEW = re.compile(r'^(?P<name>[^/,\s]+)/(?P<version>[^,:\s]+)(?:,\s*(?P<kernel>[^,:\s]+)(?:,\s*(?P<arch>[^:\s]+))?)?:\s*(?P<state>[A-Za-z-]+)')
_STATUS_OLD = re.compile(r'^(?P<name>[^/,\s]+),\s*(?P<version>[^,:\s]+)(?:,\s*(?P<kernel>[^,:\s]+)(?:,\s*(?P<arch>[^:\s]+))?)?:\s*(?P<state>[A-Za-z-]+)')


def parse_dkms_status(text, name=NAME):
    """Parse ``dkms status`` (dkms 2.x ``name, ver, kernel, arch: state`` and 3.x ``name/ver, ...``).

    Returns a list of dicts ``version, kernel (None for 'added'), arch, state``.
    """
    entries = []
    for line in (text or '').splitlines():
        line = line.strip()
        m = _STATUS_NEW.match(line) or _STATUS_OLD.match(line)
        if not m or m.group('name') != name:
            continue
        entries.append({'version': m.group('version'), 'kernel': m.group('kernel'),
                        'arch': m.group('arch'), 'state': m.group('state').lower()})
    return entries


def dkms_state(entries, version, kernel):
    """``installed``, ``built``, ``added`` or ``None`` for one (version, kernel)."""
    states = [e['state'] for e in entries if e['version'] == version and e['kernel'] == kernel]
    for wanted in ('installed', 'installed-weak', 'built'):
        if wanted in states:
            return 'installed' if wanted.startswith('installed') else wanted
    if any(e['version'] == version for e in entries):
        return 'added'
    return None


# --- facts ---------------------------------------------------------------------------------

def _read(paths, path, default=None):
    try:
        with open(paths.p(path), 'r') as fh:
            return fh.read()
    except (IOError, OSError):
        return default


def os_family(paths):
    """``debian``, ``redhat``, ``suse`` or ``unknown`` from /etc/os-release."""
    text = _read(paths, '/etc/os-release', '') or ''
    ids = []
    for line in text.splitlines():
        if line.startswith(('ID=', 'ID_LIKE=')):
            ids.extend(line.split('=', 1)[1].strip().strip('"').lower().split())
    for family, names in (('debian', ('debian', 'ubuntu')), ('suse', ('suse', 'opensuse', 'sles', 'sle')),
                          ('redhat', ('rhel', 'fedora', 'centos', 'redhat'))):
        if any(i in names or i.startswith(names) for i in ids):
            return family
    return 'unknown'


def headers_package(family, kernel):
    return {
        'debian': 'linux-headers-%s' % kernel,
        'redhat': 'kernel-devel-%s' % kernel,
        'suse': 'kernel-default-devel (and kernel-syms on SLE)',
    }.get(family, 'the kernel headers package for %s' % kernel)


def installed_kernels(paths):
    base = paths.p('/lib/modules')
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [n for n in names if os.path.isdir(os.path.join(base, n)) and _KERNEL_RE.match(n)]


def loaded_module(paths):
    """``None`` when not loaded, else dict(version, parameters) read from sysfs."""
    base = SYS_MODULE
    if not os.path.isdir(paths.p(base)):
        return None
    version = (_read(paths, base + '/version', '') or '').strip() or None
    params = {}
    for name in SYSFS_PARAMETERS:
        value = _read(paths, '%s/parameters/%s' % (base, name))
        if value is not None:
            number = validation.to_int(value, strip=True)
            if number is not None:
                params[name] = number
    return {'version': version, 'parameters': params}


def check_source(paths, source_dir, version):
    """Check that ``source_dir`` holds a DKMS dattobd tree of ``version``; raise otherwise."""
    hint = ('Put the dattobd source (the content of its src/ folder and a dkms.conf) there, e.g. with '
            'the snapfleet.dattobd.engine role (method source), or install the vendor package.')
    if not os.path.isdir(paths.p(source_dir)):
        raise DattobdError('DKMS source %s is missing.' % source_dir, hint=hint, source_dir=source_dir)
    conf = _read(paths, source_dir + '/dkms.conf')
    if conf is None:
        raise DattobdError('%s has no dkms.conf: it is not a DKMS source tree.' % source_dir, hint=hint,
                           source_dir=source_dir)
    header = _read(paths, source_dir + '/dattobd.h')
    if header is None or 'DATTOBD_VERSION' not in header:
        raise DattobdError('%s is not a dattobd source tree (no dattobd.h defining DATTOBD_VERSION).' % source_dir,
                           hint=hint, source_dir=source_dir)
    m = re.search(r'^\s*PACKAGE_NAME\s*=\s*"?([^"\s]+)"?', conf, re.M)
    if not m or m.group(1) != NAME:
        raise DattobdError('%s/dkms.conf does not declare PACKAGE_NAME="dattobd".' % source_dir, hint=hint,
                           source_dir=source_dir)
    m = re.search(r'^\s*PACKAGE_VERSION\s*=\s*"?([^"\s]+)"?', conf, re.M)
    if not m or m.group(1) != version:
        raise DattobdError('%s/dkms.conf declares PACKAGE_VERSION %s, not %s.'
                           % (source_dir, m.group(1) if m else 'nothing', version), hint=hint, source_dir=source_dir)
    m = re.search(r'#define\s+DATTOBD_VERSION\s+"([^"]+)"', header)
    if m and m.group(1) != version:
        raise DattobdError('%s holds dattobd %s, not %s.' % (source_dir, m.group(1), version), hint=hint,
                           source_dir=source_dir)


class Facts(object):
    def __init__(self):
        self.kernel = None
        self.family = 'unknown'
        self.kernels = []
        self.dkms = []
        self.loaded = None
        self.trackers = []
        self.modprobe_conf = None
        self.modules_load_conf = None
        self.headers = {}
        self.dkms_status = None  # the text of `dkms status` (every module), None without dkms
        self.source_error = None
        self.tools_version = None


class Context(object):
    """What :func:`gather`/:func:`apply` need from the host: binaries, paths, timeouts."""

    def __init__(self, dkms='dkms', modprobe='modprobe', paths=None, timeout=60,
                 build_timeout=DEFAULT_BUILD_TIMEOUT, kernel=None):
        self.dkms = dkms
        self.modprobe = modprobe
        self.paths = paths or Paths()
        self.timeout = timeout
        self.build_timeout = build_timeout
        self.kernel = kernel

    def run(self, argv, timeout=None):
        return _runner.run_timed(list(argv), timeout=timeout or self.timeout)


def running_kernel():
    return os.uname()[2]


def gather(ctx, version=None, source_dir=None, kernels='running'):
    facts = Facts()
    paths = ctx.paths
    facts.kernel = validate_kernel(ctx.kernel or running_kernel())
    facts.family = os_family(paths)
    facts.kernels = installed_kernels(paths)
    if ctx.dkms:
        # every module's status: dattobd's entries, and the other snapshot drivers' for the conflict scan
        # (hygiene.conflicts), as the info module reads it: one call, one answer
        rc, out, err = ctx.run([ctx.dkms, 'status'])
        if rc != 0:
            raise DattobdError('"dkms status" failed (rc=%s): %s' % (rc, (err or out).strip()),
                               hint='Check that dkms works on this host.')
        facts.dkms = parse_dkms_status(out)
        facts.dkms_status = out
    facts.loaded = loaded_module(paths)
    if facts.loaded is not None:
        info = _procinfo.read(paths.p(_procinfo.PROC_PATH), timeout=ctx.timeout)
        facts.trackers = list(info.devices) if info.loaded else []
    facts.modprobe_conf = _read(paths, MODPROBE_CONF)
    facts.modules_load_conf = _read(paths, MODULES_LOAD_CONF)
    targets = [facts.kernel] if kernels == 'running' else sorted(set(facts.kernels) | {facts.kernel})
    for k in targets:
        facts.headers[k] = os.path.isdir(paths.p(paths.headers(k)))
    if version is not None:
        try:
            check_source(paths, source_dir or paths.source_dir(version), version)
        except DattobdError as exc:
            facts.source_error = exc
    tv = read_tools_record(paths)
    facts.tools_version = tv.strip() if tv else None
    return facts


def gather_conf(ctx):
    """(modprobe.d content, modules-load.d content), None for a missing file."""
    return _read(ctx.paths, MODPROBE_CONF), _read(ctx.paths, MODULES_LOAD_CONF)


def read_tools_record(paths=None):
    """The engine role's record of the tools it built from source (:data:`TOOLS_VERSION_FILE`), or None."""
    return _read(paths or Paths(), TOOLS_VERSION_FILE)


def tools_version(ctx, facts, dpkg_query=None, rpm=None):
    """Version of the dattobd tools: the role's record, else the package manager, else None."""
    return query_tools_version(ctx.run, facts.tools_version, dpkg_query, rpm)[0]


def query_tools_version(run, record=None, dpkg_query=None, rpm=None):
    """``(version or None, commands run)``: the one answer of the engine and info modules to "which dattobd tools".

    ``record``: the engine role's record of tools it built from source (:data:`TOOLS_VERSION_FILE`), which wins;
    else ``dattobd-utils`` as dpkg, then rpm, knows it (``run(argv) -> (rc, out, err)``; a query that fails, or
    raises :class:`DattobdError`, is skipped)."""
    if record and record.strip():
        return record.strip(), []
    ran = []
    for tool, argv in ((dpkg_query, ['-W', '-f=${Version}', 'dattobd-utils']),
                       (rpm, ['-q', '--qf', '%{VERSION}', 'dattobd-utils'])):
        if not tool:
            continue
        ran.append([tool] + argv)
        try:
            rc, out, dummy = run([tool] + argv)
        except DattobdError:
            continue
        if rc == 0 and out.strip() and 'not installed' not in out:
            return out.strip(), ran
    return None, ran
