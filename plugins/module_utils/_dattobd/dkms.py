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
import shlex

from . import procinfo as _procinfo
from . import runner as _runner
from .constants import MAX_ULONG
from .errors import DattobdError, DriverTimeout
from .fileutil import atomic_write
from . import validation
from .dkms_facts import (  # noqa: F401 pylint: disable=unused-import
    SYSFS_PARAMETERS, Context, DEFAULT_BUILD_TIMEOUT, DKMS_TREE, Facts, MODPROBE_CONF, MODULES_LOAD_CONF, NAME, Paths,
    SYS_MODULE, TOOLS_VERSION_FILE, _KERNEL_RE, _VERSION_RE, _read, check_source, dkms_state, gather,
    gather_conf, headers_package, installed_kernels, loaded_module, os_family, parse_dkms_status, running_kernel, tools_version,
    validate_kernel, validate_version)

MAKE_LOG_LINES = 40

# Module parameters (src/module_control.c). ``debug`` is writable at runtime (0644);
# the others only take effect when the module is loaded.
PARAMETERS = {
    'max_snap_devices': (1, 255),
    'cow_max_memory_default': (0, MAX_ULONG),
    'cow_fallocate_percentage_default': (1, 100),
    'debug': (0, 1),
}
RUNTIME_PARAMETERS = ('debug',)
DRIVER_DEFAULTS = {
    'max_snap_devices': 24,
    'cow_max_memory_default': 314572800,
    'cow_fallocate_percentage_default': 10,
    'debug': 0,
}

HEADER = '# Managed by snapfleet.dattobd (engine). Local changes will be overwritten.\n'


SECURE_BOOT_MARKERS = ('Required key not available', 'Key was rejected by service')
SYSTEM_MAP_MARKER = 'System.map file not found'


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
    """Return ``(steps, info)``; raise :class:`DattobdError` when refused (nothing changed then).

    Parameters: one per option of the ``engine`` module (hence eleven).
    """
    params = params or {}
    info = {'reload_required': False, 'reload_reasons': [], 'warnings': [], 'kernels': {}}
    if state != 'present':
        return _plan_absent(ctx, facts, version, kernels, force), info
    if version is None:
        raise DattobdError('state=present needs a version.', hint='Set version, e.g. 0.12.1.')
    steps = _build_steps(ctx, facts, version, kernels, source_dir, info)
    if persist:
        for path, have, want in ((MODPROBE_CONF, facts.modprobe_conf, render_modprobe_conf(params)),
                                 (MODULES_LOAD_CONF, facts.modules_load_conf, render_modules_load_conf())):
            if have != want:
                steps.append(Step('write', path=path, content=want))
    steps += _load_steps(ctx, facts, version, params, load, reload, force, info)
    return steps, info


def _build_steps(ctx, facts, version, kernels, source_dir, info):
    """DKMS add, build, removal of other versions and install for each target kernel that lacks ``version``
    (``info['kernels']``: each target's state before; a kernel without headers is refused when it runs, else
    skipped with a warning)."""
    paths = ctx.paths
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
    steps = []
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
    if todo:
        for old in sorted({e['version'] for e in facts.dkms if e['version'] != version}):
            steps.append(Step('cmd', [ctx.dkms, 'remove', '-m', NAME, '-v', old, '--all']))
    for k, st in todo:
        steps.append(Step('cmd', [ctx.dkms, 'install', '-m', NAME, '-v', version, '-k', k], kernel=k,
                          timeout=ctx.build_timeout))
    return steps


def _load_steps(ctx, facts, version, params, load, reload, force, info):
    """Load the module, or reload it when its version or parameters differ (refused over live trackers unless
    ``force``; only reported with ``reload`` false), or set ``debug`` through sysfs."""
    load_argv = [ctx.modprobe, NAME] + ['%s=%d' % (k, params[k]) for k in sorted(params)]
    if facts.loaded is None:
        return [Step('cmd', load_argv)] if load else []
    reasons = reload_reasons(facts, version, params)
    info['reload_reasons'] = reasons
    if reasons:
        if not reload:
            info['reload_required'] = True
            info['warnings'].append('dattobd must be reloaded to apply: %s. Reload it (or reboot) '
                                    'when no tracker is in use.' % '; '.join(reasons))
            return []
        if facts.trackers and not force:
            _refuse_unload(facts.trackers, 'reload dattobd (%s)' % '; '.join(reasons))
        return [Step('cmd', [ctx.modprobe, '-r', NAME]), Step('cmd', load_argv)]
    if 'debug' in params and facts.loaded['parameters'].get('debug') != params['debug']:
        return [Step('sysfs', path=SYS_MODULE + '/parameters/debug', content='%d\n' % params['debug'])]
    return []


def _plan_absent(ctx, facts, version, kernels, force):
    """The steps of ``state=absent``: unload (refused over live trackers unless ``force``), remove the DKMS builds
    of ``version`` (every one when None) for the running kernel or ``kernels='all'``, then the configuration files
    once nothing remains."""
    steps = []
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
    return steps


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
                 '/usr/lib/debug/boot, or /usr/lib/debug/lib/modules/<kernel> in newer packages: the engine role\'s '
                 'PRE_BUILD step finds both), or reboot into %s and build then (the engine role can install a boot-time '
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
