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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import engine_run, moduleapi


def main():
    moduleapi.run(AnsibleModule, engine_run.ARGUMENT_SPEC, engine_run.module_runner, engine_run.UNEXPECTED,
                  **engine_run.MODULE_KWARGS)


if __name__ == '__main__':
    main()
