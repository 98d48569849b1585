# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""DKMS, modprobe and module-parameter logic of the ``engine`` module.

The flow is *gather facts -> plan -> apply*:

* :func:`gather` reads the host: running kernel, DKMS status of ``dattobd``, the loaded module
  (``/sys/module/dattobd``), its trackers (``/proc/datto-info`` with a timeout), kernel headers,
  the persisted configuration files and the DKMS source tree.
* :func:`plan` is pure: facts + wanted state -> ordered :class:`Step` list, or a
  :class:`DattobdError` when the change is refused (trackers exist, headers missing, bad source).
  Nothing has been changed when it raises.
* :func:`apply` runs the steps (commands through :func:`runner.run_timed`, files written
  atomically) and turns every failure into a diagnosed :class:`DattobdError` (DKMS make.log tail,
  Secure Boot key rejection with the MOK steps, missing System.map, version mismatch).

Every path is taken relative to ``Paths.root`` so that tests can run against a temporary tree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex

from . import procinfo as _procinfo
from . import runner as _runner
from .errors import DattobdError, DriverTimeout
from .fileutil import atomic_write
from . import validation

NAME = 'dattobd'
MODPROBE_CONF = '/etc/modprobe.d/dattobd.conf'
MODULES_LOAD_CONF = '/etc/modules-load.d/dattobd.conf'
SYS_MODULE = '/sys/module/dattobd'
DKMS_TREE = '/var/lib/dkms'
TOOLS_VERSION_FILE = '/var/lib/snapfleet/dattobd/tools.version'
DEFAULT_BUILD_TIMEOUT = 3600
MAKE_LOG_LINES = 40

# Module parameters (src/module_control.c). ``debug`` is writable at runtime (0644);
# the others only take effect when the module is loaded.
PARAMETERS = {
    'max_snap_devices': (1, 255),
    'cow_max_memory_default': (0, 2 ** 64 - 1),
    'cow_fallocate_percentage_default': (1, 100),
    'debug': (0, 1),
}
RUNTIME_PARAMETERS = ('debug',)
# Visible in /sys/module/dattobd/parameters (the others have permission 0).
SYSFS_PARAMETERS = ('max_snap_devices', 'debug')
DRIVER_DEFAULTS = {
    'max_snap_devices': 24,
    'cow_max_memory_default': 314572800,
    'cow_fallocate_percentage_default': 10,
    'debug': 0,
}

HEADER = '# Managed by snapfleet.dattobd (engine). Local changes will be overwritten.\n'

_VERSION_RE = re.compile(r'^[0-9]+(\.[0-9]+){1,3}([~+-][A-Za-z0-9.]+)?$')
_KERNEL_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+~-]*$')

SECURE_BOOT_MARKERS = ('Required key not available', 'Key was rejected by service')
SYSTEM_MAP_MARKER = 'System.map file not found'


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


def validate_parameters(params):
    """Return ``{name: int}`` for the parameters that are set (``None`` values dropped)."""
    out = {}
    for name, value in sorted((params or {}).items()):
        if value is None:
            continue
        if name not in PARAMETERS:
            raise DattobdError('Unknown dattobd module parameter %r.' % (name,),
                               hint='Known parameters: %s.' % ', '.join(sorted(PARAMETERS)))
        ivalue = validation.to_int(int(value) if isinstance(value, bool) else value, strip=True)
        if ivalue is None:
            raise DattobdError('Module parameter %s=%r is not an integer.' % (name, value))
        low, high = PARAMETERS[name]
        if not low <= ivalue <= high:
            raise DattobdError('Module parameter %s=%s is out of range %d..%d.' % (name, ivalue, low, high),
                               hint='dattobd clamps or rejects values outside that range; pick one inside it.')
        out[name] = ivalue
    return out


def render_modprobe_conf(params):
    """Content of /etc/modprobe.d/dattobd.conf for the wanted parameters."""
    text = HEADER
    if params:
        text += 'options %s %s\n' % (NAME, ' '.join('%s=%d' % (k, params[k]) for k in sorted(params)))
    return text


def render_modules_load_conf():
    return HEADER + '%s\n' % NAME


def parse_modprobe_conf(text):
    """Parameters set by ``options dattobd ...`` lines (later lines win), or {}."""
    out = {}
    for line in (text or '').splitlines():
        words = line.split('#', 1)[0].split()
        if len(words) >= 2 and words[0] == 'options' and words[1] == NAME:
            for word in words[2:]:
                if '=' in word:
                    key, value = word.split('=', 1)
                    number = validation.to_int(value)
                    out[key] = value if number is None else number
    return out


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
        rc, out, err = ctx.run([ctx.dkms, 'status', '-m', NAME])
        if rc != 0:
            raise DattobdError('"dkms status -m dattobd" failed (rc=%s): %s' % (rc, (err or out).strip()),
                               hint='Check that dkms works on this host.')
        facts.dkms = parse_dkms_status(out)
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
    tv = _read(paths, TOOLS_VERSION_FILE)
    facts.tools_version = tv.strip() if tv else None
    return facts


def gather_conf(ctx):
    """(modprobe.d content, modules-load.d content), None for a missing file."""
    return _read(ctx.paths, MODPROBE_CONF), _read(ctx.paths, MODULES_LOAD_CONF)


def tools_version(ctx, facts, dpkg_query=None, rpm=None):
    """Version of the dattobd tools: the role's record, else the package manager, else None."""
    if facts.tools_version:
        return facts.tools_version
    if dpkg_query:
        rc, out, err = ctx.run([dpkg_query, '-W', '-f=${Version}', 'dattobd-utils'])
        if rc == 0 and out.strip():
            return out.strip()
    if rpm:
        rc, out, err = ctx.run([rpm, '-q', '--qf', '%{VERSION}', 'dattobd-utils'])
        if rc == 0 and out.strip() and 'not installed' not in out:
            return out.strip()
    return None


# --- plan ----------------------------------------------------------------------------------

class Step(object):
    """One planned change: a command (argv) or a file operation."""

    def __init__(self, kind, argv=None, path=None, content=None, text=None, kernel=None, timeout=None):
        self.kind = kind  # 'cmd', 'write', 'remove', 'sysfs'
        self.argv = argv
        self.path = path
        self.content = content
        self.text = text
        self.kernel = kernel
        self.timeout = timeout

    def describe(self):
        if self.kind == 'cmd':
            return shlex.join(self.argv)
        if self.kind == 'write':
            return 'write %s' % self.path
        if self.kind == 'sysfs':
            return 'write %s to %s' % (self.content.strip(), self.path)
        return 'remove %s' % self.path

    def __repr__(self):
        return '<Step %s>' % self.describe()


def tracker_summary(trackers):
    return ', '.join('minor %s on %s (%s)' % (t.minor, _procinfo.display_text(t.block_device), t.state_name)
                     for t in trackers)


def _refuse_unload(trackers, why):
    raise DattobdError(
        'Refusing to %s: %d dattobd tracker(s) exist: %s. Unloading dattobd destroys every tracker and '
        'deletes the COW files of active ones, so the next backup of each volume is a full one.'
        % (why, len(trackers), tracker_summary(trackers)),
        hint='Destroy the trackers first (snapfleet.dattobd.snapshot state=absent), schedule the change for '
             'a reboot (reload=false: install now, load at next boot), or set force=true to accept the loss.',
        trackers=[t.minor for t in trackers])


def reload_reasons(facts, version, params):
    """Why the loaded module must be reloaded to reach the wanted state (list of sentences)."""
    loaded = facts.loaded
    if loaded is None:
        return []
    reasons = []
    if version and loaded['version'] and loaded['version'] != version:
        reasons.append('loaded version %s differs from wanted %s' % (loaded['version'], version))
    persisted = parse_modprobe_conf(facts.modprobe_conf)
    for name in sorted(PARAMETERS):
        if name in RUNTIME_PARAMETERS:
            continue
        want = params.get(name, DRIVER_DEFAULTS[name])
        if name in loaded['parameters']:
            have = loaded['parameters'][name]
        else:
            # Not visible in sysfs: the persisted configuration is the best evidence of the load.
            have = persisted.get(name, DRIVER_DEFAULTS[name])
        if have != want:
            reasons.append('load-time parameter %s is %s, wanted %s' % (name, have, want))
    return reasons


def plan(ctx, facts, state='present', version=None, params=None, kernels='running', load=True,
         persist=True, reload=True, force=False, source_dir=None):
    """Return ``(steps, info)``; raise :class:`DattobdError` when refused (nothing changed then)."""
    paths = ctx.paths
    params = params or {}
    steps = []
    info = {'reload_required': False, 'reload_reasons': [], 'warnings': [], 'kernels': {}}
    if state == 'present':
        if version is None:
            raise DattobdError('state=present needs a version.', hint='Set version, e.g. 0.12.1.')
        targets = [facts.kernel] if kernels == 'running' else sorted(facts.headers)
        todo = []
        for k in targets:
            st = dkms_state(facts.dkms, version, k)
            info['kernels'][k] = st or 'absent'
            if st == 'installed':
                continue
            if not facts.headers.get(k):
                msg = 'Kernel headers for %s are missing (%s does not exist).' % (k, paths.headers(k))
                hint = 'Install %s and run again.' % headers_package(facts.family, k)
                if k == facts.kernel:
                    raise DattobdError(msg, hint=hint, kernel=k)
                info['warnings'].append('%s Skipping that kernel. %s' % (msg, hint))
                continue
            todo.append((k, st))
        if todo and not any(e['version'] == version for e in facts.dkms):
            if facts.source_error is not None:
                raise facts.source_error
            src = source_dir or paths.source_dir(version)
            if src != paths.source_dir(version):
                steps.append(Step('cmd', [ctx.dkms, 'add', src]))
            else:
                steps.append(Step('cmd', [ctx.dkms, 'add', '-m', NAME, '-v', version]))
        for k, st in todo:
            if st != 'built':
                steps.append(Step('cmd', [ctx.dkms, 'build', '-m', NAME, '-v', version, '-k', k], kernel=k,
                                  timeout=ctx.build_timeout))
        others = sorted({e['version'] for e in facts.dkms if e['version'] != version})
        if todo:
            for old in others:
                steps.append(Step('cmd', [ctx.dkms, 'remove', '-m', NAME, '-v', old, '--all']))
        for k, st in todo:
            steps.append(Step('cmd', [ctx.dkms, 'install', '-m', NAME, '-v', version, '-k', k], kernel=k,
                              timeout=ctx.build_timeout))
        # configuration files
        if persist:
            want = render_modprobe_conf(params)
            if facts.modprobe_conf != want:
                steps.append(Step('write', path=MODPROBE_CONF, content=want))
            want = render_modules_load_conf()
            if facts.modules_load_conf != want:
                steps.append(Step('write', path=MODULES_LOAD_CONF, content=want))
        load_argv = [ctx.modprobe, NAME] + ['%s=%d' % (k, params[k]) for k in sorted(params)]
        if facts.loaded is None:
            if load:
                steps.append(Step('cmd', load_argv))
        else:
            reasons = reload_reasons(facts, version, params)
            info['reload_reasons'] = reasons
            if reasons:
                if not reload:
                    info['reload_required'] = True
                    info['warnings'].append('dattobd must be reloaded to apply: %s. Reload it (or reboot) '
                                            'when no tracker is in use.' % '; '.join(reasons))
                else:
                    if facts.trackers and not force:
                        _refuse_unload(facts.trackers, 'reload dattobd (%s)' % '; '.join(reasons))
                    steps.append(Step('cmd', [ctx.modprobe, '-r', NAME]))
                    steps.append(Step('cmd', load_argv))
            elif 'debug' in params and facts.loaded['parameters'].get('debug') != params['debug']:
                steps.append(Step('sysfs', path=SYS_MODULE + '/parameters/debug', content='%d\n' % params['debug']))
        return steps, info
    # state == absent
    wanted_versions = sorted({e['version'] for e in facts.dkms if version is None or e['version'] == version})
    remove_all = kernels == 'all'
    remaining = [e for e in facts.dkms
                 if not (e['version'] in wanted_versions and (remove_all or e['kernel'] in (facts.kernel, None)))]
    if facts.loaded is not None and (version is None or facts.loaded['version'] in (version, None)):
        if facts.trackers and not force:
            _refuse_unload(facts.trackers, 'unload dattobd')
        steps.append(Step('cmd', [ctx.modprobe, '-r', NAME]))
    for v in wanted_versions:
        present_for = [e for e in facts.dkms if e['version'] == v]
        if remove_all or all(e['kernel'] in (facts.kernel, None) for e in present_for):
            steps.append(Step('cmd', [ctx.dkms, 'remove', '-m', NAME, '-v', v, '--all']))
        elif any(e['kernel'] == facts.kernel for e in present_for):
            steps.append(Step('cmd', [ctx.dkms, 'remove', '-m', NAME, '-v', v, '-k', facts.kernel]))
    if not remaining:
        for path, have in ((MODPROBE_CONF, facts.modprobe_conf), (MODULES_LOAD_CONF, facts.modules_load_conf)):
            if have is not None:
                steps.append(Step('remove', path=path))
    return steps, info


# --- apply ---------------------------------------------------------------------------------

def make_log_tail(paths, version, lines=MAKE_LOG_LINES):
    text = _read(paths, paths.make_log(version))
    if text is None:
        return []
    return text.splitlines()[-lines:]


def secure_boot_error(output, version):
    return DattobdError(
        'The kernel rejected the dattobd %s module: %s. Secure Boot is enforcing and the module is not signed '
        'with an enrolled key.' % (version or '', output.strip().splitlines()[-1] if output.strip() else ''),
        hint='Sign with the DKMS key and enrol it: "mokutil --sb-state" (confirm), "mokutil --import '
             '/var/lib/dkms/mok.pub" (dkms >= 3 signs modules with that key; older dkms: create a key and set '
             'mok_signing_key/mok_certificate in /etc/dkms/framework.conf, then rebuild), reboot, enrol the key in '
             'MokManager at the console with the password you chose, then run this again. Alternatively disable '
             'Secure Boot in the firmware.', secure_boot=True)


def diagnose_build(ctx, step, rc, out, err, version, family):
    text = '%s\n%s' % (out or '', err or '')
    tail = make_log_tail(ctx.paths, version)
    kernel = step.kernel
    if SYSTEM_MAP_MARKER in text or any(SYSTEM_MAP_MARKER in line for line in tail):
        return DattobdError(
            'DKMS could not configure dattobd %s for kernel %s: no System.map for that kernel (dattobd needs '
            'kernel symbol addresses; it can only fall back to /proc/kallsyms for the running kernel).'
            % (version, kernel),
            hint='Debian ships a dummy /boot/System.map: install linux-image-%s-dbg (it holds the real one under '
                 '/usr/lib/debug/boot), or reboot into %s and build then (the engine role can install a boot-time '
                 '"dkms autoinstall" unit for this).' % (kernel, kernel),
            rc=rc, make_log_tail=tail, kernel=kernel, cmd=step.argv)
    if 'headers' in text.lower() and ('cannot be found' in text or 'not found' in text):
        return DattobdError('DKMS cannot find the kernel headers for %s.' % kernel,
                            hint='Install %s and run again.' % headers_package(family, kernel),
                            rc=rc, make_log_tail=tail, kernel=kernel, cmd=step.argv)
    return DattobdError(
        'DKMS %s of dattobd %s for kernel %s failed (rc=%s): %s'
        % (step.argv[1], version, kernel, rc, (err or out or '').strip()[-500:]),
        hint='See make_log_tail (%s). Kernels newer than the dattobd release are a common cause: try a newer '
             'dattobd version.' % ctx.paths.make_log(version),
        rc=rc, make_log_tail=tail, kernel=kernel, cmd=step.argv, stdout=out, stderr=err)


def diagnose_modprobe(step, rc, out, err, version, facts):
    text = '%s\n%s' % (out or '', err or '')
    if any(m in text for m in SECURE_BOOT_MARKERS):
        return secure_boot_error(text, version)
    if '-r' in step.argv:
        return DattobdError('Unloading dattobd failed (rc=%s): %s' % (rc, text.strip()),
                            hint='A snapshot device (/dev/datto*) is probably still open or mounted; '
                                 'close it and retry, or reboot.', rc=rc, cmd=step.argv)
    if 'Exec format error' in text or 'Invalid module format' in text:
        return DattobdError('The dattobd module does not match the running kernel %s: %s' % (facts.kernel, text.strip()),
                            hint='Rebuild it for this kernel (dkms build/install -k %s).' % facts.kernel,
                            rc=rc, cmd=step.argv)
    if 'not found' in text:
        return DattobdError('modprobe cannot find the dattobd module for kernel %s: %s' % (facts.kernel, text.strip()),
                            hint='Check "dkms status -m dattobd"; the module must be installed for the running kernel.',
                            rc=rc, cmd=step.argv)
    return DattobdError('Loading dattobd failed (rc=%s): %s' % (rc, text.strip()),
                        hint='Check "dmesg | grep datto"; an "unresolved symbol" message means this kernel lacks a '
                             'symbol the module hooks (kprobes/kallsyms/ftrace) or the build used a wrong System.map.',
                        rc=rc, cmd=step.argv)


def _make_log(argv):
    """The make.log a ``dkms build -m NAME -v VERSION`` writes (its path for the hint of a timeout)."""
    version = argv[argv.index('-v') + 1] if '-v' in argv[:-1] else '<version>'
    return '/var/lib/dkms/%s/%s/build/make.log' % (NAME, version)


def apply(ctx, facts, steps, version=None):
    """Run ``steps``; return the list of action strings. Raise a diagnosed error on failure."""
    actions = []
    for step in steps:
        actions.append(step.describe())
        if step.kind == 'cmd':
            try:
                rc, out, err = ctx.run(step.argv, timeout=step.timeout)
            except DriverTimeout:
                if step.argv[0] == ctx.dkms and step.argv[1] in ('build', 'install'):
                    raise DattobdError(
                        '%s did not finish within %s seconds and was stopped.' % (shlex.join(step.argv), step.timeout),
                        hint='A first DKMS build can take longer than that on a slow or emulated host (its '
                             'feature tests compile one small module each). Raise build_timeout (role: '
                             'dattobd_engine_build_timeout) and run again; "dkms status" shows how far it got, '
                             'and %s shows what it was doing.'
                             % _make_log(step.argv), cmd=step.argv, timeout=step.timeout, kernel=step.kernel)
                raise
            if rc != 0:
                if step.argv[0] == ctx.modprobe:
                    raise diagnose_modprobe(step, rc, out, err, version, facts)
                if step.argv[1] in ('build', 'install'):
                    raise diagnose_build(ctx, step, rc, out, err, version, facts.family)
                raise DattobdError('%s failed (rc=%s): %s' % (shlex.join(step.argv), rc, (err or out).strip()),
                                   rc=rc, cmd=step.argv)
        else:
            path = ctx.paths.p(step.path)
            try:
                if step.kind == 'write':
                    atomic_write(path, step.content.encode('utf-8'), mode=0o644, dir_mode=0o755)
                elif step.kind == 'sysfs':
                    with open(path, 'w') as fh:
                        fh.write(step.content)
                elif os.path.exists(path):
                    os.unlink(path)
            except (IOError, OSError) as exc:
                raise DattobdError('Cannot %s: %s.' % (step.describe(), exc.strerror or exc), path=step.path)
    return actions


def verify(ctx, version):
    """After loading: the loaded version must be the wanted one and /proc/datto-info readable."""
    loaded = loaded_module(ctx.paths)
    if loaded is None:
        raise DattobdError('dattobd is not loaded after modprobe.', hint='Check "dmesg | grep datto".')
    if version and loaded['version'] and loaded['version'] != version:
        raise DattobdError('Loaded dattobd is %s but %s is installed.' % (loaded['version'], version),
                           hint='An older module is still loaded (unload failed or was skipped) or modprobe '
                                'picked another dattobd.ko (check "modinfo -n dattobd"). Reload it or reboot.',
                           loaded_version=loaded['version'], installed_version=version)
    info = _procinfo.read(ctx.paths.p(_procinfo.PROC_PATH), timeout=ctx.timeout)
    if not info.loaded:
        raise DattobdError('/proc/datto-info is missing although dattobd is loaded.',
                           hint='Check "dmesg | grep datto" for an initialisation error.')
    return loaded
