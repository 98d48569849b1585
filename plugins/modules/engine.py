#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: engine
short_description: Build, install, load and remove the dattobd kernel module with DKMS
version_added: 0.1.0
author: snapfleet maintainers (@snapfleet)
description:
  - Ensures that the dattobd kernel module of a given version is built and installed with DKMS for the
    running kernel (or for every installed kernel), loaded with the wanted module parameters, and that
    those parameters and the boot-time autoload are persisted in C(/etc/modprobe.d/dattobd.conf) and
    C(/etc/modules-load.d/dattobd.conf).
  - The DKMS source tree must already be on the host, normally C(/usr/src/dattobd-<version>) with a
    C(dkms.conf) (the vendor C(dattobd-dkms)/C(dkms-dattobd) package or the
    P(snapfleet.dattobd.engine#role) role installs it).
  - Unloading dattobd destroys every tracker and deletes the COW files of active ones, so the next
    backup of each tracked volume is a full one. The module therefore refuses to unload, remove, or
    reload the driver (new version or changed load-time parameters) while trackers exist, unless
    O(force=true).
  - On failure it says why and what to do - missing kernel headers, the tail of the DKMS C(make.log),
    a missing System.map (Debian kernels not yet running), Secure Boot rejecting the unsigned module
    (with the MOK enrolment steps), or a loaded module whose version differs from the installed one.
extends_documentation_fragment:
  - snapfleet.dattobd.attributes
  - snapfleet.dattobd.attributes.PLATFORM
  - snapfleet.dattobd.attributes.ACTION_GROUP
  - snapfleet.dattobd.driver
attributes:
  check_mode:
    support: full
    details:
      - Reports every command and file change that would be made, in RV(actions).
  diff_mode:
    support: full
    details:
      - Shows the DKMS status, the loaded version and the configuration files before and after.
options:
  state:
    description:
      - V(present) builds, installs and loads the module; V(absent) unloads it, removes it from DKMS and
        removes the configuration files written by this module.
    type: str
    choices: [present, absent]
    default: present
  version:
    description:
      - The dattobd version, as in C(dattobd/<version>) for DKMS (for example V(0.12.1)).
      - Required with O(state=present). With O(state=absent), only that version is removed; without it,
        every dattobd version known to DKMS is.
    type: str
  source_dir:
    description:
      - The DKMS source tree. Defaults to C(/usr/src/dattobd-<version>).
      - It must contain a C(dkms.conf) declaring C(PACKAGE_NAME="dattobd") and the same C(PACKAGE_VERSION),
        and C(dattobd.h) of that version; otherwise the module fails naming the cause.
    type: path
  kernels:
    description:
      - V(running) handles the running kernel only; V(all) every kernel under C(/lib/modules) with headers
        (kernels without headers are skipped with a warning; the running one must have them).
    type: str
    choices: [running, all]
    default: running
  parameters:
    description:
      - Module parameters to load dattobd with and to persist in C(/etc/modprobe.d/dattobd.conf).
        Unset parameters take the driver defaults.
      - Only O(parameters.debug) can change without reloading the driver.
    type: dict
    default: {}
    suboptions:
      max_snap_devices:
        description: Number of minors (trackers) the driver offers, 1 to 255 (driver default 24).
        type: int
      cow_max_memory_default:
        description: Default index cache size per tracker in bytes (driver default 314572800).
        type: int
      cow_fallocate_percentage_default:
        description: Default COW preallocation in percent of the tracked device, 1 to 100 (driver default 10).
        type: int
      debug:
        description: Verbose driver logging (V(0) or V(1)); applied at runtime when already loaded.
        type: int
        choices: [0, 1]
  load:
    description: Load the module now when it is not loaded.
    type: bool
    default: true
  persist:
    description:
      - Write C(/etc/modprobe.d/dattobd.conf) (parameters) and C(/etc/modules-load.d/dattobd.conf)
        (load at boot).
      - The initramfs also needs the parameters when dattobd is loaded there; the
        P(snapfleet.dattobd.initramfs#role) role regenerates it.
    type: bool
    default: true
  reload:
    description:
      - When the loaded module is another version or runs with other load-time parameters, unload and load
        it again (refused while trackers exist unless O(force=true)).
      - With V(false), the new module is installed and persisted, RV(reload_required) is set and a warning
        says what the next load (or reboot) applies.
    type: bool
    default: true
  force:
    description:
      - Unload, reload or remove dattobd even though trackers exist. Every tracker is destroyed and the COW
        files of active ones are deleted; the next backup of each volume is a full one.
    type: bool
    default: false
  kernel_gate:
    description:
      - What to do when an installed kernel has no working dattobd build (RV(kernel_gate) reports every
        installed kernel and the one the boot loader starts next). The module never reboots.
      - V(report) only reports (and warns).
      - V(hold) holds the kernel packages so that no further kernel is installed (Debian C(apt-mark hold) of
        the C(linux-image) metapackages and of the failing kernels' packages; RHEL family
        C(dnf versionlock add kernel kernel-core)). A failing kernel already installed still boots next;
        combine with a later run of V(default) or remove it.
      - V(default) sets the boot default back to the newest kernel with a working build when the next boot
        would start one without (C(grub-set-default) when C(GRUB_DEFAULT=saved), else C(grub-reboot) for the
        next boot only, with a warning; RHEL family C(grubby --set-default)).
      - With O(kernels=all), a failed build for a kernel that is not running no longer fails the module; the
        failure (and the C(make.log) tail) is reported in RV(kernel_gate) for that kernel.
    type: str
    choices: [report, hold, default]
    default: report
  allow_conflicts:
    description:
      - With O(state=present) the module refuses to install next to another snapshot driver that is loaded or
        installed (Veeam C(veeamsnap)/C(blksnap), C(elastio-snap), Acronis C(snapapi)), naming what it found.
        V(true) installs anyway.
    type: bool
    default: false
  build_timeout:
    description:
      - Seconds allowed for each C(dkms build) and C(dkms install).
      - A first build under emulation takes 25 minutes or more; raise it on slow hosts.
      - A build stopped at this limit fails with a message naming this option and the build's C(make.log).
    type: int
    default: 3600
notes:
  - The DKMS build runs the dattobd C(genconfig.sh) configure step, which needs the System.map of the target
    kernel. Debian ships a dummy C(/boot/System.map); for the running kernel dattobd falls back to
    C(/proc/kallsyms), for another kernel the C(linux-image-<kernel>-dbg) package is needed.
seealso:
  - module: snapfleet.dattobd.info
  - name: The snapfleet.dattobd.engine role
    description: Installs the engine from vendor repositories, local packages or a source tree, then calls this module.
    link: https://example.invalid/snapfleet/dattobd/docs/collections/snapfleet/dattobd/engine_role.html
'''

EXAMPLES = r'''
- name: Build and load dattobd 0.12.1 for the running kernel
  snapfleet.dattobd.engine:
    version: 0.12.1

- name: More trackers, smaller default COW files, for every installed kernel
  snapfleet.dattobd.engine:
    version: 0.12.1
    kernels: all
    parameters:
      max_snap_devices: 64
      cow_fallocate_percentage_default: 5

- name: Stage an upgrade without touching the loaded driver (applied at the next reboot)
  snapfleet.dattobd.engine:
    version: 0.12.2
    reload: false
  register: engine

- name: Remove dattobd (refused while trackers exist)
  snapfleet.dattobd.engine:
    state: absent
'''

RETURN = r'''
actions:
  description: Commands run (or planned in check mode) and file changes, in order.
  returned: always
  type: list
  elements: str
  sample: ["dkms add -m dattobd -v 0.12.1", "dkms build -m dattobd -v 0.12.1 -k 6.1.0-28-amd64",
           "dkms install -m dattobd -v 0.12.1 -k 6.1.0-28-amd64", "write /etc/modprobe.d/dattobd.conf",
           "write /etc/modules-load.d/dattobd.conf", "modprobe dattobd"]
kernel:
  description: The running kernel release.
  returned: always
  type: str
  sample: 6.1.0-28-amd64
kernels:
  description: DKMS state of the wanted version per handled kernel before the run (V(installed), V(built), V(added), V(absent)).
  returned: when state=present
  type: dict
  sample: {"6.1.0-28-amd64": "absent"}
versions:
  description: Versions found after the run.
  returned: always
  type: dict
  contains:
    loaded:
      description: Version of the loaded module (C(/sys/module/dattobd/version)), or null.
      type: str
    dkms:
      description: DKMS entries of dattobd (version, kernel, arch, state).
      type: list
      elements: dict
    tools:
      description: Version of the dattobd tools recorded by the engine role or the package manager, or null.
      type: str
    dbdctl:
      description: Path of the C(dbdctl) binary, or null when it is not installed.
      type: str
  sample: {"loaded": "0.12.1", "dkms": [{"version": "0.12.1", "kernel": "6.1.0-28-amd64", "arch": "x86_64",
           "state": "installed"}], "tools": "0.12.1"}
reload_required:
  description: True when the loaded module differs from the wanted one and was not reloaded (O(reload=false)).
  returned: always
  type: bool
reload_reasons:
  description: Why a reload is or was needed.
  returned: always
  type: list
  elements: str
trackers:
  description: Number of trackers that existed before the run.
  returned: always
  type: int
kernel_gate:
  description:
    - Every installed kernel (not only the running one) - whether a dattobd build exists for it (C(dkms status)
      or a module file C(modinfo -k <kernel> dattobd) finds), whether it loads there (C(modinfo) succeeds and
      the module's vermagic names that kernel; null when C(modinfo) is missing), and why.
    - C(next_boot) is the kernel the boot loader starts next (GRUB's next or saved entry resolved against
      C(grub.cfg), C(grubby --default-kernel) on the RHEL family, else the newest installed kernel) and
      C(next_boot_ok) whether it has a working build (null when unknown).
    - C(kernels[].build_log_tail) holds the end of the C(make.log) of a build that failed in this run.
  returned: when state=present
  type: dict
  sample: {"running": "6.1.0-57-amd64", "next_boot": "6.12.57+deb12-amd64", "next_boot_ok": false,
           "next_boot_source": "/boot/grub/grub.cfg (default 0)", "newest_working": "6.1.0-57-amd64",
           "kernels": [{"release": "6.1.0-57-amd64", "build": true, "loads": true,
                        "reason": "dattobd 0.12.1 built for it and loadable"},
                       {"release": "6.12.57+deb12-amd64", "build": false, "loads": false,
                        "reason": "no dattobd build for this kernel"}],
           "action": null}
make_log_tail:
  description: Last lines of the DKMS make.log when a build failed.
  returned: on build failure
  type: list
  elements: str
'''

import os
import shlex

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dkms as _dkms
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hygiene as _hygiene
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import kernels as _kernels
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import validation
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, fail_module


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


def run(module, ctx=None):
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
    if p['state'] == 'present' and not p['allow_conflicts']:
        _hygiene.refuse_conflicts(_hygiene.conflicts(_gate_host(module, ctx)))
    facts = _dkms.gather(ctx, version=version if p['state'] == 'present' else None,
                         source_dir=source_dir, kernels=p['kernels'])
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
        rc, out, err = ctx.run([ctx.dkms, 'status', '-m', _dkms.NAME])
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


def main():
    module = validation.make_module(
        AnsibleModule, dict(
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
        ),
        required_if=[('state', 'present', ['version'])],
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except DattobdError as exc:
        fail_module(module, exc)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
