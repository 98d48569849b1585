# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The COW files of a backup cycle: the blocks the driver wrote untracked into the live one, how full it
got, and the ones earlier trackers of the volume left behind (a mixin of :class:`backup_cycle.Cycle`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from .errors import DattobdError
from .runs import merge_runs


class CowFiles(object):
    """Steps of :class:`backup_cycle.Cycle` (uses its ``p``, ``ops``, ``record``, ``actions``, ``warnings``, ``removed``,
    ``leftovers``, ``untracked``, ``wedged``)."""

    def _note_untracked(self, failed=False):
        """Record the blocks the driver wrote untracked into the live COW file's data area.

        Called right before the tracker goes back to incremental (see ``sync.cow_data_runs``);
        the next sync copies them. On failure the runs not yet copied are kept as well.
        """
        if self.untracked is None:
            return
        # (a tuple set by the copy step; pylint sees only this mixin's None)
        path, minor, consumed = self.untracked  # pylint: disable=unpacking-non-sequence
        self.untracked = None
        runs = []
        self._measure_cow(minor)
        try:
            if path and not self.wedged:
                runs = self.ops.untracked_runs(path, minor)
        except (OSError, ValueError, DattobdError) as exc:
            self._timed_out(exc)
            self.warnings.append('Cannot locate the blocks of the COW file %s (%s): the next incremental backup may '
                                 'miss what the driver wrote there; take a full backup to be sure.' % (path, exc))
        if failed:
            runs = merge_runs([sorted(tuple(r) for r in consumed), sorted(tuple(r) for r in runs)])
        self.record['untracked_runs'] = [list(r) for r in runs]

    def _measure_cow(self, minor):
        """How full the snapshot's COW file got (the metrics' ``cow_bytes_*``), read right before it ends."""
        if self.wedged:
            return
        try:
            self.cow_usage = self.ops.cow_usage(minor)
        except (OSError, ValueError, DattobdError) as exc:
            self._timed_out(exc)
            self.cow_usage = None

    @staticmethod
    def _live_cow(snap, tracker):
        """Absolute path of the snapshot's live COW file."""
        live = snap.get('new_cow_file')
        mount_point = (snap.get('device') or {}).get('mount_point')
        if not live and tracker.get('cow_file') and mount_point:
            live = os.path.join(mount_point, tracker['cow_file'].lstrip('/'))
        return live

    def _leftover_keep(self, snap, tracker, pending):
        """COW files the leftover scan never lists: the pending ones, the previous and the live one of ``snap``."""
        keep = list(pending) + [snap.get('previous_cow_file'), self._live_cow(snap, tracker or {})]
        return [k for k in keep if k]

    def _find_leftovers(self, keep):
        """COW files a re-baseline or a destroy left on the volume (``Ops.leftover_cow_files``); [] when unknown."""
        try:
            return list(self.ops.leftover_cow_files(self.p['device'], self.p.get('cow_name'), self.p.get('cow_dir'),
                                                    keep, self.p['state_dir'], self.p.get('reload_dir')))
        except (OSError, DattobdError) as exc:
            self.warnings.append('COW files left behind by earlier trackers were not looked for: %s'
                                 % getattr(exc, 'msg', exc))
            return []

    def _remove_leftovers(self, final, pending):
        """After a good cycle: remove the COW files earlier trackers of the volume left behind.

        Only files named like this collection's COW files (``cow_name``) on the volume's filesystem
        that no live tracker uses, no boot reload script names and no backup record still needs
        (``Ops.leftover_cow_files``); one that cannot be removed is a warning, never a failure.
        """
        keep = self._leftover_keep(final, final.get('tracker') or {}, [e['path'] for e in pending])
        for path in self._find_leftovers(keep):
            self.leftovers.append(path)
            self._remove_cow(path, 'left behind by an earlier tracker of this volume')

    def _remove_cow(self, path, why=None):
        self.actions.append('remove %s%s' % (path, ' (%s)' % why if why else ''))
        try:
            self.ops.unlink(path)
            self.removed.append(path)
        except OSError as exc:
            if self.ops.exists(path):
                self.warnings.append('Cannot remove the old COW file %s: %s' % (path, os.strerror(exc.errno or 0)))
