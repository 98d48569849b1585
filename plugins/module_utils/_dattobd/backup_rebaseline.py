# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cycle's full backup, a re-baseline (a mixin of :class:`backup_cycle.Cycle`): written as a new image, or by
comparison with a good earlier image (only the blocks that differ; compare_copy.py). Which one is
:func:`backup_plan.rebaseline_method`'s decision, the same in check mode and in a run.

* ``full``: the snapshot is copied into ``<image>.partial`` (sparse), verified, renamed over the
  image, and new metadata written. A failure leaves the image untouched.
* ``compare``: the re-baseline is journalled in the image metadata (``image.begin_rebaseline``),
  the blocks that differ are written into the image in place, the image is verified as a full copy
  is, and new metadata written (which clears the journal). A failure leaves the image partial and
  journalled (``resumable``): the next run is full again and completes it by comparison, unless
  a verification failed (then the next run writes a new image).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from . import backup_plan as plan_mod
from . import image as image_mod
from .backup_plan import PARTIAL_SUFFIX
from .errors import DattobdError
from . import wedge


class Rebaseline(object):
    """Steps of :class:`backup_cycle.Cycle` (uses its ``p``, ``ops``, ``actions``, ``warnings``, ``mode``, ``reason``...)."""

    rebaseline = None  # {'method', 'why'} of this cycle's full backup (result and record key ``rebaseline``)
    unverified = None  # why the image compared in place failed verification (the next run writes a new image)

    def _rebaseline_method(self, size):
        """Decide (and keep in ``rebaseline``) how the full backup writes the image; ``size``: the volume's."""
        image = self.p['image']
        image_size = self.ops.size_of(image) if self.ops.exists(image) else None
        method, why = plan_mod.rebaseline_method(self.p.get('rebaseline') or plan_mod.COMPARE, self.loaded_record,
                                                 self.meta, image_size, size)
        self.rebaseline = {'method': method, 'why': why}
        return method

    def _plan_rebaseline(self, snapshot):
        """Check mode: the steps of the full backup, by the method a run would take."""
        image = self.p['image']
        side = image_mod.sidecar_path(image)
        if self._rebaseline_method(self.facts.get('size')) == plan_mod.COMPARE:
            return ['journal the re-baseline by comparison in %s' % side,
                    'compare %s with %s and write the blocks that differ (%s)'
                    % (snapshot, image, self.rebaseline['why']),
                    'write %s' % side]
        return ['copy %s into %s%s (sparse: %s)' % (snapshot, image, PARTIAL_SUFFIX, self._sparse_text()),
                'rename %s%s to %s' % (image, PARTIAL_SUFFIX, image), 'write %s' % side]

    def _rebaseline_copy(self, minor, uuid, seq, pending):
        """The full backup of the cycle; returns the copy's figures (with ``rebaseline``) or fails the cycle."""
        snapshot = self.ops.snapshot_device(minor)
        journalled = False
        try:
            self.interruptible = True
            self._check_interrupted()
            size = self.ops.size_of(snapshot)
            compare = self._rebaseline_method(size) == plan_mod.COMPARE
            self.ops.check_destination(self.p['image'], self.rdev, size, not compare,
                                       self.p.get('check_free_space', True))
            if compare:
                self.actions.append('journal the re-baseline by comparison in %s'
                                    % image_mod.sidecar_path(self.p['image']))
                self.meta = self.ops.begin_rebaseline(self.p['image'], self.meta, uuid, seq,
                                                      str(self.reason) if self.reason else None)
                journalled = True
                stats = self._compare_copy(snapshot)
            else:
                stats = self._full_copy(snapshot)
            self._install(snapshot, uuid, seq, size, compare)
        except (OSError, DattobdError) as exc:
            self._rebaseline_failed(exc, journalled, pending)
        stats.setdefault('verified', False)
        stats['rebaseline'] = dict(self.rebaseline, blocks_read=stats.get('blocks'),
                                   blocks_differing=stats.get('blocks_differing'), bytes_written=stats.get('bytes'))
        return stats

    def _copy_stats(self, stats):
        """The figures of a copy (a dict), with a warning when the filesystem-aware sparse copy was not used."""
        stats = stats.to_dict() if hasattr(stats, 'to_dict') else dict(stats)
        note = (stats.get('sparse') or {}).get('note')
        if note and self.p.get('sparse', 'filesystem') == 'filesystem':
            self.warnings.append('Filesystem-aware sparse copy not used: %s.' % note)
        # Throughput of a full copy: the volume read (holes are not written, but read all the same).
        if stats.get('read_bytes') and stats.get('seconds'):
            stats['mb_per_s'] = round(stats['read_bytes'] / 1048576.0 / stats['seconds'], 2)
        return stats

    def _full_copy(self, snapshot):
        """Copy ``snapshot`` into ``<image>.partial`` and verify it there (``verify``)."""
        partial = self.p['image'] + PARTIAL_SUFFIX
        self.actions.append('copy %s into %s (sparse: %s)' % (snapshot, partial, self._sparse_text()))
        stats = self._copy_stats(self.ops.full_copy(snapshot, partial, sparse=self.p.get('sparse') or 'filesystem'))
        if self.p['verify'] != 'none':
            self.actions.append('verify %s against %s' % (partial, snapshot))
            stats.update(self.ops.verify_copy(snapshot, partial))
        return stats

    def _compare_copy(self, snapshot):
        """Write the blocks of the (journalled) image that differ from ``snapshot``, verify it (``verify``)."""
        image = self.p['image']
        self.actions.append('compare %s with %s and write the blocks that differ (%s)'
                            % (snapshot, image, self.rebaseline['why']))
        stats = self._copy_stats(self.ops.compare_copy(snapshot, image, sparse=self.p.get('sparse') or 'filesystem'))
        if self.p['verify'] != 'none':
            self.actions.append('verify %s against %s' % (image, snapshot))
            try:
                stats.update(self.ops.verify_copy(snapshot, image))
            except (OSError, DattobdError) as exc:
                # Written in place: the image is no good base any more; the next run writes a new one.
                self.unverified = getattr(exc, 'msg', None) or str(exc)
                try:
                    self.ops.mark_unverified(image, self.unverified)
                except (OSError, DattobdError) as mark_exc:
                    self.warnings.append('Cannot mark the image metadata as failed verification: %s' % mark_exc)
                raise
        return stats

    def _install(self, snapshot, uuid, seq, size, compare):
        """The image is complete: the partial copy renamed over it (``full``), its new metadata written."""
        image = self.p['image']
        self.interruptible = False  # from here on the image is replaced: finish
        if not compare:
            partial = image + PARTIAL_SUFFIX
            self.actions.append('remove %s' % image_mod.sidecar_path(image))
            self.ops.remove_meta(image)
            self.actions.append('rename %s to %s' % (partial, image))
            self.ops.rename(partial, image)
        self.actions.append('write %s (seq_id %s)' % (image_mod.sidecar_path(image), seq))
        self.ops.init_meta(image, uuid, seq, size)

    def _rebaseline_failed(self, exc, journalled, pending):
        """Fail the cycle after a failed full backup: a new image's partial copy is removed (image untouched);
        an image compared in place stays journalled (resumable). The next run is full."""
        self.interruptible = False
        image = self.p['image']
        text = exc.msg if isinstance(exc, DattobdError) else '%s: %s' % (
            getattr(exc, 'filename', None) or image, os.strerror(exc.errno or 0))
        partial = image + PARTIAL_SUFFIX
        try:
            if not journalled and self.ops.exists(partial):
                self.ops.unlink(partial)
        except OSError:
            self.warnings.append('Cannot remove %s.' % partial)
        healthy = self._back_to_incremental(exc)
        self.record['pending_cow_files'] = pending
        what = 'The re-baseline by comparison failed' if journalled else 'The full copy failed'
        why = plan_mod.Why(plan_mod.VERIFY_FAILED, self.unverified) if self.unverified else None
        self._fail('%s: %s' % (what, text), 'copy', 'resumable' if journalled else 'untouched', 'full',
                   exc=exc if isinstance(exc, DattobdError) else None, why=why,
                   hint=None if healthy else (wedge.RECOVERY if self.wedged else
                                              'The tracker could not go back to incremental.'))
