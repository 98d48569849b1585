#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: backup
short_description: One backup cycle of each volume of a host tracked by dattobd (full first, incremental after)
version_added: 0.1.0
author: snapfleet maintainers (@snapfleet)
description:
  - Runs one complete backup cycle of one volume (O(device), O(image)), or of every volume of the host
    (O(volumes)), in one module call (one SSH round trip), restore points included (O(retention)).
  - "With O(volumes) the volumes run one after the other. Every element is validated before any volume acts: a
    rejected element (named by its index and name, C(volumes[1] (db))) fails the call and nothing runs, no hook,
    no record. Then a volume that fails does not stop the next ones (a wedged driver fails them at once, a
    signal starts no further one); RV(volumes) holds each volume's result and the call fails when any failed."
  - "First run: sets up a dattobd tracker on O(device), copies the whole snapshot into O(image)
    (sparse, see O(sparse)), writes the image metadata (C(<image>.snapfleet.json))
    and leaves the tracker in incremental mode."
  - "Later runs: transition to snapshot with a new COW file, copy only the blocks the previous
    COW file lists (M(snapfleet.dattobd.sync) logic, journalled), optionally verify, go back to
    incremental, remove the consumed COW file and record the new sequence number."
  - A full backup is taken again (rebaseline) when the tracker is missing or failed, belongs to
    another snapshot series, when the boot check of the P(snapfleet.dattobd.systemd#role) role
    says tracking was lost, or when O(full=true). With a good earlier image it compares the snapshot with
    the image and writes only the blocks that differ (O(rebaseline)).
  - "Any failure leaves the tracker incremental (a transition back is attempted) and the image
    either untouched or resumable; the failure result says which (RV(image_state)) and what the
    next run will do (RV(next_run): V(incremental), V(resume) or V(full))."
  - "Every incremental cycle also verifies beyond the change list, while the snapshot exists: a seeded random
    sample of the allocated blocks outside it (O(verify_sample_budget)), or on a schedule the whole image
    (O(full_verify_every_days), O(full_verify_every_cycles)). A difference fails the cycle: the image is never
    marked good and the next run takes a full backup (RV(verification))."
  - "SIGTERM, SIGINT or SIGHUP (a timeout, C(systemctl stop), Ctrl-C) during the copy stop it the same way: the
    tracker goes back to incremental, the image is left untouched (full copy) or resumable (journalled), and the
    failure says so (RV(step) V(copy)). Once the image is complete the last steps are finished first. Only a
    SIGKILL (or a power loss) leaves the tracker in snapshot mode: the next run goes on from that snapshot."
  - "Validate, then act: every parameter is checked, then every readiness check is made (the record of the image,
    the driver loaded, the device present and mounted read-write, the tracker minor, the destination and its free
    space) before anything is written or any hook runs. A run refused there fails (RV(step) V(parameters),
    V(record), V(snapshot) or V(destination)) and leaves the host as it was: no hook run, no lock, no record.
    Check mode takes the same decisions."
  - A record of every cycle that started is kept in O(state_dir) (root-only), one JSON file per image named after
    the image path (a readable prefix and the SHA-256 of the normalized path, see
    P(snapfleet.dattobd.backup_record_name#filter)); the C(status) playbook reads it. The record names its image
    and a record naming another image is refused. A lock file beside it (C(.lock), named after the file the path
    leads to) makes a second cycle of the same image (say a timer and a manual run) fail at once instead of
    interfering. One image reached by two paths (a symlinked directory) has one lock, and a run through the second
    path is refused (RV(step) V(record)) while the first path has a record, instead of starting a second record.
  - "A record written by an earlier version under its old name (the image path with C(/) and every other
    character but C(A-Za-z0-9_.-) as C(_), a name that C(/b/a_b.img), C(/b/a/b.img) and C(/b/a b.img) shared) is
    moved to the new name by the next run, under the lock, when it names this image. An old record that does not
    name its image is used only when no other image could have had its name; otherwise the run is refused
    (RV(step) V(record)) with the command to move it by hand."
  - Images, metadata and records are root-only; a destination directory or image that others can
    read or write is refused, and so is an image on the filesystem being backed up.
  - "Every cycle that ends, well or not, writes node_exporter textfile metrics of its image (O(metrics),
    O(metrics_dir), RV(metrics_file)): last success and last run time, duration, blocks and bytes copied, mode,
    verification, tracker state and COW file usage (docs/monitoring.md). A run refused by its readiness checks
    writes them as a failed run (that file is the only one it writes); a run refused for its parameters, a run
    refused because another cycle of the image holds the lock, and check mode write none."
extends_documentation_fragment:
  - snapfleet.dattobd.attributes
  - snapfleet.dattobd.attributes.PLATFORM
  - snapfleet.dattobd.attributes.ACTION_GROUP
  - snapfleet.dattobd.driver
attributes:
  check_mode:
    support: full
    details:
      - Reports the mode (full, incremental, resume) and the exact plan in RV(actions) without running it,
        and whether a sample or a full verification would run (RV(verification)).
  diff_mode:
    support: partial
    details:
      - Shows the tracker state before and after the snapshot step.
options:
  volumes:
    description:
      - Every volume of the host, backed up one after the other in this call (the role's form). Mutually exclusive
        with O(device) and O(image), which back up one volume.
      - "Each element takes the options of one volume: O(device), O(image) (both required), O(name), O(cow_dir),
        O(cow_name), O(minor), O(cache_size), O(fallocate), O(verify), O(full), O(verify_sample_budget),
        O(verify_sample_min), O(verify_sample_max), O(verify_sample_seed), O(full_verify_every_cycles),
        O(full_verify_every_days), O(pre_hooks), O(post_hooks), O(verify_hooks), O(persist), O(sparse),
        O(after_reboot), O(rebaseline), O(retention), O(retention_method), O(retention_full_copies) and
        O(retention_timeout), with the same meaning and values. An option an element leaves out (or sets to
        null) takes the value of the top-level option of the same name, so the top-level ones are the defaults of
        every volume; O(name), O(minor) and O(cow_dir) excepted, which name one volume and are refused at the top
        level with O(volumes)."
      - The other options (O(state_dir), O(timeout), O(check_free_space), O(metrics), O(metrics_dir),
        O(run_boot_id), O(boot_check_path), O(dbdctl_path), O(read_depth)) are the host's, shared by every volume.
      - No two elements may name the same O(image) or the same O(device).
      - An empty list backs up nothing (RV(volumes) is empty).
    type: list
    elements: dict
    suboptions:
      device:
        description: The O(device) of this volume.
        type: str
        required: true
      image:
        description: The O(image) of this volume.
        type: path
        required: true
      name:
        description: The O(name) of this volume (not taken from the top level, where it is refused with O(volumes)).
        type: str
      cow_dir:
        description: The O(cow_dir) of this volume (not taken from the top level, where it is refused with O(volumes)).
        type: path
      cow_name:
        description: The O(cow_name) of this volume; default the top-level O(cow_name).
        type: str
      minor:
        description: The O(minor) of this volume (not taken from the top level, where it is refused with O(volumes)).
        type: int
      cache_size:
        description: The O(cache_size) of this volume; default the top-level O(cache_size).
        type: int
      fallocate:
        description: The O(fallocate) of this volume; default the top-level O(fallocate).
        type: int
      verify:
        description: The O(verify) of this volume; default the top-level O(verify).
        type: str
        choices: [none, changed, full]
      full:
        description: The O(full) of this volume; default the top-level O(full).
        type: bool
      verify_sample_budget:
        description: The O(verify_sample_budget) of this volume; default the top-level O(verify_sample_budget).
        type: float
      verify_sample_min:
        description: The O(verify_sample_min) of this volume; default the top-level O(verify_sample_min).
        type: int
      verify_sample_max:
        description: The O(verify_sample_max) of this volume; default the top-level O(verify_sample_max).
        type: int
      verify_sample_seed:
        description: The O(verify_sample_seed) of this volume; default the top-level O(verify_sample_seed).
        type: int
      full_verify_every_cycles:
        description: The O(full_verify_every_cycles) of this volume; default the top-level O(full_verify_every_cycles).
        type: int
      full_verify_every_days:
        description: The O(full_verify_every_days) of this volume; default the top-level O(full_verify_every_days).
        type: float
      pre_hooks:
        description: The O(pre_hooks) of this volume; default the top-level O(pre_hooks).
        type: list
        elements: dict
        suboptions:
          argv:
            description: The command and its arguments; the command is an absolute path.
            type: list
            elements: str
            required: true
          timeout:
            description: Seconds before the command is killed (counted as a failure).
            type: int
            default: 60
      post_hooks:
        description: The O(post_hooks) of this volume; default the top-level O(post_hooks).
        type: list
        elements: dict
        suboptions:
          argv:
            description: The command and its arguments; the command is an absolute path.
            type: list
            elements: str
            required: true
          timeout:
            description: Seconds before the command is killed (counted as a failure).
            type: int
            default: 60
      verify_hooks:
        description: The O(verify_hooks) of this volume; default the top-level O(verify_hooks).
        type: list
        elements: dict
        suboptions:
          argv:
            description: The command and its arguments; the command is an absolute path.
            type: list
            elements: str
            required: true
          timeout:
            description: Seconds before the command is killed (counted as a failure).
            type: int
            default: 60
      persist:
        description: The O(persist) of this volume; default the top-level O(persist).
        type: bool
      sparse:
        description: The O(sparse) of this volume; default the top-level O(sparse).
        type: str
        choices: [filesystem, zeros]
      after_reboot:
        description: The O(after_reboot) of this volume; default the top-level O(after_reboot).
        type: str
        choices: [metadata, full, none]
      rebaseline:
        description: The O(rebaseline) of this volume; default the top-level O(rebaseline).
        type: str
        choices: [compare, full]
      retention:
        description: The O(retention) of this volume; default the top-level O(retention).
        type: int
      retention_method:
        description: The O(retention_method) of this volume; default the top-level O(retention_method).
        type: str
        choices: [auto, reflink, copy]
      retention_full_copies:
        description: The O(retention_full_copies) of this volume; default the top-level O(retention_full_copies).
        type: int
      retention_timeout:
        description: The O(retention_timeout) of this volume; default the top-level O(retention_timeout).
        type: int
      group:
        description:
          - "A consistency group: the volumes with the same O(volumes[].group) are snapshotted together, where the
            first of them is in O(volumes). Every volume of the group first passes its readiness checks, takes its
            lock and makes its restore point; then the top-level O(pre_hooks) run once, every volume transitions
            to snapshot back to back (no hook and no other work between them), the top-level O(post_hooks) run
            once; then each volume is copied, verified and returned to incremental as usual, one after the other."
          - "The group's hooks are the top-level O(pre_hooks) and O(post_hooks); their environment has
            C(SNAPFLEET_GROUP) (the group's name), and C(SNAPFLEET_DEVICE) and C(SNAPFLEET_IMAGE) list every volume
            of the group, one per line. An element of a group that sets its own O(volumes[].pre_hooks) or
            O(volumes[].post_hooks) is refused before anything runs (RV(step) V(parameters))."
          - "A failure before the copies (a readiness check, the lock or the restore point of any volume, a pre
            hook, a transition to snapshot) fails every volume of the group: the volumes already in snapshot go
            back to incremental (their change list stays pending, RV(next_run) V(resume)), the post hooks run once
            if the pre hooks ran, no image is changed, the locks are released. The volume that failed says why;
            the others say C(Consistency group <name> failed) and why (RV(step) V(group)). Other groups and the
            volumes outside any group go on. A failure during a copy fails that volume only."
          - "No C(fsfreeze) is offered around the transitions: dattobd freezes each filesystem itself
            (C(freeze_bdev)) while it takes the snapshot, and a filesystem already frozen would deadlock that
            freeze on kernels where freezes do not nest."
          - 1 to 64 characters of C(A-Z), C(a-z), C(0-9), C(.), C(_) and C(-). Without it the volume is snapshotted
            alone, with its own hooks.
        type: str

  device:
    description:
      - The volume to back up, a block device (for example C(/dev/vdb), C(/dev/disk/by-uuid/...)) or the mount point
        of its filesystem, as an absolute path. It must be mounted read-write.
      - Required, with O(image), unless O(volumes) is given.
    type: str
  image:
    description:
      - Absolute path of the raw image file holding the backup. Its directory must exist, be owned by root and
        not be accessible by group or others (0700), and be on another filesystem than O(device).
      - Required, with O(device), unless O(volumes) is given.
    type: path
  name:
    description: A short name of the volume for reports (default the image file name).
    type: str
  cow_dir:
    description:
      - Absolute path of the directory, on the filesystem of O(device), holding the COW files. Default is its
        mount point.
    type: path
  cow_name:
    description:
      - Template of the rotated COW file names, with C({minor}) and C({seq}). Default C(.datto_{minor}_{seq}).
    type: str
  minor:
    description: Minor number of the tracker (C(/dev/datto<minor>)). Default is the existing tracker, else the lowest free one.
    type: int
  cache_size:
    description: Index cache of the tracker in bytes (C(dbdctl -c)). Default is the module default (300 MiB).
    type: int
  fallocate:
    description:
      - Space preallocated for each new COW file, in MiB (C(dbdctl -f)). Default 10 % of the volume.
      - The COW file must hold every block overwritten while the snapshot exists (during the copy); when it
        fills up, the snapshot fails and the next backup is full.
    type: int
  verify:
    description:
      - After an incremental copy, compare the copied blocks (V(changed)) or the whole image (V(full)) with the
        snapshot; after a full copy, both compare the whole image before it replaces the previous one.
      - A whole-image comparison ignores the blocks of the snapshot's own live COW file, which the snapshot
        device shows as they are now (they change between two reads).
      - Whatever this option says, every incremental cycle also checks what the change list cannot prove (see
        O(verify_sample_budget) and O(full_verify_every_days)).
    type: str
    choices: [none, changed, full]
    default: none
  verify_sample_budget:
    description:
      - "Sampled verification outside the change list: after every incremental (or resumed) copy, a uniform random
        sample of the allocated blocks the change list does NOT name is compared between the snapshot device and
        the image, while the snapshot exists. It catches a change list that lost a whole section: a lost section
        of a fraction k of those blocks escapes a sample of n blocks with a probability of at most (1 - k)^n
        (5 % and 512 blocks, below 4e-12; 5 % and 64 blocks, 4 %). Each cycle draws a new sample, so a lost
        section that survives into later cycles is found with a chance that grows with every cycle; the
        full verification (O(full_verify_every_days)) bounds the time to find any difference."
      - The fraction of the cycle's copy time the sample may take, a hard cap. The sample size is estimated
        from the copy's throughput (O(verify_sample_budget) times the bytes copied, two 4 KiB reads per block),
        kept between O(verify_sample_min) and O(verify_sample_max); the blocks are compared in batches sized to
        the time left at the pace measured so far (the free-block map's reading counts), and the comparison
        stops when the time is spent. A small incremental therefore gets a small sample (its figures,
        C(blocks_compared) and C(miss_chance_5pct), are in RV(verification)). V(0) turns the sample off.
      - Blocks the snapshot's filesystem reports free are not sampled (ext2/3/4, XFS; on another filesystem every
        block is a candidate); differences in the live COW file, in the COW files the copy read and in blocks
        that change between two reads are masked, as in every verification.
      - "A difference fails the cycle (RV(step) V(verify)): the image is left resumable and is never marked good
        (the record and the image metadata say verification failed), and the next run takes a full backup."
      - Not run when a full verification runs in the same cycle (O(verify=full) or the schedule).
    type: float
    default: 0.1
  verify_sample_min:
    description:
      - Blocks the sample compares at least, whatever the time budget. The default keeps the budget a hard cap
        (one block is always compared); a higher value (such as V(512)) buys a fixed detection power per cycle
        (see O(verify_sample_budget)) at the cost of exceeding the budget on small incrementals.
    type: int
    default: 1
  verify_sample_max:
    description: Blocks the sample compares at most.
    type: int
    default: 65536
  verify_sample_seed:
    description:
      - Seed of the sample (0 to 4294967295). Default a new random seed each cycle; it is reported
        (C(seed) in RV(verification)), so passing it again draws the same blocks (when the allocated blocks and
        the change list are the same).
    type: int
  full_verify_every_cycles:
    description:
      - Run a full verification (every block of the image against the snapshot, with the masks of O(verify)) in
        every Nth incremental cycle since the last full verification or full copy. V(0) turns the count off.
      - A difference fails the cycle like a sample's (image resumable, never marked good, next run full).
    type: int
    default: 0
  full_verify_every_days:
    description:
      - Run a full verification in the first incremental cycle once the last full verification (or, failing one,
        the last full copy) is this many days old, so any divergence is found within a bounded time. V(0) turns
        the age off. The time and result of the last one are kept in the backup record and shown by the
        C(status) playbook, which flags an overdue one.
    type: float
    default: 30
  full:
    description: Take a full backup even when an incremental one is possible.
    type: bool
    default: false
  pre_hooks:
    description:
      - Commands run, in order, before the snapshot is taken (for example to freeze a database). Each is an argv
        list run without a shell, in the C locale, with C(SNAPFLEET_HOOK_PHASE) (C(pre) or C(post)),
        C(SNAPFLEET_DEVICE) and C(SNAPFLEET_IMAGE) in its environment. They run only once every parameter and
        readiness check has passed (a refused run runs no hook). A failing pre hook aborts the cycle before
        anything changes; the post hooks are run all the same.
      - With O(volumes), they are also the hooks of every consistency group, run once around the snapshots of
        its volumes (O(volumes[].group)).
    type: list
    elements: dict
    default: []
    suboptions:
      argv:
        description: The command and its arguments; the command is an absolute path.
        type: list
        elements: str
        required: true
      timeout:
        description: Seconds before the command is killed (counted as a failure).
        type: int
        default: 60
  post_hooks:
    description:
      - Commands run right after the snapshot step (whether it worked or not), for example to thaw what the
        pre hooks froze. A failing post hook is reported as a warning.
    type: list
    elements: dict
    default: []
    suboptions:
      argv:
        description: The command and its arguments; the command is an absolute path.
        type: list
        elements: str
        required: true
      timeout:
        description: Seconds before the command is killed (counted as a failure).
        type: int
        default: 60
  verify_hooks:
    description:
      - Commands run after the copy while the snapshot still exists (before the tracker goes back to
        incremental), for example an independent check of the image. Same form as O(pre_hooks); their
        environment also has C(SNAPFLEET_SNAPSHOT) (the snapshot device C(/dev/datto<minor>)),
        C(SNAPFLEET_COW_FILE) (the snapshot's live COW file, whose blocks the snapshot device shows as they are
        now), C(SNAPFLEET_PREVIOUS_COW_FILE) (the COW file the copy read, empty after a full copy) and
        C(SNAPFLEET_MODE) (V(full), V(incremental) or V(resume)).
      - A failing verify hook fails the cycle (RV(step) V(verify_hooks)); the tracker goes back to incremental and
        the next run takes a full backup.
    type: list
    elements: dict
    default: []
    suboptions:
      argv:
        description: The command and its arguments; the command is an absolute path.
        type: list
        elements: str
        required: true
      timeout:
        description: Seconds before the command is killed (counted as a failure).
        type: int
        default: 60
  persist:
    description: Keep the boot reload script of the tracker in step after each transition.
    type: bool
    default: true
  sparse:
    description:
      - How a full copy keeps the image sparse. Holes read back as zeros; they take no space on the backup storage.
      - V(filesystem) asks the snapshot's filesystem which blocks are unallocated (ext2/3/4 with C(dumpe2fs),
        XFS with C(xfs_db) and C(xfs_logprint), run read-only on the snapshot device) and neither reads nor writes
        them; all-zero blocks are not written either. The map is trusted only when the snapshot's journal or log
        is clean, as dattobd's freeze at snapshot time leaves it; otherwise, on another filesystem or when the
        tools are missing, the copy falls back to V(zeros) with a warning saying why (RV(sparse)).
      - V(zeros) reads every block and leaves only all-zero blocks as holes.
      - Verification (O(verify)) does not count differences in unallocated blocks, whose content means nothing
        to the filesystem. The files in the image are the same either way.
    type: str
    choices: [filesystem, zeros]
    default: filesystem
  after_reboot:
    description:
      - What the first backup after a reboot does about the writes the filesystem made while it was mounted at
        boot. dattobd turns a tracker reloaded at boot active only once the mount call of its filesystem has
        returned, so those writes are in no change list (measured with dattobd 0.12.1, after a clean reboot the
        ext4 journal's first blocks differed from the snapshot). A reboot is told by the boot id
        (C(/proc/sys/kernel/random/boot_id)) kept in the backup record.
      - V(metadata) also copies the regions the filesystem writes at mount, located on the snapshot device with the
        filesystem's own tools - ext2/3/4, the primary superblock and the internal journal (C(dumpe2fs), C(debugfs));
        XFS, the allocation group headers and the internal log (C(xfs_db)); on both, the inode and extent tree of
        the COW file the driver closed at shutdown and reopened at boot - that is the journal's or log's size
        once per reboot (RV(after_reboot)). When they cannot be located (another filesystem, a tool missing), the
        cycle takes a full backup instead. An external journal or log is another device and gets a warning.
      - V(full) takes a full backup as the first backup after every reboot.
      - V(none) copies only the tracked changes, as C(update-img) does; the image may then differ from the
        snapshot in those regions, and a warning says so.
      - A lost or failed tracker (unclean shutdown, a reload that did not run) is a different case; it always
        gives a full backup (RV(reason)).
    type: str
    choices: [metadata, full, none]
    default: metadata
  rebaseline:
    description:
      - How a full backup (a re-baseline, RV(reason)) writes the image.
      - V(compare) reads the snapshot and the image side by side and writes into the image, in place, only the
        4 KiB blocks that differ (RV(rebaseline)), when a good earlier image exists - the image file and its
        metadata have the volume's size, a successful cycle of it is recorded and it did not fail a verification.
        An image an interrupted copy left partly updated (a hard reset during an incremental copy) is completed
        this way too, since every block that differs is written. Restore points sharing blocks with the image through
        reflink keep sharing the unchanged ones, and a network-mounted destination receives only the difference.
        The comparison is journalled in the image metadata first; until it and its verification (O(verify), as
        for a full copy) complete, the image is partial (RV(image_state) V(resumable)), no incremental backup
        uses it, and the next run completes the comparison. After a failed verification the next run writes a
        new image. Without a good earlier image, the full backup writes a new image.
      - V(full) always writes a new image into C(<image>.partial) and renames it over the image once complete
        (the image is untouched until then), as earlier versions did.
      - Blocks the snapshot's filesystem reports unallocated (O(sparse=filesystem)) are neither read nor written
        either way; a comparison leaves the image's old content there, a new image holes.
    type: str
    choices: [compare, full]
    default: compare
  read_depth:
    description:
      - How many reads the copy of an incremental cycle keeps in flight for scattered changed blocks, as in
        M(snapfleet.dattobd.sync) (O(snapfleet.dattobd.sync#module:read_depth)). An integer from 1 to 64 (ASCII
        digits); V(1) reads one span at a time. Larger runs keep their large sequential I/O. Above V(1) the
        copy keeps the threads only while they are measured faster than one reader.
    type: int
    default: 8
  retention:
    description:
      - "Restore points kept of the image: before the cycle (once its readiness checks passed and the image's lock is
        held, before any hook), the current image is copied to C(<image>.restore-<UTC time>) (C(%Y%m%dT%H%M%SZ)),
        with its metadata beside it (C(<point>.snapfleet.json)), and the oldest restore points beyond this number
        are removed (RV(restore_point)). V(0) makes none and removes none."
      - Nothing is made or removed when there is no image yet (the first backup).
      - A restore point that cannot be made (see O(retention_method)) fails the volume before any hook runs; the
        image, the tracker and the record are untouched (RV(step) V(restore_point)).
    type: int
    default: 0
  retention_method:
    description:
      - How a restore point is made. V(reflink) clones the image (the FICLONE ioctl, as C(cp --reflink=always));
        the copy shares every block with the image and takes space only as the image changes (XFS made with
        C(reflink=1), Btrfs); the volume fails when the filesystem cannot reflink.
      - V(auto) tries a reflink and, when the filesystem cannot (EOPNOTSUPP, EXDEV, EINVAL, ENOTTY or ENOSYS),
        makes a full sparse copy instead (holes and all-zero blocks stay holes), but only when
        O(retention_full_copies) is above 0.
      - V(copy) always makes a full sparse copy (when O(retention_full_copies) is above 0).
      - Without a reflink, at most the smaller of O(retention) and O(retention_full_copies) restore points are
        kept (with O(retention_full_copies=0), every restore point of the image is removed), so that full copies
        do not fill the backup storage.
    type: str
    choices: [auto, reflink, copy]
    default: auto
  retention_full_copies:
    description: Most restore points kept per image when they are full copies (no reflink); V(0) makes no full copy.
    type: int
    default: 0
  retention_timeout:
    description:
      - Seconds a full copy of a restore point may take; a copy that takes longer is removed and fails the volume.
    type: int
    default: 21600
  check_free_space:
    description:
      - Before a full copy into a new image, require as much free space in the image directory as the volume size.
        The image is sparse, so a mostly empty volume needs less; set V(false) to skip the check.
      - A re-baseline by comparison (O(rebaseline)) needs room only for the holes of the image it may fill; it is
        refused before anything is written when they cannot fit.
    type: bool
    default: true
  state_dir:
    description:
      - Absolute path of the root-only directory of the backup records and locks (one of each per image). Created
        (0700) by the first cycle that starts.
    type: path
    default: /var/lib/snapfleet/dattobd/backups
  boot_check_path:
    description: Absolute path of the boot check file written by the systemd role.
    type: path
    default: /var/lib/snapfleet/dattobd/boot-check.json
  run_boot_id:
    description:
      - The boot id (C(/proc/sys/kernel/random/boot_id)) of the host when the run that calls this module started
        (the P(snapfleet.dattobd.backup#role) role passes it to every volume's call). When the host's boot id differs,
        it rebooted during the run (a hard reset, say), so RV(rebooted_during_run) is true and a warning says so. Nothing
        of the run's plan is reused; the minor, the COW file and the reload script are derived again from the live
        state (the minor of the device's own reload script, else a free one no script claims), and a reload script
        of another minor naming the same device is removed (one script per device).
      - Omitted, no such check is made (RV(rebooted_during_run) is null).
    type: str
  metrics:
    description:
      - Write the node_exporter textfile metrics of the cycle (success or failure) into O(metrics_dir), one file per
        image named C(snapfleet_dattobd_<record name>.prom) (the name of its backup record, see
        P(snapfleet.dattobd.backup_record_name#filter)), written atomically (a temporary file renamed over the last
        one), mode 0644.
      - A failed cycle keeps the time of the last successful one (from the backup record or the previous file)
        and sets C(snapfleet_dattobd_last_run_success) to 0. Failing to write the file is a warning, never a
        failure of the cycle.
    type: bool
    default: true
  metrics_dir:
    description:
      - Directory the node_exporter textfile collector reads (C(--collector.textfile.directory)).
      - Omitted, C(/var/lib/prometheus/node-exporter) (where Debian's C(prometheus-node-exporter) package reads
        them) is used when it exists; when it does not, no metrics are written and RV(metrics_file) is null.
      - Given, it must be an absolute path of an existing directory; otherwise the run is refused before it does
        anything (RV(step) V(parameters)).
    type: path
  ping_url:
    description:
      - A monitor's ping URL (healthchecks-style, for example C(https://hc-ping.com/<uuid>)). The call pings
        C(<url>/start) before its first cycle, then C(<url>) when every cycle succeeded or C(<url>/fail) when one
        failed, with one line per failed volume as the request body (a POST). With O(volumes), one call is one run
        with one start and one end, whatever the number of volumes.
      - Best effort, within 10 seconds a ping; a ping that fails is a warning and never fails the backup. Check mode
        and a run refused for its parameters ping nothing.
      - An C(http://) or C(https://) URL with a host, without a query or a fragment. It usually holds a secret, so
        it is not logged, and results and warnings name only its scheme and host.
    type: str
  create_dirs:
    description:
      - Make each image directory root-only before any volume acts, as a C(file) task with C(mode=0700) would.
        A missing one is created, 0700, with its missing parents (RV(created_dirs)). An existing one that is not
        0700 or not owned by root gets C(chmod 0700) and C(chown root:root) (RV(secured_dirs)). In check mode
        they are only listed, and the volumes of a missing one are planned as if it existed.
      - Only with O(volumes). A directory that cannot be made so fails the call before any volume acted.
    type: bool
    default: false
  status:
    description:
      - Also return the host's status as the fleet report reads it (RV(status)), read after the cycles. It holds
        what M(snapfleet.dattobd.info) returns and every backup record in O(state_dir). A backup run then needs no
        status task of its own. A call refused for its parameters returns it too (it only reads).
      - Only with O(volumes).
    type: bool
    default: false
  runner:
    description:
      - After the cycles, install the host-local runner C(snapfleet-dattobd) with a configuration of this call's
        O(volumes) (less O(full), which each run sets) and its other options as the defaults, exactly as
        M(snapfleet.dattobd.runner) does (O(snapfleet.dattobd.runner#module:state=absent) removes them). So the
        host's timer runs the cycle this call ran.
      - The configuration is checked before any volume acts (a volume the runner could not run refuses the call).
        Failing to write it fails the call after the cycles (RV(runner)); the backups stand.
      - Only with O(volumes).
    type: dict
    suboptions:
      state:
        description: V(present) installs or updates the runner and its configuration, V(absent) removes them.
        type: str
        choices: [present, absent]
        default: present
      path:
        description: Path of the runner (O(snapfleet.dattobd.runner#module:path)).
        type: path
        default: /usr/local/sbin/snapfleet-dattobd
      config:
        description: Path of its configuration, mode 0600 (O(snapfleet.dattobd.runner#module:config)).
        type: path
        default: /etc/snapfleet/dattobd/backup.json
      python:
        description: Interpreter of the runner's C(#!) line (O(snapfleet.dattobd.runner#module:python)); default the one running this module.
        type: path
notes:
  - A full copy is written to C(<image>.partial) and renamed over the image at the end, so the previous image stays
    usable until the new one is complete; the destination needs room for both during a rebaseline.
  - An incremental copy whose changed blocks would land in more holes of the sparse image than the backup storage
    has free space is refused before anything is written (RV(image_state) V(untouched), RV(next_run) V(resume)).
  - With O(sparse=filesystem), blocks that are unallocated in the snapshot stay holes in the image even when the
    volume holds old data there, so the image equals the snapshot device in every allocated block, not in every
    block; later incremental copies bring over every block written since, allocated or not.
seealso:
  - module: snapfleet.dattobd.snapshot
  - module: snapfleet.dattobd.sync
  - module: snapfleet.dattobd.info
  - module: snapfleet.dattobd.runner
'''

EXAMPLES = r'''
- name: Back up every volume of the host in one call, keeping 7 reflinked restore points of each image
  snapfleet.dattobd.backup:
    state_dir: /var/lib/snapfleet/dattobd/backups
    verify: changed
    retention: 7
    volumes:
      - device: /data
        image: /backup/dattobd/data.img
      - device: /dev/vdc
        image: /backup/dattobd/db.img
        name: db
        retention: 14
        pre_hooks:
          - argv: [/usr/sbin/fsfreeze, --freeze, /srv/db]
        post_hooks:
          - argv: [/usr/sbin/fsfreeze, --unfreeze, /srv/db]
  register: host_backup

- name: Snapshot the data and the write-ahead log of a database together (one consistency group)
  snapfleet.dattobd.backup:
    pre_hooks:
      - argv: [/usr/local/sbin/db-checkpoint]
    volumes:
      - device: /srv/pgdata
        image: /backup/dattobd/pgdata.img
        group: pg
      - device: /srv/pgwal
        image: /backup/dattobd/pgwal.img
        group: pg
      - device: /home
        image: /backup/dattobd/home.img
  register: grouped

- name: Show how long the group's snapshots took
  ansible.builtin.debug:
    msg: "{{ grouped.groups[0].snapshot_window_ms }} ms"

- name: Show each volume
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.msg if item.failed else item.mode }}"
  loop: "{{ host_backup.volumes }}"

- name: Back up /data into a root-only directory on the backup disk
  snapfleet.dattobd.backup:
    device: /data
    image: /backup/dattobd/data.img
    verify: changed

- name: Freeze a database around the snapshot
  snapfleet.dattobd.backup:
    device: /dev/vdb
    image: /backup/dattobd/db.img
    fallocate: 2048
    pre_hooks:
      - argv: [/usr/sbin/fsfreeze, --freeze, /srv/db]
        timeout: 30
    post_hooks:
      - argv: [/usr/sbin/fsfreeze, --unfreeze, /srv/db]
  register: backup

- name: Show the figures
  ansible.builtin.debug:
    msg: "{{ backup.mode }}: {{ backup.blocks }} blocks, {{ backup.bytes }} bytes in {{ backup.seconds }} s"
'''

RETURN = r'''
volumes:
  description:
    - With O(volumes), one entry per volume in the order given, each holding exactly what the single-volume form
      returns for that volume (success or failure, every key documented here, C(msg) and C(hint) included on a
      failure), plus C(name) (O(name), default the image file name), C(device), C(image), C(volume) (its index in
      O(volumes)), C(failed) and C(changed), and C(group) for a volume of a consistency group (O(volumes[].group)).
    - The top level then holds RV(volumes), C(changed) (a volume changed something), C(failed) (a volume failed)
      and C(msg) (how many were backed up, and each failed one with its step and message); each volume's warnings
      are the call's warnings, prefixed with its name. The other keys described here are per volume, in the
      entries.
    - A call refused for a parameter of an element (RV(step) V(parameters)) has no RV(volumes); its C(msg) names
      the element (C(volumes[1] (db))) and C(volume) its index.
  returned: when O(volumes) is given and every element was valid
  type: list
  elements: dict
  sample: [{"name": "data", "device": "/data", "image": "/backup/data.img", "volume": 0, "failed": false,
            "changed": true, "mode": "incremental", "blocks": 177, "next_run": "incremental"}]
groups:
  description:
    - With O(volumes) and at least one consistency group (O(volumes[].group)), one entry per group in the order
      they ran. C(name), C(volumes) (the names of its volumes), C(snapshot_window_ms) (from the start of the first
      transition to snapshot to the end of the last one, in milliseconds; null when the group failed before they
      were all taken), C(failed) (the group failed before the copies) and C(msg) (why, or the window).
    - In check mode, C(planned=true), C(pre_hooks) and C(post_hooks) (the argv lists run once for the group).
  returned: when O(volumes) has an element with O(volumes[].group)
  type: list
  elements: dict
  sample: [{"name": "pg", "volumes": ["pgdata.img", "pgwal.img"], "snapshot_window_ms": 41.2, "failed": false,
            "msg": "The snapshots of pgdata.img, pgwal.img were taken within 41.2 ms."}]
restore_point:
  description:
    - The restore point made before the cycle (O(retention)), null when O(retention=0). C(path) (null when none
      was made), C(made), C(method) (V(reflink), V(copy) or null), C(metadata) (the metadata copy, or null),
      C(seconds), C(pruned) (restore points removed, oldest beyond the ones kept), C(keep) (how many are kept),
      C(retention), C(retention_full_copies) and C(note) (why none was made).
    - In check mode the plan, with C(planned=true); with O(retention_method=auto), C(method) V(reflink) and
      C(pruned) as a reflink copy prunes, C(pruned_without_reflink) what is pruned where the filesystem cannot reflink.
  returned: success, and on a failure once the cycle's readiness checks passed
  type: dict
  sample: {"path": "/backup/data.img.restore-20261205T180000Z", "made": true, "method": "reflink",
           "metadata": "/backup/data.img.restore-20261205T180000Z.snapfleet.json", "seconds": 0.02,
           "pruned": ["/backup/data.img.restore-20261201T180000Z"], "keep": 3, "retention": 3,
           "retention_full_copies": 0, "note": null}
mode:
  description: The kind of cycle run (or planned in check mode).
  returned: always
  type: str
  sample: incremental
reason:
  description:
    - "Why this mode was chosen (also in the backup record and the fleet report). A full backup always has one
      of these stable reasons: V(first backup), V(requested) (O(full=true)), V(the image has no snapfleet metadata),
      V(the image failed verification), V(a verify hook failed), V(unclean shutdown: tracker lost at boot)
      (the boot check found the tracker missing, or failed with EINVAL), V(the tracker failed at boot),
      V(the driver did not see the mount at boot), V(late reload), V(driver wedged), V(the COW file was damaged),
      V(the tracker failed), V(the tracker had failed and was set up again), V(tracker lost at boot),
      V(tracker lost), V(the tracker belongs to a new snapshot series), V(the chain of COW files is broken),
      V(first backup since a reboot (after_reboot=full)),
      V(first backup since a reboot, and the writes at mount cannot be located),
      V(the last run failed in a way that needs a full backup) (a record of an older version)."
    - Null on a failure before the mode was decided (a wedged driver).
  returned: always
  type: str
  sample: tracker and image are in step
reason_detail:
  description: What the RV(reason) is based on (the boot check's sentence, the seq_ids of a broken chain...), or null.
  returned: always
  type: str
  sample: "minor 0 (/dev/disk/by-uuid/...): no tracker: its reload script failed in the initramfs (status 1)."
next_full_reason:
  description:
    - On a failure after which the next run is full (RV(next_run=full)), why (one of the reasons of RV(reason),
      for example V(driver wedged) or V(the COW file was damaged)); the next run reports it as its RV(reason).
    - Null when the next run is not full.
  returned: failure
  type: str
  sample: driver wedged
driver_wedged:
  description:
    - When the dattobd driver is wedged (a driver call timed out in this run or earlier in this boot), the
      marker C(since), C(reason), C(boot_id), C(call) and C(path) (the marker file under
      C(/run/snapfleet-dattobd), or null when it could not be written). The cycle then fails at once, at step
      C(driver), with no hook run and no driver call made, and the next run is full
      (RV(next_full_reason=driver wedged)).
    - Only a hard reset clears it; see docs/troubleshooting.md.
  returned: failure, when the driver is wedged
  type: dict
  sample: {"since": "2026-12-05T10:15:02Z", "reason": "dbdctl transition-to-snapshot did not finish within 60 seconds",
           "boot_id": "6f1c...", "call": "dbdctl transition-to-snapshot",
           "path": "/run/snapfleet-dattobd/driver-wedged.json"}
actions:
  description: The exact commands run (or planned) and the non-command steps, in order.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/dbdctl transition-to-snapshot -f 25 /data/.datto_0_3 0", "remove /data/.datto_0_2"]
hooks:
  description: The hooks run, with C(phase), C(argv), C(rc), C(stdout), C(stderr) (clipped) and C(seconds).
  returned: always
  type: list
  elements: dict
blocks:
  description: Changed blocks copied (incremental) or blocks of the volume read (full; unallocated ones skipped).
  returned: success
  type: int
  sample: 177
bytes:
  description:
    - Bytes written into the image (a full copy leaves all-zero blocks as holes, unwritten; a re-baseline by
      comparison writes only the blocks that differ, RV(rebaseline)).
  returned: success
  type: int
  sample: 724992
read_bytes:
  description: Bytes read from the snapshot device (the whole volume for a full copy).
  returned: success
  type: int
  sample: 917504
sparse:
  description:
    - How the full copy kept the image sparse. C(method) is V(filesystem) or V(zeros); C(fstype) V(ext), V(xfs) or
      null; C(unallocated_blocks) the blocks skipped as unallocated (V(filesystem)); C(zero_blocks) the all-zero
      blocks left as holes; C(note) why the filesystem's map was not used.
  returned: after a full copy
  type: dict
  sample: {"method": "filesystem", "fstype": "ext", "unallocated_blocks": 240318, "zero_blocks": 3006}
rebaseline:
  description:
    - How the full backup wrote the image (null for the other modes; also in the backup record and the fleet
      report). C(method) is V(compare) (only the blocks that differ from the earlier image were written) or
      V(full) (a new image), C(why) the sentence behind that choice, C(blocks_read) the blocks of the volume
      read, C(blocks_differing) those that differed from the image (null for V(full)) and C(bytes_written) the
      bytes written into the image.
    - In check mode, C(method) and C(why) of the planned full backup.
  returned: always
  type: dict
  sample: {"method": "compare", "why": "the image holds seq_id 41 of a successful cycle", "blocks_read": 2621440,
           "blocks_differing": 5120, "bytes_written": 20971520}
after_reboot:
  description:
    - Set on the first backup since a reboot, else null. C(policy) is O(after_reboot); with V(metadata),
      C(fstype), C(known), C(blocks) (the blocks added to the copy), C(parts) (blocks per region, C(superblock),
      C(journal) or C(log), C(cow file)) and C(note) (why they could not be located, or that the journal or log is external).
  returned: success
  type: dict
  sample: {"policy": "metadata", "fstype": "ext", "known": true, "blocks": 4097, "parts": {"superblock": 1, "journal": 4096}, "note": null}
seconds:
  description: Seconds spent copying.
  returned: success
  type: float
  sample: 0.41
mb_per_s:
  description:
    - Copy throughput in MiB/s. Full copy, of the volume read (RV(read_bytes)); incremental, of the changed
      blocks written (RV(bytes)).
  returned: success
  type: float
  sample: 1.69
cycle_seconds:
  description:
    - Seconds of the whole cycle.
    - When the cycle failed or was refused, the seconds the call took until then (on a wedged driver, about one
      O(timeout) for the call that found it and none for the calls after it).
  returned: always
  type: float
verified:
  description: Whether the copied blocks were verified against the snapshot.
  returned: success
  type: bool
verification:
  description:
    - What the cycle verified beyond the change list (null when the cycle stopped before the copy).
    - C(sample) (null when none ran) has C(seed), C(sample_size) (blocks drawn), C(blocks_compared),
      C(candidate_blocks) (allocated blocks outside the change list), C(change_list_blocks), C(allocation)
      (V(filesystem), or every block and why), C(mismatches), C(mismatched_blocks) (first 100),
      C(unstable_blocks), C(masked_blocks), C(seconds) (the free-block map and the comparison),
      C(setup_seconds) (the free-block map and the draw alone), C(budget_seconds), C(miss_chance_5pct) and
      C(miss_chance_1pct) (bounds of the chance that a lost section of 5 % or 1 % of the candidates escaped),
      C(result) (V(ok) or V(failed)).
    - C(full) (null when none ran) has C(trigger) (why it ran), C(result), C(mismatches), C(seconds), C(time).
    - C(full_verify_due) and C(full_verify_reason) say what the schedule asked for.
    - In check mode, C(sample) and C(full) hold C(planned=true) when they would run.
  returned: always
  type: dict
  sample: {"sample": {"seed": 3141592653, "sample_size": 4096, "blocks_compared": 4096, "mismatches": 0,
           "seconds": 0.42, "budget_seconds": 0.5, "result": "ok"}, "full": null, "full_verify_due": false,
           "full_verify_reason": "next full verification in 12.5 day(s)"}
image:
  description: The image path.
  returned: always
  type: str
image_state:
  description: V(complete), V(untouched) (a failure changed nothing in the image) or V(resumable) (partly updated, journalled).
  returned: always
  type: str
  sample: complete
next_run:
  description: What the next run will do, V(incremental), V(resume) or V(full).
  returned: always, except for a run refused before its mode was decided
  type: str
  sample: incremental
step:
  description:
    - On failure, the step that failed (C(parameters), C(record), C(lock), C(driver) (the driver is wedged),
      C(destination), C(restore_point) (O(retention)), C(pre_hooks), C(interrupted), C(snapshot), C(copy),
      C(verify) (the sample or the full verification found a difference), C(verify_hooks), C(incremental),
      C(group) (another volume of its consistency group failed, O(volumes[].group))).
    - C(parameters), C(record), C(destination), and C(snapshot) before the hooks ran, refuse the run before it
      starts; nothing was written then (no record, no lock) and RV(record) is null.
  returned: failure
  type: str
holders:
  description:
    - On failure because C(/dev/datto<minor>) was busy (EBUSY) at a transition, what held it open and the command
      that releases each (see M(snapfleet.dattobd.snapshot) RV(snapfleet.dattobd.snapshot#module:holders) and
      O(snapfleet.dattobd.snapshot#module:release_holders)).
  returned: failure, when the snapshot device was busy
  type: list
  elements: dict
minor:
  description: Minor number of the tracker.
  returned: success
  type: int
uuid:
  description: Snapshot series of the tracker and the image.
  returned: success
  type: str
seq_id:
  description: Sequence number of the snapshot the image now holds.
  returned: success
  type: int
rebooted_during_run:
  description:
    - True when the host's boot id differs from O(run_boot_id) (it rebooted since the run started), false when it
      is the same, null when O(run_boot_id) was not given. Also in a failure's result.
  returned: always
  type: bool
  sample: false
removed_cow_files:
  description:
    - COW files removed by this cycle, after they were consumed, and the ones of RV(leftover_cow_files).
    - In check mode, the COW files that would be removed (the consumed ones, then RV(leftover_cow_files)).
  returned: success
  type: list
  elements: str
leftover_cow_files:
  description:
    - COW files earlier trackers of the volume left behind (a re-baseline, a destroy, a hard reset), removed
      after the cycle succeeded (in check mode, listed only). Only regular files on the volume's filesystem
      (its root and O(cow_dir)) named like this collection's COW files (O(cow_name), any minor and seq) that
      no live tracker (C(/proc/datto-info)) uses, no boot reload script names and no backup record still lists
      as pending; one that cannot be removed is a warning.
  returned: success
  type: list
  elements: str
  sample: ["/data/.datto_0_4"]
record:
  description: Path of the backup record of this image (null when the run was refused before it started).
  returned: success
  type: str
tracker:
  description: The tracker at the end of the cycle, back in incremental mode (as M(snapfleet.dattobd.info) shows it).
  returned: success
  type: dict
ping:
  description:
    - With O(ping_url), what was sent. C(urls) lists the monitor URLs with their paths left out. C(sent) lists the
      pings that reached the monitor (C(start), then C(success) or C(fail)). C(warnings) lists the pings that failed
      and why; they are also among the task's warnings.
  returned: when O(ping_url) is set, except in check mode and for a run refused for its parameters
  type: dict
  sample: {"urls": ["https://hc-ping.com/..."], "sent": ["start https://hc-ping.com/...", "success https://hc-ping.com/..."],
           "warnings": []}
metrics_file:
  description:
    - Path of the node_exporter metrics file this cycle wrote (in check mode, the one it would write), or null
      when none was written (O(metrics=false), the default O(metrics_dir) missing, or a write that failed, which a
      warning explains).
  returned: always, except for a run refused for its parameters or because another cycle of the image was running
  type: str
  sample: /var/lib/prometheus/node-exporter/snapfleet_dattobd_backup_data.img-3f5a....prom
created_dirs:
  description: With O(volumes), the image directories O(create_dirs) created (in check mode, would create).
  returned: with O(volumes), unless the call was refused for its parameters
  type: list
  elements: str
  sample: ["/backup/dattobd"]
secured_dirs:
  description:
    - With O(volumes), the existing image directories O(create_dirs) made root-only (0700, owned by root); in check
      mode, would make so.
  returned: with O(volumes), unless the call was refused for its parameters
  type: list
  elements: str
  sample: ["/backup"]
status:
  description:
    - With O(status), the host's status read after the cycles, as the fleet report reads it
      (P(snapfleet.dattobd.fleet_report#filter)).
  returned: with O(volumes) and O(status)
  type: dict
  contains:
    info:
      description: What M(snapfleet.dattobd.info) returns (with its defaults and this call's O(timeout)), or null when reading it failed.
      type: dict
    records:
      description: Every backup record in O(state_dir) (each a JSON object; files that are not are left out).
      type: list
      elements: dict
    failed:
      description: Reading the driver's state failed (RV(status.msg) says why); the records are still read.
      type: bool
    wedged:
      description: It failed because a driver call timed out (a wedged driver).
      type: bool
    msg:
      description: Why reading the driver's state failed, or empty.
      type: str
runner:
  description:
    - With O(runner), what installing (or removing) the host-local runner did, as M(snapfleet.dattobd.runner)
      returns it (its C(diff) goes into the task's diff). C(failed) and C(msg) when writing it failed.
  returned: with O(volumes) and O(runner), unless the call was refused for its parameters
  type: dict
  sample: {"changed": false, "actions": [], "path": "/usr/local/sbin/snapfleet-dattobd",
           "config": "/etc/snapfleet/dattobd/backup.json", "sha256": "3f5a...", "volumes": ["data", "db"]}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as backup_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hostrun
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import moduleapi


def main(ops_factory=None, status_host=None):
    moduleapi.run(AnsibleModule, hostrun.argument_spec(),
                  lambda module: hostrun.module_runner(module, ops_factory, status_host=status_host),
                  backup_lib.UNEXPECTED, warn=True, supports_check_mode=True, **backup_lib.ARGUMENT_RULES)


if __name__ == '__main__':
    main()
