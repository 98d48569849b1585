# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``engine`` module's work: its argument spec and runner (:func:`module_runner`), on top of the DKMS
area (``dkms.py``), the kernel gate (``kernels.py``) and the conflict scan (``hygiene.py``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

from . import dkms as _dkms
from . import hygiene as _hygiene
from . import kernels as _kernels
from .errors import DattobdError, fail_module


def _tools_version(module, ctx, facts):
    try:
        return _dkms.tools_version(ctx, facts, dpkg_query=module.get_bin_path('dpkg-query', required=False),
                                   rpm=module.get_bin_path('rpm', required=False))
    except DattobdError:
        return None


def _dbdctl(module):
    path = module.params.get('dbdctl_path')
    if path:
        return path if os.access(path, os.X_OK) else None
    return module.get_bin_path('dbdctl', required=False, opt_dirs=['/usr/bin', '/usr/local/bin'])


def module_runner(module, ctx=None):
    """The ``engine`` module's work on its validated ``module.params`` (``ctx``: the DKMS context; tests give one)."""
    p = module.params
    result = dict(changed=False, actions=[], reload_required=False, reload_reasons=[], trackers=0)
    version = _dkms.validate_version(p['version'])
    params = _dkms.validate_parameters(p['parameters'] or {})
    if p['build_timeout'] <= 0 or p['timeout'] <= 0:
        raise DattobdError('timeout and build_timeout must be positive numbers of seconds.')
    if ctx is None:
        ctx = _context(module, p)
    source_dir = p['source_dir']
    if source_dir is not None and not os.path.isabs(source_dir):
        raise DattobdError('source_dir must be an absolute path, got %r.' % source_dir)
    facts = _dkms.gather(ctx, version=version if p['state'] == 'present' else None,
                         source_dir=source_dir, kernels=p['kernels'])
    if p['state'] == 'present' and not p['allow_conflicts']:  # the info module's view: DKMS-only installs too
        _hygiene.refuse_conflicts(_hygiene.conflicts(_gate_host(module, ctx), facts.dkms_status))
    result['kernel'] = facts.kernel
    result['trackers'] = len(facts.trackers)
    steps, info = _dkms.plan(ctx, facts, state=p['state'], version=version, params=params,
                             kernels=p['kernels'], load=p['load'], persist=p['persist'], reload=p['reload'],
                             force=p['force'], source_dir=source_dir)
    if p['state'] == 'present':
        result['kernels'] = info['kernels']
    result['reload_required'] = info['reload_required']
    result['reload_reasons'] = info['reload_reasons']
    for w in info['warnings']:
        module.warn(w)
    before = dict(dkms=[dict(e) for e in facts.dkms],
                  loaded=facts.loaded['version'] if facts.loaded else None,
                  modprobe_conf=facts.modprobe_conf, modules_load_conf=facts.modules_load_conf)
    if facts.trackers and p['force'] and any(s.kind == 'cmd' and s.argv[:2] == [ctx.modprobe, '-r'] for s in steps):
        module.warn('force=true: unloading dattobd destroys %d tracker(s) (%s) and deletes their COW files.'
                    % (len(facts.trackers), _dkms.tracker_summary(facts.trackers)))
    result['changed'] = bool(steps)
    failures = {}
    if module.check_mode:
        result['actions'] = [s.describe() for s in steps]
        after = _planned_after(before, steps)
    else:
        try:
            result['actions'], failures = _apply(ctx, facts, steps, version, p['kernels'])
        except DattobdError as exc:
            fail_module(module, exc, defaults=dict(actions=[s.describe() for s in steps]), kernel=facts.kernel)
        after = _observed_after(ctx, facts, steps, version, p['state'] == 'present' and not result['reload_required'])
    result['versions'] = dict(loaded=after['loaded'], dkms=after['dkms'], tools=_tools_version(module, ctx, facts),
                              dbdctl=_dbdctl(module))
    if p['state'] == 'present':
        _gate(module, ctx, facts, version, result, failures)
    if module._diff:
        result['diff'] = dict(before=before, after=after)
    return result


def _context(module, p):
    """The DKMS context of a real host: dkms (needed to install) and modprobe (always) from the PATH."""
    dkms_bin = module.get_bin_path('dkms', required=False)
    modprobe = module.get_bin_path('modprobe', required=False, opt_dirs=['/sbin', '/usr/sbin'])
    if not modprobe:
        raise DattobdError('modprobe was not found.', hint='Install kmod.')
    if not dkms_bin and p['state'] == 'present':
        raise DattobdError('dkms was not found.',
                           hint='Install the dkms package (EL: from EPEL; SLE 15: PackageHub) and run again.')
    return _dkms.Context(dkms=dkms_bin, modprobe=modprobe, timeout=p['timeout'], build_timeout=p['build_timeout'])


def _planned_after(before, steps):
    """Check mode's ``after`` of the diff: ``before`` with the planned writes and removals of the two files."""
    after = dict(before)
    for s in steps:
        if s.kind in ('write', 'remove'):
            after['modprobe_conf' if s.path == _dkms.MODPROBE_CONF else 'modules_load_conf'] = (
                s.content if s.kind == 'write' else None)
    return after


def _observed_after(ctx, facts, steps, version, verify):
    """A real run's ``after`` of the diff, read back from the host (the loaded module verified when ``verify``)."""
    loaded = _dkms.loaded_module(ctx.paths)
    if verify and loaded is not None:
        loaded = _dkms.verify(ctx, version)
    dkms_after = facts.dkms
    if ctx.dkms and steps:
        rc, out, err = ctx.run([ctx.dkms, 'status'])
        if rc == 0:
            dkms_after = _dkms.parse_dkms_status(out)
    conf = _dkms.gather_conf(ctx)
    return dict(dkms=dkms_after, loaded=loaded['version'] if loaded else None,
                modprobe_conf=conf[0], modules_load_conf=conf[1])


def _apply(ctx, facts, steps, version, kernels):
    """Run the steps; with kernels=all a failed build for a kernel that is not running is recorded
    (returned as ``{kernel: error}``) instead of failing: the kernel gate reports it."""
    if kernels != 'all':
        return _dkms.apply(ctx, facts, steps, version=version), {}
    actions = []
    failures = {}
    for step in steps:  # in the planned order; a failed kernel's later steps are skipped
        if step.kernel in failures:
            continue
        try:
            actions += _dkms.apply(ctx, facts, [step], version=version)
        except DattobdError as exc:
            if step.kernel in (None, facts.kernel):
                raise
            actions.append('(failed for kernel %s: %s)' % (step.kernel, exc.msg))
            failures[step.kernel] = exc
    return actions, failures


def _bin(module):
    return lambda name: module.get_bin_path(name, required=False, opt_dirs=['/sbin', '/usr/sbin'])


def _gate_host(module, ctx):
    return _kernels.Host(ctx.run, _bin(module), root=ctx.paths.root, timeout=ctx.timeout)


def _gate(module, ctx, facts, version, result, failures):
    """Report every installed kernel and apply the kernel gate (never a reboot)."""
    bin = _bin(module)
    host = _gate_host(module, ctx)
    gate = _kernels.gather(host, facts.family, facts.kernel, dkms_entries=result['versions']['dkms'], version=version)
    for entry in gate['kernels']:
        exc = failures.get(entry['release'])
        if exc is not None:
            entry['reason'] = 'build failed: %s' % exc.msg
            entry['build_log_tail'] = exc.details.get('make_log_tail') or []
    try:
        argv, warnings = _kernels.plan_action(host, gate, module.params['kernel_gate'], facts.family)
        if argv is not None:
            path = bin(argv[0])
            if not path:
                raise DattobdError('kernel_gate=%s needs %s, which is not installed.'
                                   % (module.params['kernel_gate'], argv[0]))
            argv = [path] + argv[1:]
    except DattobdError as exc:
        fail_module(module, exc, defaults=dict(actions=result['actions'], kernel_gate=gate))
    for w in warnings:
        module.warn(w)
    gate['action'] = None
    if argv is not None:
        gate['action'] = shlex.join(argv)
        result['actions'].append(gate['action'])
        result['changed'] = True
        if not module.check_mode:
            rc, out, err = ctx.run(argv)
            if rc != 0:
                fail_module(module, DattobdError('%s failed (rc=%s): %s' % (shlex.join(argv), rc, (err or out).strip()),
                                                 cmd=argv, rc=rc),
                            defaults=dict(actions=result['actions'], kernel_gate=gate))
    result['kernel_gate'] = gate


ARGUMENT_SPEC = dict(
    state=dict(type='str', default='present', choices=['present', 'absent']),
    version=dict(type='str'),
    source_dir=dict(type='path'),
    kernels=dict(type='str', default='running', choices=['running', 'all']),
    parameters=dict(type='dict', default={}, options=dict(
        max_snap_devices=dict(type='int'),
        cow_max_memory_default=dict(type='int'),
        cow_fallocate_percentage_default=dict(type='int'),
        debug=dict(type='int', choices=[0, 1]),
    )),
    load=dict(type='bool', default=True),
    persist=dict(type='bool', default=True),
    reload=dict(type='bool', default=True),
    force=dict(type='bool', default=False),
    kernel_gate=dict(type='str', default='report', choices=['report', 'hold', 'default']),
    allow_conflicts=dict(type='bool', default=False),
    build_timeout=dict(type='int', default=3600),
    timeout=dict(type='int', default=60),
    dbdctl_path=dict(type='path'),
)
MODULE_KWARGS = dict(required_if=[('state', 'present', ['version'])], supports_check_mode=True)
UNEXPECTED = dict(msg='Unexpected error while managing the dattobd engine: %s.', actions=[],
                  hint='Please report this to the snapfleet.dattobd maintainers with the module arguments.')
