# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The copy step of a backup cycle: the journal of the pending COW files, then an incremental sync, the
union of several COW files, or a full backup (:mod:`backup_rebaseline`) (a mixin of :class:`backup_cycle.Cycle`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from . import backup_plan as plan_mod
from . import image as image_mod
from .backup_plan import Why
from .errors import DattobdError


class IncrementalCopy(object):
    """Steps of :class:`backup_cycle.Cycle` (uses its ``p``, ``ops``, ``record``, ``mode``, ``actions``, ``warnings``,
    ``untracked`` and its failure path ``_fail``)."""

    def _journal_pending(self, snap):
        """``(tracker, minor, seq, uuid, pending)`` of the snapshot; the previous COW file is journalled as pending."""
        p = self.p
        image = p['image']
        tracker = snap.get('tracker') or {}
        minor = tracker.get('minor', snap.get('minor'))
        self.record['minor'] = minor
        consumed = [tuple(r) for r in self.record.get('untracked_runs') or [] if isinstance(r, (list, tuple))]
        self.untracked = (self._live_cow(snap, tracker), minor, consumed)
        if snap.get('rebaseline_required') or self.mode == 'full':
            self.untracked = (self.untracked[0], minor, [])
        seq = tracker.get('seq_id')
        uuid = (tracker.get('uuid') or '').lower() or None
        previous = snap.get('previous_cow_file')
        pending = [e for e in self.record.get('pending_cow_files') or [] if isinstance(e, dict) and e.get('path')]
        if previous:
            prev_entry = {'path': previous, 'seq_id': (seq - 1) if isinstance(seq, int) else None}
            pending = pending + [prev_entry]
            self.record['pending_cow_files'] = pending
            try:
                self.ops.save_record(p['state_dir'], image, self.record)
            except (OSError, DattobdError) as exc:
                self.warnings.append('Cannot journal the pending COW file in the backup record: %s' % exc)
        return tracker, minor, seq, uuid, pending

    def _copy(self, minor, uuid, seq, pending, meta):
        p = self.p
        image = p['image']
        snapshot = self.ops.snapshot_device(minor)
        kind = plan_mod.copy_kind(self.mode, pending)  # as check mode reports it
        if kind == 'rebaseline':
            return self._rebaseline_copy(minor, uuid, seq, pending)
        if kind == 'nothing':
            self.actions.append('nothing to copy: %s already holds snapshot %s' % (image, seq))
            return dict(blocks=0, bytes=0, seconds=0.0, mb_per_s=None, verified=False)
        try:
            self.interruptible = True
            self._check_interrupted()
            if kind == 'sync':
                result = self.ops.sync(snapshot, pending[-1]['path'], image, p['verify'],
                                       extra_runs=self._extra_runs(snapshot))
                self.interruptible = False
                self.actions.extend(result.get('actions') or [])
            else:
                paths = [e['path'] for e in pending]
                self.actions.append('journal sync %s -> %s in %s' % (meta.get('seq_id'), seq,
                                                                     image_mod.sidecar_path(image)))
                meta = self.ops.begin_union(image, meta, uuid, meta.get('seq_id'), seq, paths)
                self.actions.append('copy the union of the blocks listed by %s from %s into %s'
                                    % (', '.join(paths), snapshot, image))
                result = self.ops.union_copy(snapshot, paths, image, p['verify'], extra_runs=self._extra_runs(snapshot))
                self.interruptible = False
                self.actions.append('record seq_id %s in %s' % (seq, image_mod.sidecar_path(image)))
                self.ops.complete_union(image, meta, seq, result.get('blocks'), result.get('verified'))
            return result
        except (OSError, DattobdError) as exc:
            self.interruptible = False
            text = exc.msg if isinstance(exc, DattobdError) else os.strerror(exc.errno or 0)
            try:
                after = self.ops.load_meta(image)
            except DattobdError:
                after = None
            written = bool(after and after.get('pending'))
            healthy = self._back_to_incremental(exc)
            self.record['pending_cow_files'] = pending
            # A damaged COW file (cow.py) breaks the incremental chain: resuming would meet it again.
            damaged = bool(getattr(exc, 'details', {}).get('cow_damaged'))
            why = self._lost_tracker_reason(healthy, text)
            if damaged and why is None:
                why = Why(plan_mod.COW_DAMAGED, text)
            self._fail('Copying the changed blocks failed: %s' % text, 'copy',
                       'resumable' if written else 'untouched', 'resume' if healthy and not damaged else 'full',
                       exc=exc if isinstance(exc, DattobdError) else None, why=why)
