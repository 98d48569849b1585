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
  description:
    - The dattobd tools - C(dbdctl) and C(update-img) paths (null when missing) and their version, as
      M(snapfleet.dattobd.engine) reports it (the engine role's record of tools built from source, else the
      C(dattobd-utils) package's).
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import host_status, moduleapi


def make_host(module):
    """The host access of the gathering (tests replace this function)."""
    return host_status.InfoHost(lambda name, opt_dirs: module.get_bin_path(name, required=False, opt_dirs=opt_dirs))


def main():
    moduleapi.run(AnsibleModule, host_status.argument_spec(),
                  lambda module: host_status.module_runner(module, make_host(module)),
                  host_status.UNEXPECTED, supports_check_mode=True)


if __name__ == '__main__':
    main()
