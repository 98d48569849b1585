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
  makes while it mounts (the ``after_reboot`` policy).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

from . import image as image_mod
from .backup_record import record_name
from .boot_state import boot_requires_full

PARTIAL_SUFFIX = '.partial'

REBASELINED = 'the tracker had failed and was set up again'
REBASELINE_PLANNED = 'the tracker had failed and would be set up again'
AFTER_REBOOT_FULL = 'first backup since a reboot (after_reboot=full)'


def decide_mode(full, record, meta, image_exists, boot, boot_mtime, names, minor):
    """``(mode, reason)`` before the snapshot: ``full``, ``resume`` or ``incremental``.

    ``full``: the ``full`` option; ``boot``/``boot_mtime``: the boot check and its time;
    ``names``: the names of the device; ``minor``: its tracker's minor (or None).
    """
    if full:
        return 'full', 'full backup requested'
    if not image_exists:
        return 'full', 'no image yet'
    if meta is None:
        return 'full', 'the image has no snapfleet metadata'
    if meta.get('verify_failed'):
        return 'full', 'the image failed verification'
    if record and record.get('next_run') == 'full':
        return 'full', 'the last run failed in a way that needs a full backup'
    last_full = (record or {}).get('last_full_epoch') or 0
    if boot_requires_full(boot, names, minor) and (boot_mtime or 0) > last_full:
        return 'full', 'the boot check found the tracker lost (reboot without clean reload)'
    if (record or {}).get('pending_cow_files') or meta.get('pending'):
        return 'resume', 'an earlier cycle did not complete'
    return 'incremental', 'tracker and image are in step'


def copy_mode(mode, reason, rebaseline, meta, uuid, seq, pending):
    """``(mode, reason, pending)`` once the snapshot is taken.

    ``rebaseline``: the tracker was set up again; ``uuid``/``seq``: the snapshot's series and
    sequence number; ``pending``: the COW files to copy (``{'path', 'seq_id'}``, oldest first).
    An image that already holds this snapshot has nothing pending.
    """
    if rebaseline:
        return 'full', REBASELINED, pending
    if mode == 'full':
        return mode, reason, pending
    if meta is None or uuid is None or meta.get('uuid') != uuid:
        return 'full', 'the tracker belongs to a new snapshot series', pending
    if seq == meta.get('seq_id') and not meta.get('pending'):
        return 'incremental', 'the image already holds this snapshot', []
    chain = [e.get('seq_id') for e in pending]
    want = list(range(meta.get('seq_id'), seq)) if isinstance(seq, int) else None
    if chain != want:
        return 'full', 'the chain of COW files is broken (have seq %s, need %s)' % (chain, want), pending
    if len(pending) > 1 or meta.get('pending'):
        return 'resume', reason, pending
    return 'incremental', reason, pending


def planned_copy_mode(mode, reason, rebaseline, meta):
    """:func:`copy_mode` as check mode can know it, before the snapshot: a rebaseline or a missing
    image metadata make the copy full (the series and the chain are known after the snapshot only)."""
    if rebaseline:
        return 'full', REBASELINE_PLANNED
    if meta is None:
        return 'full', reason
    return mode, reason


def after_reboot_step(rebooted, mode, policy, cow_files):
    """What the cycle does about a reboot since the last one: None (nothing due), or the policy:

    ``metadata`` (copy the blocks the filesystem writes while it mounts, located on the snapshot),
    ``full`` (take a full backup instead) or ``none`` (copy only the tracked changes, and warn).
    Nothing is due for a full copy or when no COW file is copied.
    """
    if not rebooted or mode == 'full' or not cow_files:
        return None
    return policy


class CheckModePlan(object):
    """Check mode of :class:`backup.Cycle` (a mixin): the steps a run would take, from the decisions above."""

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
        step = after_reboot_step(self.rebooted, self.mode, p['after_reboot'],
                                 pending + ([previous] if previous else []))
        if step == 'full':
            self.mode, self.reason = 'full', AFTER_REBOOT_FULL
        elif step == 'metadata':
            self.actions.append('locate the blocks the filesystem writes while it is mounted (superblock, journal '
                                'or log) on %s: first backup since a reboot' % snapshot)
        if self.mode == 'full':
            self.actions.append('copy %s into %s%s (sparse: %s)'
                                % (snapshot, image, PARTIAL_SUFFIX, self._sparse_text()))
            self.actions.append('rename %s%s to %s' % (image, PARTIAL_SUFFIX, image))
            self.actions.append('write %s' % image_mod.sidecar_path(image))
        elif self.mode == 'resume' or pending:
            self.actions.append('copy the union of the blocks listed by %s from %s into %s'
                                % (', '.join(pending + ([previous] if previous else [])), snapshot, image))
        elif previous:
            self.actions.append('copy the blocks listed by %s from %s into %s (verify: %s)'
                                % (previous, snapshot, image, p['verify']))
        self.verification = self._plan_verify(pending + ([previous] if previous else []), snapshot)
        self.actions.append('transition tracker on %s back to incremental' % p['device'])
        for path in pending + ([previous] if previous else []):
            self.actions.append('remove %s' % path)
        record_path = os.path.join(p['state_dir'], record_name(image))
        if self.legacy_record:
            self.actions.append('move the backup record %s to %s' % (self.legacy_record, record_path))
        self.actions.append('write %s' % record_path)
        return dict(changed=True, mode=self.mode, reason=self.reason, actions=self.actions, hooks=[],
                    image=image, image_state='untouched', next_run=self.mode, minor=minor,
                    warnings=self.warnings, diff=snap.get('diff'), verification=self.verification)
