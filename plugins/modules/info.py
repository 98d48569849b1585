#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: info
short_description: Facts about dattobd on a host - driver, tools, DKMS, trackers, reload scripts
version_added: 0.1.0
author: snapfleet maintainers (@snapfleet)
description:
  - Reports, without changing anything, whether the dattobd kernel module is loaded, the driver and tools
    versions, the DKMS status for the running kernel, every tracker listed in C(/proc/datto-info) with its
    state number AND name (dormant/active/unverified x snapshot/incremental, failed with the errno name),
    the free minors, and the boot reload scripts with any drift between them and the live trackers.
  - Works when the driver is not loaded (RV(loaded=false), and RV(summary) says so).
  - Reports the kernel upgrade gate (RV(kernel_gate) - every installed kernel, whether dattobd is built and
    loads there, and the kernel the boot loader starts next) and other snapshot drivers on the host
    (RV(conflicts)).
  - Every read of C(/proc/datto-info) and every command has a timeout. A wedged driver (dattobd 0.12.x
    after a successful C(expand-cow-file), when every ioctl and C(/proc/datto-info) read blocks) is reported, not
    failed on (RV(driver_wedged)). The first read that times out marks it wedged until the next boot (a
    marker under C(/run/snapfleet-dattobd), keyed by the boot id; not written in check mode), and while that marker stands the module
    does not touch the driver at all (no timeout), nor do the backup, snapshot, sync and engine modules.
extends_documentation_fragment:
  - snapfleet.dattobd.attributes
  - snapfleet.dattobd.attributes.INFO_MODULE
  - snapfleet.dattobd.attributes.PLATFORM
  - snapfleet.dattobd.attributes.ACTION_GROUP
  - snapfleet.dattobd.driver
options:
  reload_dir:
    description:
      - Directory of the boot reload scripts. Must be an absolute path.
      - When it does not exist or is not a directory, a warning says so and C(reload.in_sync) is null
        (unknown), never true.
      - A O(dbdctl_path) that is not an executable file is reported as a warning (C(tools.dbdctl) is then null).
    type: path
    default: /etc/datto/dla
  dkms:
    description: Ask DKMS for the build status of dattobd (C(dkms status), best effort).
    type: bool
    default: true
  cow_name:
    description:
      - The COW file name template of the trackers (M(snapfleet.dattobd.snapshot) O(snapfleet.dattobd.snapshot#module:cow_name)),
        used to recognise stray COW files (RV(stray_cow_files)).
    type: str
    default: .datto_{minor}_{seq}
  backup_state_dir:
    description: The backup records; COW files they list as pending are not stray.
    type: path
    default: /var/lib/snapfleet/dattobd/backups
seealso:
  - module: snapfleet.dattobd.snapshot
  - module: snapfleet.dattobd.engine
'''

EXAMPLES = r'''
- name: Gather dattobd facts
  snapfleet.dattobd.info:
  register: dattobd

- name: Show the trackers
  ansible.builtin.debug:
    msg: "{{ item.minor }} {{ item.block_device }}: {{ item.state_name }}"
  loop: "{{ dattobd.trackers }}"

- name: Fail when a reload script does not match its tracker
  ansible.builtin.assert:
    that: dattobd.reload.in_sync
    fail_msg: "{{ dattobd.reload.drift | map(attribute='message') | list }}"
'''

RETURN = r'''
loaded:
  description: Whether the dattobd kernel module is loaded (C(/proc/datto-info) exists).
  returned: always
  type: bool
  sample: true
summary:
  description: One sentence about the host's dattobd state.
  returned: always
  type: str
  sample: dattobd 0.12.1 loaded, 1 tracker (1 active), 23 free minors, reload scripts in sync.
driver_wedged:
  description:
    - Null unless the dattobd driver is wedged in this boot (a driver call or C(/proc/datto-info) read timed out,
      in this call or an earlier one). Then C(since) (UTC), C(reason) (which call did not finish),
      C(boot_id), C(call), C(path) (the marker file, null when it could not be written) and C(clears) (what
      clears it, a hard reset). RV(trackers) is then empty and C(reload.in_sync) null, as they cannot be read.
  returned: always
  type: dict
  sample: {"since": "2026-12-05T10:15:02Z", "reason": "reading /proc/datto-info did not finish within 60 seconds",
           "boot_id": "6f1c...", "call": "reading /proc/datto-info",
           "path": "/run/snapfleet-dattobd/driver-wedged.json",
           "clears": "a hard reset (a clean reboot hangs): see docs/troubleshooting.md"}
driver_version:
  description: Version of the loaded module (C(/sys/module/dattobd/version)), null when not loaded.
  returned: always
  type: str
  sample: 0.12.1
module_parameters:
  description: Module parameters visible in C(/sys/module/dattobd/parameters).
  returned: always
  type: dict
  sample: {max_snap_devices: '24', may_hook_syscalls: '1', debug: '0'}
max_snap_devices:
  description: Number of minors of the loaded driver.
  returned: always
  type: int
  sample: 24
trackers:
  description:
    - Every tracker in C(/proc/datto-info) - minor, block_device, cow_file (relative to the mount point),
      state (number), state_name, mode, phase, failed, error, error_name, error_text, seq_id, uuid, sizes.
  returned: always
  type: list
  elements: dict
  sample:
    - minor: 0
      block_device: /dev/vdb
      cow_file: /.datto_0_1
      state: 3
      state_name: active snapshot
      failed: false
free_minors:
  description: Minors without a tracker (empty when the driver is not loaded).
  returned: always
  type: list
  elements: int
tools:
  description: The dattobd tools - C(dbdctl) and C(update-img) paths (null when missing) and the package version.
  returned: always
  type: dict
  sample: {dbdctl: /usr/bin/dbdctl, update_img: /usr/bin/update-img, version: 0.12.1-1}
dkms:
  description:
    - DKMS status of dattobd - C(available) (dkms installed), C(kernel) (running kernel), C(state) for the
      running kernel (installed, built, added or null), C(entries) (every dattobd line), C(error).
  returned: always
  type: dict
reload:
  description:
    - C(directory), C(scripts) (every C(reload_*) script, parsed), C(drift) (list of problems, each with
      C(minor), C(problem), C(message)) and C(in_sync) (true when there is no drift; null when O(reload_dir) does not exist or is
      not a directory, so nothing could be compared).
  returned: always
  type: dict
kernel_gate:
  description:
    - Every installed kernel with C(release), C(build) (a dattobd build exists - DKMS or a module file),
      C(loads) (C(modinfo -k <kernel> dattobd) succeeds and the vermagic names that kernel; null when
      C(modinfo) is missing) and C(reason); C(running), C(next_boot) (the kernel the boot loader starts next),
      C(next_boot_source), C(next_boot_ok) (null when unknown), C(newest_working), C(problems).
    - The same report as the engine module's; the status playbook carries it into the fleet report.
  returned: always
  type: dict
  sample: {"running": "6.1.0-57-amd64", "next_boot": "6.12.57+deb12-amd64", "next_boot_ok": false,
           "kernels": [{"release": "6.1.0-57-amd64", "build": true, "loads": true, "reason": "dattobd 0.12.1 built for it and loadable"},
                       {"release": "6.12.57+deb12-amd64", "build": false, "loads": false, "reason": "no dattobd build for this kernel"}]}
conflicts:
  description:
    - Other snapshot drivers loaded (C(/proc/modules)) or installed (module files, DKMS, packages) - Veeam
      C(veeamsnap)/C(blksnap), C(elastio-snap), Acronis C(snapapi) - each with C(driver), C(product), C(loaded),
      C(modules), C(dkms), C(packages). Empty when there is none.
  returned: always
  type: list
  elements: dict
stray_cow_files:
  description:
    - Files named like the COW files (O(cow_name)) in the root and COW directories of every tracked filesystem
      (a tracker or a reload script names it) that no tracker, no reload script and no pending backup record names,
      for example left behind when C(destroy) failed to unlink them. Each with C(path), C(mount_point),
      C(block_device). M(snapfleet.dattobd.snapshot) with O(snapfleet.dattobd.snapshot#module:cleanup=true) removes them.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/data/.datto_0_3", "mount_point": "/data", "block_device": "/dev/vdb"}]
actions:
  description: The read-only commands run to gather the facts.
  returned: always
  type: list
  elements: str
'''

import os
import platform
import shlex

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dbdctl, dkms, planner, procinfo, runner, validation
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hygiene, kernels, wedge
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as reload_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout, fail_module

PARAMS_DIR = '/sys/module/dattobd/parameters'
WEDGE_CLEARS = 'a hard reset (a clean reboot hangs): see docs/troubleshooting.md'


class InfoHost(object):
    """Host access of the info module (unit tests replace it)."""

    def __init__(self, module):
        self.module = module

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

    def bin(self, name, path=None):
        if path:
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        return self.module.get_bin_path(name, required=False, opt_dirs=['/usr/local/bin', '/usr/sbin', '/sbin'])

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
        from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import devices
        return devices.Host()

    def kernel_host(self, timeout):
        """Host access of the kernel gate and the conflict scan (files below /)."""
        return kernels.Host(self.run, self.bin, root='/', timeout=min(timeout, 30))


def make_host(module):
    return InfoHost(module)


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


def gather(module, host):
    p = module.params
    timeout = p['timeout']
    actions = []
    info, wedged = read_driver(host, timeout, check_mode=module.check_mode)
    if wedged:
        module.warn('The dattobd driver is wedged since %s (%s): its trackers cannot be read. %s'
                    % (wedged.get('since'), wedged.get('reason'), wedge.RECOVERY))
    result = dict(changed=False, loaded=info.loaded, driver_version=host.driver_version() if info.loaded else None,
                  proc_version=info.version, module_parameters=host.module_parameters() if info.loaded else {},
                  trackers=[t.to_dict() for t in info.devices], actions=actions, driver_wedged=wedged)
    max_devices = host.max_snap_devices()
    result['max_snap_devices'] = max_devices
    result['free_minors'] = info.free_minors(max_devices) if info.loaded else []

    tools = dict(dbdctl=host.bin('dbdctl', p['dbdctl_path']), update_img=host.bin('update-img'), version=None)
    if p['dbdctl_path'] and not tools['dbdctl']:
        module.warn('dbdctl_path %r is not an executable file: dbdctl is reported as not found.' % p['dbdctl_path'])
    for tool, argv in (('dpkg-query', ['-W', '-f=${Version}', 'dattobd-utils']),
                       ('rpm', ['-q', '--qf', '%{VERSION}-%{RELEASE}', 'dattobd-utils'])):
        path = host.bin(tool)
        if not path:
            continue
        cmd = [path] + argv
        actions.append(shlex.join(cmd))
        try:
            rc, out, dummy = host.run(cmd, min(timeout, 30))
        except DattobdError:
            continue
        if rc == 0 and out.strip() and 'not installed' not in out:
            tools['version'] = out.strip()
            break
    result['tools'] = tools

    kernel = host.kernel()
    dk = dict(available=False, kernel=kernel, state=None, entries=[], error=None)
    if p['dkms']:
        path = host.bin('dkms')
        if path:
            dk['available'] = True
            cmd = [path, 'status', '-m', 'dattobd']
            actions.append(shlex.join(cmd))
            try:
                rc, out, err = host.run(cmd, timeout)
                if rc == 0:
                    dk['entries'] = dkms.parse_dkms_status(out)
                    states = [e['state'] for e in dk['entries'] if e['kernel'] == kernel]
                    for wanted in ('installed', 'installed-weak', 'built', 'added'):
                        if wanted in states:
                            dk['state'] = wanted
                            break
                    if dk['state'] is None and dk['entries']:
                        dk['state'] = 'added' if any(e['kernel'] is None for e in dk['entries']) else None
                else:
                    dk['error'] = (err or out).strip() or 'dkms status exited %d' % rc
            except DattobdError as exc:
                dk['error'] = exc.full_msg
    result['dkms'] = dk

    khost = host.kernel_host(timeout)
    result['kernel_gate'] = kernels.gather(khost, dkms.os_family(dkms.Paths(khost.root)), kernel,
                                           dkms_entries=dk['entries'], version=result['driver_version'])
    dkms_all = khost.cmd('dkms', ['status']) if p['dkms'] else None
    result['conflicts'] = hygiene.conflicts(khost, dkms_all[1] if dkms_all and dkms_all[0] == 0 else None)
    actions.extend(khost.commands)
    if result['conflicts']:
        module.warn('Other snapshot drivers on this host: %s.' % '; '.join(hygiene.describe(result['conflicts'])))

    kind = host.path_kind(p['reload_dir'])
    if kind == 'directory':
        scans = host.reload_scan(p['reload_dir'])
        # wedged: the trackers are unknown, so is the drift (null, never "every script drifts")
        drift = host.reload_compare(scans, info) if scans is not None and not wedged else None
    else:
        # Nothing to compare the trackers with: whether the scripts are in sync is unknown.
        module.warn('reload_dir %s %s: no reload script can be read, so whether the trackers come back after '
                    'a reboot is unknown (reload.in_sync is null).'
                    % (p['reload_dir'], 'does not exist' if kind == 'missing' else 'is not a directory'))
        scans = drift = None
    result['reload'] = dict(directory=p['reload_dir'], scripts=scans or [], drift=drift or [],
                            in_sync=not drift if drift is not None else None)
    sources = [(t['block_device'], t['cow_file']) for t in result['trackers']]
    sources += [(s.get('block_device'), s.get('cow_file')) for s in scans or []]
    if wedged:
        sources = []  # the live trackers' COW files are unknown: none is called stray
    try:
        result['stray_cow_files'] = hygiene.tracked_strays(host.devices_host(), sources, p['cow_name'],
                                                           protected=hygiene.pending_cow_files(p['backup_state_dir']))
    except DattobdError as exc:
        module.warn('Stray COW files were not looked for: %s' % exc.msg)
        result['stray_cow_files'] = []
    if result['stray_cow_files']:
        module.warn('Stray COW files (no tracker or reload script names them): %s. Remove them with '
                    'snapfleet.dattobd.snapshot cleanup=true.' % ', '.join(f['path'] for f in result['stray_cow_files']))
    result['summary'] = summarize(result)
    return result


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


def main():
    module = validation.make_module(AnsibleModule, argument_spec(), supports_check_mode=True)
    if module.params['timeout'] < 1:
        module.fail_json(msg='timeout must be at least 1 second, got %d.' % module.params['timeout'])
    if not os.path.isabs(module.params['reload_dir']):
        module.fail_json(msg='reload_dir must be an absolute path, got %r.' % module.params['reload_dir'])
    try:
        planner.validate_cow_name(module.params['cow_name'])
    except DattobdError as exc:
        fail_module(module, exc)
    try:
        result = gather(module, make_host(module))
    except DriverTimeout as exc:
        fail_module(module, exc, wedged=True)
    except DattobdError as exc:
        fail_module(module, exc)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        module.fail_json(msg='Unexpected error while gathering dattobd facts: %s' % exc,
                         hint='Please report this to the snapfleet.dattobd maintainers.')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
