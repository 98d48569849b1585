#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: snapshot
short_description: Manage the dattobd tracker of one block device (snapshot, incremental, absent)
version_added: 0.1.0
author: snapfleet maintainers (@snapfleet)
description:
  - Brings the dattobd tracker of one block device to the wanted state with C(dbdctl) -
    V(snapshot) (a point-in-time snapshot readable at C(/dev/datto<minor>)), V(incremental)
    (changed-block tracking only) or V(absent).
  - Reads the current state from C(/proc/datto-info) and runs only what is needed -
    C(setup-snapshot), C(transition-to-incremental), C(transition-to-snapshot) with a new COW file,
    C(reconfigure), C(destroy), or nothing. A second run with the same options reports no change.
  - Every transition to V(snapshot) gets a NEW COW file name (see O(cow_name)); the previous COW
    file holds the list of blocks changed since the last snapshot, which the next sync needs. It is
    returned in RV(previous_cow_file) and left on disk; delete it after the sync
    (M(snapfleet.dattobd.backup) does).
  - Fails with a message saying what happened and what to do, leaving the host unchanged, when the
    device is not a block device or mount point, the filesystem is not mounted or read-only, the
    COW path is on another filesystem or is a directory, the minor is out of range or taken,
    C(/dev/datto<minor>) is busy, the tracker has failed (unless O(recover=rebaseline)), or the
    tracker is dormant or unverified and the wanted transition is impossible.
  - With O(persist=true) (the default) the boot reload script C(<reload_dir>/reload_snapfleet_<minor>)
    is kept in step with the tracker (mode, COW file, cache size), so that tracking survives a reboot
    when the initramfs hook is installed (see the P(snapfleet.dattobd.initramfs#role) role).
extends_documentation_fragment:
  - snapfleet.dattobd.attributes
  - snapfleet.dattobd.attributes.PLATFORM
  - snapfleet.dattobd.attributes.ACTION_GROUP
  - snapfleet.dattobd.driver
attributes:
  check_mode:
    support: full
    details:
      - Returns the exact C(dbdctl) commands and file changes that would run, in RV(actions).
  diff_mode:
    support: full
    details:
      - Shows the tracker before and after, and the reload script when it changes.
options:
  device:
    description:
      - The block device to track (for example V(/dev/sdb1), V(/dev/disk/by-uuid/...), V(/dev/mapper/vg-lv))
        or the mount point of its filesystem (for example V(/data)).
      - It is resolved to the real block device; the reload script names it by a stable name that exists
        in early boot. A device-mapper device (an LVM logical volume given as C(/dev/<vg>/<lv>),
        C(/dev/mapper/<vg>-<lv>), C(/dev/dm-N) or its mount point) is named C(/dev/mapper/<vg>-<lv>), which the
        boot hook of the C(snapfleet.dattobd.initramfs) role activates when the initramfs did not; any other device
        C(/dev/disk/by-uuid/<fs uuid>) when available, else C(/dev/mapper/...), else the kernel name.
    type: path
    required: true
  state:
    description:
      - V(snapshot) - a tracker in active snapshot mode (set up, or transitioned from incremental with a
        new COW file).
      - V(incremental) - a tracker in active incremental mode (set up and transitioned when there is none).
      - V(absent) - no tracker on the device (C(destroy)). The driver deletes the COW file of an active
        tracker only; older COW files are left alone.
    type: str
    choices: [snapshot, incremental, absent]
    default: snapshot
  minor:
    description:
      - The dattobd minor (C(/dev/datto<minor>)).
      - Default - the minor of the tracker already on the device, else the lowest free minor.
      - Must be below the driver's C(max_snap_devices) (default 24); a minor used by another device is refused.
    type: int
  cow_file:
    description:
      - Absolute path of the next NEW COW file (used by C(setup-snapshot) or C(transition-to-snapshot)).
        It must be on the tracked filesystem and must not exist.
      - Usually omitted - names are then made from O(cow_dir) and O(cow_name), so that every snapshot
        gets a new file.
    type: path
  cow_dir:
    description:
      - Directory of new COW files; it must be on the tracked filesystem. Default - its mount point.
    type: path
  cow_name:
    description:
      - Template of new COW file names in O(cow_dir). C({minor}) is the minor and C({seq}) the sequence
        number the snapshot will have (1 at setup, +1 at each transition to snapshot).
      - If the name exists already, C(.1), C(.2), ... is appended; an existing file is never overwritten.
    type: str
    default: .datto_{minor}_{seq}
  cache_size:
    description:
      - Index cache of the tracker in BYTES (C(dbdctl -c)). V(0) means the driver default, its
        C(cow_max_memory_default) module parameter (300 MiB unless changed), read from
        C(/sys/module/dattobd/parameters).
      - Transitions do not keep it, so it is re-applied with C(reconfigure) after each transition.
    type: int
  fallocate:
    description:
      - Size in MiB (not bytes) to preallocate for a new COW file (C(dbdctl -f)). The snapshot fails when
        more data changes than fits.
      - Default - 10 % of the volume (the driver default). It is always passed explicitly on
        C(transition-to-snapshot), because without it the driver reuses a stored size that after a reboot
        is only the index size.
    type: int
  auto_expand:
    description:
      - Let the driver grow the COW file of an active snapshot by O(auto_expand.step_size) MiB when it is
        full, as long as O(auto_expand.reserved_space) MiB stay free (C(dbdctl reconfigure-auto-expand)).
      - Refused on dattobd 0.12.x - there a successful expand leaves the driver's global lock held and
        every later C(dbdctl) call and C(/proc/datto-info) read hangs until a reboot. Size the COW file
        with O(fallocate) instead.
    type: dict
    suboptions:
      step_size:
        description: MiB added at each expansion.
        type: int
        required: true
      reserved_space:
        description: MiB of free space that must remain on the filesystem.
        type: int
        default: 0
  cleanup:
    description:
      - Remove stray COW files on the device's filesystem - files named like this module's COW files
        (O(cow_name)) in the filesystem's root, the directory of the tracker's COW file and O(cow_dir), that
        neither the tracker (C(/proc/datto-info)) nor a boot reload script names, for example left behind
        when C(destroy) failed to unlink them (upstream issue 369). O(state=absent) always does this.
      - Never removes the COW file of the tracker or of a reload script, the previous COW file of this run
        (RV(previous_cow_file)), or a COW file a backup record in O(backup_state_dir) still needs. A previous
        COW file of an earlier run that was not synced yet IS stray by this rule - sync it first.
      - Check mode lists what would be removed in RV(removed_cow_files).
    type: bool
    default: false
  backup_state_dir:
    description:
      - The backup records (M(snapfleet.dattobd.backup) O(snapfleet.dattobd.backup#module:state_dir)); the COW
        files they list as pending are never removed by O(cleanup).
    type: path
    default: /var/lib/snapfleet/dattobd/backups
  persist:
    description:
      - Keep the boot reload script of the tracker in step - written after every setup and transition,
        removed after destroy.
    type: bool
    default: true
  reload_dir:
    description:
      - Directory of the boot reload scripts (read by the dattobd initramfs hook).
    type: path
    default: /etc/datto/dla
  recover:
    description:
      - What to do with a failed tracker (C(error) in C(/proc/datto-info), for example a full COW file,
        EFBIG, or a COW file missing at reload, ENOENT). Its change tracking is lost.
      - V(fail) - fail and leave it for a human.
      - V(rebaseline) - destroy it and set it up again; RV(rebaseline_required) is then true and the next
        backup must be a full one.
    type: str
    choices: [fail, rebaseline]
    default: fail
  release_holders:
    description:
      - When C(/dev/datto<minor>) is busy (EBUSY) for a transition, C(reconfigure) or C(destroy), the
        failure always names what holds it (a device-mapper target, a loop device, a mount, a process)
        with the command that releases it, in the message and in RV(holders).
      - V(true) also removes the holders that are plainly stale, then runs the refused C(dbdctl) call once
        more - a device-mapper target whose table maps solely onto C(/dev/datto<minor>) (C(dmsetup remove
        <name>); for example left by C(kpartx), C(dmsetup create) or LVM activating a volume group it found
        on the snapshot) and a loop device backed by it (C(losetup -d)), each only when nothing uses it - not
        mounted, no holder of its own, no process with it open. The collection itself makes no
        device-mapper targets or loop devices over a snapshot device.
      - Never unmounts a filesystem and never stops a process.
      - The holders are looked at before the call as well, so check mode lists the removals in RV(actions)
        and removes nothing.
    type: bool
    default: false
notes:
  - Requires root. dattobd tracks block-device filesystems such as ext4 and XFS; the COW file must be on
    the tracked filesystem itself.
seealso:
  - module: snapfleet.dattobd.info
  - module: snapfleet.dattobd.backup
'''

EXAMPLES = r'''
- name: Take a snapshot of /data (set up, or rotate to a new COW file)
  snapfleet.dattobd.snapshot:
    device: /data
    state: snapshot
    fallocate: 2048
  register: snap

- name: Back to change tracking once the snapshot was copied
  snapfleet.dattobd.snapshot:
    device: /data
    state: incremental

- name: Track the root volume on minor 0, COW files in /var/lib/snapfleet
  snapfleet.dattobd.snapshot:
    device: /dev/disk/by-uuid/0b6c2f3e-5a1d-4c55-b1e2-a0f4c9d8e7b6
    minor: 0
    state: incremental
    cow_dir: /.snapfleet
    cow_name: "cow_{minor}_{seq}"

- name: Rebuild a failed tracker (next backup is full)
  snapfleet.dattobd.snapshot:
    device: /data
    state: incremental
    recover: rebaseline

- name: Stop tracking
  snapfleet.dattobd.snapshot:
    device: /data
    state: absent
'''

RETURN = r'''
actions:
  description: The exact commands run (or, in check mode, planned) and file changes, in order.
  returned: always
  type: list
  elements: str
  sample:
    - /usr/bin/dbdctl transition-to-snapshot -f 25 /data/.datto_0_2 0
    - write /etc/datto/dla/reload_snapfleet_0
minor:
  description: The minor of the tracker (C(/dev/datto<minor>)).
  returned: always
  type: int
  sample: 0
previous_cow_file:
  description:
    - After a transition to snapshot, the absolute path of the previous COW file; it lists the blocks changed
      since the previous snapshot (what the sync needs). Null otherwise.
  returned: always
  type: str
  sample: /data/.datto_0_1
new_cow_file:
  description: The absolute path of the COW file created by this run, if any.
  returned: always
  type: str
  sample: /data/.datto_0_2
rebaseline_required:
  description: True when a failed tracker was rebuilt; the next backup must be a full one.
  returned: always
  type: bool
  sample: false
tracker:
  description: The tracker after the run as in C(/proc/datto-info) (predicted in check mode); null when absent.
  returned: always
  type: dict
  sample:
    minor: 0
    state: 3
    state_name: active snapshot
    cow_file: /.datto_0_2
    block_device: /dev/vdb
before:
  description: Summary of the tracker before the run (empty when there was none).
  returned: always
  type: dict
after:
  description: Summary of the tracker after the run (predicted in check mode; empty when absent).
  returned: always
  type: dict
removed_cow_files:
  description:
    - Stray COW files removed (or, in check mode, to remove) by O(cleanup) or O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [/data/.datto_0_3]
holders:
  description:
    - What held C(/dev/datto<minor>) open, when it was busy (EBUSY), or what the look before the call found
      in check mode or with O(release_holders); also in the failure result. Empty when nothing was found.
    - C(kind) is V(dm), V(loop), V(mount), V(process) (or V(other)); C(command) releases it; C(releasable) says
      whether it is stale (what O(release_holders) removes), else C(reason) says why not; C(released) says
      whether this run removed it.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: dm
      device: dm-3
      name: vgdata-snap
      uuid: LVM-Vx1nq7cJbHcL3rD8kAq0cR2m6hDg5wQy
      lvm: vgdata/snap
      backing_file: null
      mount_points: []
      pids: []
      command: lvchange -an vgdata/snap
      releasable: true
      reason: null
      released: false
device:
  description: The resolved device - real path, stable name, mount point, filesystem type, size.
  returned: when the driver is loaded
  type: dict
  sample:
    path: /dev/vdb
    stable_name: /dev/disk/by-uuid/0b6c2f3e-5a1d-4c55-b1e2-a0f4c9d8e7b6
    mount_point: /data
    fstype: ext4
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import moduleapi, snapshot_run


def main():
    moduleapi.run(AnsibleModule, snapshot_run.ARGUMENT_SPEC, snapshot_run.module_runner, snapshot_run.UNEXPECTED,
                  warn=True, supports_check_mode=True)


if __name__ == '__main__':
    main()
