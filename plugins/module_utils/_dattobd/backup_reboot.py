# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cycle's steps for the blocks no change list holds: the first cycle after a reboot (the writes a
filesystem makes while it mounts) and the untracked COW data of the last snapshot (a mixin of
:class:`backup_cycle.Cycle`; the decision whether a step is due is :mod:`backup_plan`'s)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import backup_plan as plan_mod
from . import fsmap
from .errors import DattobdError
from .runs import merge_runs


class AfterReboot(object):
    """Steps of :class:`backup_cycle.Cycle` (uses its ``p``, ``ops``, ``actions``, ``warnings``, ``mode``)."""

    def _after_reboot(self, minor, pending):
        """First incremental since a reboot: the filesystem's mount-time writes are in no change list.

        dattobd turns a tracker reloaded at boot active only after its filesystem's mount call
        returned, so what the filesystem wrote while mounting (ext4: superblock and journal; XFS:
        superblock and log) escaped tracking; so did the checkpoint of the last metadata changes at
        the unmount in shutdown (the tracker is dormant then), among them those of the COW file the
        driver closed there (its inode and extent tree: ``pending`` COW files).

        ``after_reboot``: ``metadata`` copies those regions as well (``fsmap.mount_map``; a full
        backup when they cannot be located), ``full`` takes a full backup, ``none`` copies only the
        tracked changes (as ``update-img`` does).
        """
        policy = self.p['after_reboot']
        self.after_reboot = {'policy': policy}
        if policy == 'none':
            self.warnings.append(plan_mod.AFTER_REBOOT_NONE_WARNING)
            return
        if policy == 'full':
            self.mode, self.reason = 'full', plan_mod.Why(plan_mod.AFTER_REBOOT_FULL)
            return
        snapshot = self.ops.snapshot_device(minor)
        try:
            found = self.ops.mount_map(snapshot, [e['path'] for e in pending])
        except (OSError, DattobdError) as exc:
            found = fsmap.MountMap(None, note='the blocks %s writes at mount are unknown: %s' % (snapshot, exc))
        self.after_reboot.update(found.to_dict())
        if not found.known:
            self.mode, self.reason = 'full', plan_mod.Why(plan_mod.MOUNT_WRITES_UNKNOWN, found.note)
            return
        if found.note:
            self.warnings.append('First backup since a reboot: %s, so what the filesystem wrote there at mount is '
                                 'not in this image.' % found.note)
        self.mount_runs = found.runs
        self.actions.append('copy the %d block(s) the %s filesystem writes while it is mounted (%s): first backup '
                            'since a reboot, and dattobd does not track those writes'
                            % (found.blocks, found.fstype, ', '.join('%s %d' % kv for kv in sorted(found.parts.items()))))

    def _extra_runs(self, snapshot):
        """The blocks to copy besides the change list: untracked COW data, mount-time writes.

        The untracked COW data (``_note_untracked``) went into the blocks of the last snapshot's COW
        file beyond what transition-to-incremental kept. Those the filesystem has reused since were
        written again, tracked; the rest is free space, whose content means nothing to the
        filesystem (a full copy leaves it as holes), or belongs to this snapshot's live COW file
        (masked in every comparison; the next cycle copies that file): only the others are copied.
        """
        lists = []
        if self.untracked and self.untracked[2]:
            runs = sorted(tuple(r) for r in self.untracked[2])
            try:
                runs, dropped = self.ops.allocated_only(snapshot, runs, live_cow=self.untracked[0])
            except (OSError, DattobdError) as exc:
                dropped = 0
                self.warnings.append('Cannot tell which blocks of the last COW file are free now (%s): copying all '
                                     'of them.' % exc)
            if dropped:
                self.actions.append('skip %d block(s) the last COW file held: free now, or in the live COW file'
                                    % dropped)
            if runs:
                lists.append(runs)
        if self.mount_runs:
            lists.append(sorted(tuple(r) for r in self.mount_runs))
        self.extra_copied = merge_runs(lists) if lists else None
        return self.extra_copied

    # --- verification beyond the change list (verify.py) -----------------------------------
