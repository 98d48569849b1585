# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The decisions of a backup cycle, as pure functions: the one place each is made.

The cycle (backup.py) calls them twice, with the same inputs: in check mode to report the plan,
in a real run to execute it. So check mode cannot drift from what a run does.

* :func:`decide_mode`: the mode before the snapshot (record, image metadata, boot check, ``full``);
* :func:`copy_mode`: the mode once the snapshot is taken (a rebaselined tracker, a new snapshot
  series, a broken COW file chain, an image already holding the snapshot);
* :func:`after_reboot_step`: what the first cycle after a reboot does about the writes a filesystem
  makes while it mounts (the ``after_reboot`` policy);
* :func:`cycle_steps`: the steps once the snapshot is taken, in order (the list check mode reports
  and a real run executes), and :func:`copy_kind`: how the copy step copies;
* :func:`rebaseline_method`: how a full backup is written: by comparison with a good earlier image
  (``compare``: only the blocks that differ) or as a new image (``full``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

from . import image as image_mod
from .backup_record import record_name
from .boot_state import boot_full_entry

PARTIAL_SUFFIX = '.partial'

# Why a backup is full: stable texts, the same in the module result (``reason``), the backup record
# (``reason``, and ``next_full_reason`` while the next run is full), the role's per-volume line and
# the fleet report. Details (which seq_ids, the boot check's sentence...) go to ``reason_detail``.
# tests/unit/plugins/module_utils/test_backup_reasons.py runs every path that ends in a full copy.
FIRST_BACKUP = 'first backup'
REQUESTED = 'requested'
NO_METADATA = 'the image has no snapfleet metadata'
VERIFY_FAILED = 'the image failed verification'
VERIFY_HOOK_FAILED = 'a verify hook failed'
UNCLEAN_SHUTDOWN = 'unclean shutdown: tracker lost at boot'
FAILED_AT_BOOT = 'the tracker failed at boot'
MOUNT_NOT_SEEN = 'the driver did not see the mount at boot'
LATE_RELOAD = 'late reload'
DRIVER_WEDGED = 'driver wedged'
COW_DAMAGED = 'the COW file was damaged'
TRACKER_FAILED = 'the tracker failed'
REBASELINED = 'the tracker had failed and was set up again'
REBASELINE_PLANNED = 'the tracker had failed and would be set up again'
LOST_AT_BOOT = 'tracker lost at boot'
TRACKER_LOST = 'tracker lost'
NEW_SERIES = 'the tracker belongs to a new snapshot series'
CHAIN_BROKEN = 'the chain of COW files is broken'
AFTER_REBOOT_FULL = 'first backup since a reboot (after_reboot=full)'
MOUNT_WRITES_UNKNOWN = 'first backup since a reboot, and the writes at mount cannot be located'
# the warning of the first cycle after a reboot with after_reboot=none (the run and check mode give it)
AFTER_REBOOT_NONE_WARNING = ('First backup since a reboot with after_reboot=none: the blocks the filesystem wrote while it '
                             'was mounted at boot are not copied; the image may differ there.')
LAST_RUN_FAILED = 'the last run failed in a way that needs a full backup'
FULL_REASONS = (FIRST_BACKUP, REQUESTED, NO_METADATA, VERIFY_FAILED, VERIFY_HOOK_FAILED, UNCLEAN_SHUTDOWN,
                FAILED_AT_BOOT, MOUNT_NOT_SEEN, LATE_RELOAD, DRIVER_WEDGED, COW_DAMAGED, TRACKER_FAILED, REBASELINED,
                REBASELINE_PLANNED, LOST_AT_BOOT, TRACKER_LOST, NEW_SERIES, CHAIN_BROKEN, AFTER_REBOOT_FULL,
                MOUNT_WRITES_UNKNOWN, LAST_RUN_FAILED)
# The boot check's verdicts (docs/boot.md) -> the reason of the full backup they ask for.
BOOT_REASONS = {'missing': UNCLEAN_SHUTDOWN, 'late': LATE_RELOAD, 'unverified': MOUNT_NOT_SEEN}


# How a full backup (a re-baseline) writes the image: the ``rebaseline`` option and the result's ``rebaseline.method``.
COMPARE = 'compare'
FULL_COPY = 'full'
REBASELINE_METHODS = (COMPARE, FULL_COPY)


class Why(str):
    """A reason (one of :data:`FULL_REASONS`, or the reason of an incremental) with its ``detail`` (or None)."""

    def __new__(cls, text, detail=None):
        out = str.__new__(cls, text)
        out.detail = detail
        return out


def detail_of(reason):
    return getattr(reason, 'detail', None)


def boot_reason(entry):
    """The reason of the full backup a boot check verdict asks for (``boot_state.boot_full_entry``)."""
    status = entry.get('status')
    if status == 'failed':
        # EINVAL at reload: the COW file was not left clean (unclean shutdown, power loss)
        text = UNCLEAN_SHUTDOWN if entry.get('error_name') in (None, 'EINVAL') else FAILED_AT_BOOT
    else:
        text = BOOT_REASONS.get(status, UNCLEAN_SHUTDOWN)
    return Why(text, entry.get('message') or 'the boot check found the tracker lost (reboot without clean reload)')


def decide_mode(full, record, meta, image_exists, boot, boot_mtime, names, minor):
    """``(mode, reason)`` before the snapshot: ``full``, ``resume`` or ``incremental``.

    ``full``: the ``full`` option; ``boot``/``boot_mtime``: the boot check and its time;
    ``names``: the names of the device; ``minor``: its tracker's minor (or None). A full mode's
    reason is one of :data:`FULL_REASONS` (a :class:`Why`, with its detail).
    """
    if full:
        return 'full', Why(REQUESTED, 'full: true')
    if not image_exists:
        return 'full', Why(FIRST_BACKUP, 'no image yet')
    if meta is None:
        return 'full', Why(NO_METADATA)
    if meta.get('verify_failed'):
        return 'full', Why(VERIFY_FAILED, meta.get('verify_failed') if isinstance(meta.get('verify_failed'), str)
                           else None)
    if record and record.get('next_run') == 'full':
        why = record.get('next_full_reason')
        if why in FULL_REASONS:
            return 'full', Why(why, record.get('next_full_reason_detail') or record.get('msg'))
        return 'full', Why(LAST_RUN_FAILED, record.get('msg'))
    last_full = (record or {}).get('last_full_epoch') or 0
    entry = boot_full_entry(boot, names, minor)
    if entry is not None and (boot_mtime or 0) > last_full:
        return 'full', boot_reason(entry)
    journal = image_mod.rebaseline_pending(meta)
    if journal is not None:  # a re-baseline by comparison did not finish (its record was not written)
        why = journal.get('reason')
        return 'full', Why(why if why in FULL_REASONS else LAST_RUN_FAILED, 'an interrupted re-baseline by comparison')
    if (record or {}).get('pending_cow_files') or meta.get('pending'):
        return 'resume', Why('an earlier cycle did not complete')
    return 'incremental', Why('tracker and image are in step')


def copy_mode(mode, reason, rebaseline, meta, uuid, seq, pending, lost=None):
    """``(mode, reason, pending)`` once the snapshot is taken.

    ``rebaseline``: the tracker was set up again; ``uuid``/``seq``: the snapshot's series and
    sequence number; ``pending``: the COW files to copy (``{'path', 'seq_id'}``, oldest first);
    ``lost``: the snapshot step set up a new tracker because none was there (``'boot'`` after a
    reboot, ``'run'`` without one, None when it found one or cannot tell).
    An image that already holds this snapshot has nothing pending.
    """
    if rebaseline:
        return 'full', Why(REBASELINED), pending
    if mode == 'full':
        return mode, reason, pending
    if meta is None or uuid is None or meta.get('uuid') != uuid:
        if lost == 'boot':
            return 'full', Why(LOST_AT_BOOT, 'no tracker after the reboot: set up again, a new snapshot series'), \
                pending
        if lost == 'run':
            return 'full', Why(TRACKER_LOST, 'no tracker on the volume (destroyed, or the driver was reloaded): set '
                                             'up again, a new snapshot series'), pending
        return 'full', Why(NEW_SERIES, 'image uuid %s, tracker uuid %s' % ((meta or {}).get('uuid'), uuid)), pending
    if seq == meta.get('seq_id') and not meta.get('pending'):
        return 'incremental', Why('the image already holds this snapshot'), []
    chain = [e.get('seq_id') for e in pending]
    want = list(range(meta.get('seq_id'), seq)) if isinstance(seq, int) else None
    if chain != want:
        return 'full', Why(CHAIN_BROKEN, 'have seq %s, need %s' % (chain, want)), pending
    if len(pending) > 1 or meta.get('pending'):
        return 'resume', reason, pending
    return 'incremental', reason, pending


def planned_copy_mode(mode, reason, rebaseline, meta):
    """:func:`copy_mode` as check mode can know it, before the snapshot: a rebaseline or a missing
    image metadata make the copy full (the series and the chain are known after the snapshot only)."""
    if rebaseline:
        return 'full', Why(REBASELINE_PLANNED)
    if meta is None:
        return 'full', reason
    return mode, reason


def rebaseline_method(option, record, meta, image_size, size):
    """``(method, why)``: how a full backup writes the image, ``compare`` or ``full`` (a new image).

    ``option``: the ``rebaseline`` option; ``record``: the backup record as loaded; ``meta``: the
    image metadata; ``image_size``: the image file's size (None: no image); ``size``: the volume's.
    A comparison needs an earlier image of this volume: metadata of this size, no failed
    verification, a successful cycle recorded. An image that an interrupted copy left partly
    updated (an incremental copy cut by a crash or a hard reset, a failed sync, an interrupted
    comparison) is such a base: the comparison reads every block of the snapshot and writes each
    one that differs, whatever the image holds, and the result is verified as a full copy is.
    """
    if option == FULL_COPY:
        return FULL_COPY, 'rebaseline=full'
    record = record or {}
    why = _no_good_image(record, meta, image_size, size)
    if why:
        return FULL_COPY, why
    if image_mod.rebaseline_pending(meta):
        return COMPARE, 'completes the interrupted comparison with the image (seq_id %s before it)' % meta.get('seq_id')
    pending = meta.get('pending')  # metadata exists: _no_good_image said so
    if isinstance(pending, dict):
        return COMPARE, ('completes the interrupted incremental copy (seq_id %s -> %s) by comparison with the image'
                         % (pending.get('seq_id_from', meta.get('seq_id')), pending.get('seq_id_to')))
    if record.get('image_state') == 'resumable':
        return COMPARE, 'the last run left the image partly updated (seq_id %s): the comparison completes it' % meta.get('seq_id')
    return COMPARE, 'the image holds seq_id %s of a successful cycle' % meta.get('seq_id')


def _no_good_image(record, meta, image_size, size):
    """Why the image is no good base for a comparison (a sentence), or None when it is one."""
    if image_size is None:
        return 'no image yet'
    if meta is None:
        return NO_METADATA
    if meta.get('verify_failed'):
        return VERIFY_FAILED
    if not size or image_size != size or meta.get('size') != size:
        return 'the image is %s bytes (recorded: %s), the volume %s bytes' % (image_size, meta.get('size'), size)
    if not record.get('last_success'):
        return 'no successful cycle of this image is recorded'
    return None


def after_reboot_step(rebooted, mode, policy, cow_files):
    """What the cycle does about a reboot since the last one: None (nothing due), or the policy:

    ``metadata`` (copy the blocks the filesystem writes while it mounts, located on the snapshot),
    ``full`` (take a full backup instead) or ``none`` (copy only the tracked changes, and warn).
    Nothing is due for a full copy or when no COW file is copied.
    """
    if not rebooted or mode == 'full' or not cow_files:
        return None
    return policy


# The steps of a cycle once its snapshot is taken (cycle_steps).
AFTER_REBOOT = 'after_reboot'
COPY = 'copy'
VERIFY = 'verify'
VERIFY_HOOKS = 'verify_hooks'
COMPLETE = 'complete'


def cycle_steps(rebooted, mode, policy, cow_files, verify_hooks):
    """The steps of a cycle once its snapshot is taken, in order: the one list that check mode reports
    (:meth:`CheckModePlan._plan`) and a real run executes (``backup_cycle.Cycle._run``).

    ``after_reboot`` when :func:`after_reboot_step` says one is due; ``copy`` (how: :func:`copy_kind`,
    asked when the step runs, because the after-reboot step can turn the cycle into a full one);
    ``verify``; ``verify_hooks`` when there are any; ``complete`` (the record of the complete image, back
    to incremental, the consumed COW files and leftovers removed, the record written).
    ``cow_files``: the COW files the copy reads (the journalled ones and the previous one).
    """
    steps = [AFTER_REBOOT] if after_reboot_step(rebooted, mode, policy, cow_files) else []
    steps += [COPY, VERIFY]
    if verify_hooks:
        steps.append(VERIFY_HOOKS)
    steps.append(COMPLETE)
    return steps


def copy_kind(mode, cow_files):
    """How the copy step copies: ``rebaseline`` (a full backup, :func:`rebaseline_method`), ``nothing`` (no COW
    file: the image already holds the snapshot), ``sync`` (the one COW file of an incremental cycle) or
    ``union`` (the union of several COW files' blocks, or the completion of a journalled copy: resume)."""
    if mode == 'full':
        return 'rebaseline'
    if not cow_files:
        return 'nothing'
    if mode == 'resume' or len(cow_files) > 1:
        return 'union'
    return 'sync'


class CheckModePlan(object):
    """Check mode of :class:`backup_cycle.Cycle` (a mixin): the steps a run would take, from the decisions above."""

    def _plan(self, pre, post, snap):
        """Check mode: what the cycle would run, in order (``snap``: the snapshot step planned by :meth:`_ready`)."""
        p = self.p
        meta = self.meta
        for hook in pre:
            self.actions.append(shlex.join(hook['argv']))
        self.actions.extend(snap.get('actions') or [])
        self.warnings.extend(snap.get('warnings') or [])
        for hook in post:
            self.actions.append(shlex.join(hook['argv']))
        minor = snap.get('minor')
        snapshot = self.ops.snapshot_device(minor) if minor is not None else '/dev/datto<minor>'
        self.mode, self.reason = planned_copy_mode(self.mode, self.reason, snap.get('rebaseline_required'), meta)
        image = p['image']
        pending = [e.get('path') for e in self.loaded_record.get('pending_cow_files') or [] if isinstance(e, dict)]
        previous = snap.get('previous_cow_file')
        cow_files = pending + ([previous] if previous else [])
        for step in cycle_steps(self.rebooted, self.mode, p['after_reboot'], cow_files, self.hook_args[2]):
            if step == AFTER_REBOOT:
                self._plan_after_reboot(snapshot)
            elif step == COPY:
                self._plan_copy(snapshot, cow_files, previous)
            elif step == VERIFY:
                self.verification = self._plan_verify(cow_files, snapshot)
            elif step == VERIFY_HOOKS:
                self.actions.extend('%s (verify hook, while the snapshot exists)' % shlex.join(hook['argv'])
                                    for hook in self.hook_args[2])
            else:  # COMPLETE
                self._plan_complete(snap, cow_files)
        record_path = os.path.join(p['state_dir'], record_name(image))
        return dict(changed=True, mode=self.mode, reason=str(self.reason) if self.reason else None,
                    reason_detail=detail_of(self.reason), actions=self.actions, hooks=[],
                    image=image, image_state='untouched', next_run=self.mode, minor=minor,
                    leftover_cow_files=self.leftovers,
                    removed_cow_files=cow_files + list(self.leftovers),
                    warnings=self.warnings, diff=snap.get('diff'), verification=self.verification,
                    rebaseline=self.rebaseline if self.mode == 'full' else None)

    def _plan_after_reboot(self, snapshot):
        """The after-reboot step as :meth:`backup_reboot.AfterReboot._after_reboot` runs it, without reading the
        snapshot (the regions are located when the run has it)."""
        policy = self.p['after_reboot']
        if policy == 'full':
            self.mode, self.reason = 'full', Why(AFTER_REBOOT_FULL)
        elif policy == 'metadata':
            self.actions.append('locate the blocks the filesystem writes while it is mounted (superblock, journal '
                                'or log) on %s: first backup since a reboot' % snapshot)
        else:
            self.warnings.append(AFTER_REBOOT_NONE_WARNING)

    def _plan_copy(self, snapshot, cow_files, previous):
        """The copy step (:func:`copy_kind`) as the run takes it."""
        kind = copy_kind(self.mode, cow_files)
        if kind == 'rebaseline':
            self.actions.extend(self._plan_rebaseline(snapshot))  # backup_rebaseline.py: by the run's method
        elif kind == 'union':
            self.actions.append('copy the union of the blocks listed by %s from %s into %s'
                                % (', '.join(cow_files), snapshot, self.p['image']))
        elif kind == 'sync':
            self.actions.append('copy the blocks listed by %s from %s into %s (verify: %s)'
                                % (previous or cow_files[-1], snapshot, self.p['image'], self.p['verify']))

    def _plan_complete(self, snap, cow_files):
        """The complete step: back to incremental, the consumed COW files and leftovers removed, the record."""
        p = self.p
        self.actions.append('transition tracker on %s back to incremental' % p['device'])
        for path in cow_files:
            self.actions.append('remove %s' % path)
        self.leftovers = self._find_leftovers(self._leftover_keep(snap, snap.get('tracker') or {}, cow_files))
        for path in self.leftovers:
            self.actions.append('remove %s (left behind by an earlier tracker of this volume)' % path)
        record_path = os.path.join(p['state_dir'], record_name(p['image']))
        if self.legacy_record:
            self.actions.append('move the backup record %s to %s' % (self.legacy_record, record_path))
        self.actions.append('write %s' % record_path)
