# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cycle's verification beyond the change list (a mixin of :class:`backup_cycle.Cycle`): the seeded
sample, the scheduled full verification, the verify hooks, and what the record keeps of them.
The sampling and the schedule are verify.py's; the masks are verify.classify_mismatches."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import time

from . import backup_plan as plan_mod
from . import verify as verify_mod
from .constants import now_text
from .errors import DattobdError


class Verification(object):
    """Steps of :class:`backup_cycle.Cycle` (uses its ``p``, ``ops``, ``actions``, ``record``, ``mode``...)."""

    def _verify(self, minor, pending, result):
        """After an incremental or resumed copy, while the snapshot exists: what the change list cannot prove.

        A full verification (every block, ``verify_copy``) when the schedule says so
        (``full_verify_every_cycles`` / ``full_verify_every_days``) or ``verify=full`` asks for it;
        else a seeded random sample of the allocated blocks outside the change list
        (``verify_sample``), sized from the copy's time (``verify_sample_budget``). Returns the
        result key ``verification``; a mismatch fails the cycle (image resumable, next run full).
        """
        p = self.p
        now = self.clock()
        due, why = verify_mod.full_due(self.record, p['full_verify_every_cycles'], p['full_verify_every_days'], now)
        out = {'sample': None, 'full': None, 'full_verify_due': False, 'full_verify_reason': why}
        if self.mode == 'full':
            out['full_verify_reason'] = 'a full copy is the new baseline'
            if result.get('verified'):
                out['full'] = {'trigger': 'verify=%s of the full copy' % p['verify'], 'result': 'ok',
                               'time': now_text(), 'epoch': now}
            return out
        if not pending:
            out['full_verify_reason'] = 'nothing was copied'
            return out
        snapshot = self.ops.snapshot_device(minor)
        image = p['image']
        cow_files = [e['path'] for e in pending]
        if self.mode == 'incremental' and p['verify'] == 'full' and result.get('verified'):
            out['full'] = {'trigger': 'verify=full', 'result': 'ok', 'time': now_text(), 'epoch': now}
            return out
        if due or p['verify'] == 'full':
            out['full_verify_due'] = due
            out['full'] = self._verify_whole(snapshot, image, cow_files, why if due else 'verify=full', now, out, pending)
            return out
        if p['verify_sample_budget']:
            out['sample'] = self._verify_sample(snapshot, image, cow_files, result, out, pending)
        return out

    def _verify_whole(self, snapshot, image, cow_files, trigger, now, out, pending):
        """Every block of the image against the snapshot (``verify_copy``): the ``full`` entry of the verification;
        a mismatch or a read error fails the cycle (:meth:`_verification_failed`, with ``out`` as it stands)."""
        self.actions.append('verify the whole image %s against %s (%s)' % (image, snapshot, trigger))
        full = {'trigger': trigger, 'time': now_text(), 'epoch': now}
        began = time.monotonic()
        try:
            info = self.ops.verify_copy(snapshot, image, cow_files=cow_files)
        except (OSError, DattobdError) as exc:
            bad = (getattr(exc, 'details', None) or {}).get('mismatched_blocks') or []
            full.update(result='failed', mismatches=len(bad), seconds=round(time.monotonic() - began, 3))
            out['full'] = full
            self._verification_failed('The full verification', out, pending, exc, bad)
        full.update(result='ok', mismatches=0, seconds=round(time.monotonic() - began, 3),
                    unstable_blocks=len(info.get('unstable_blocks') or []),
                    masked_blocks=info.get('masked_blocks', 0))
        return full

    def _verify_sample(self, snapshot, image, cow_files, result, out, pending):
        """A seeded random sample of the allocated blocks outside the change list, sized from the copy's time: the
        ``sample`` entry of the verification; a mismatch or a read error fails the cycle."""
        p = self.p
        seed = p['verify_sample_seed'] if p['verify_sample_seed'] is not None else verify_mod.new_seed()
        target, budget = verify_mod.sample_target(result.get('bytes'), result.get('seconds'),
                                                  p['verify_sample_budget'], p['verify_sample_min'],
                                                  p['verify_sample_max'])
        self.actions.append('compare a random sample of %d allocated block(s) outside the change list of %s with '
                            '%s (seed %d)' % (target, image, snapshot, seed))
        try:
            sample = self.ops.verify_sample(snapshot, image, cow_files, self.extra_copied, target, seed, budget,
                                            p['verify_sample_min'])
        except (OSError, DattobdError) as exc:
            out['sample'] = {'seed': seed, 'sample_size': target, 'result': 'failed'}
            self._verification_failed('The sampled verification', out, pending, exc)
        sample = dict(sample, result='failed' if sample.get('mismatches') else 'ok', time=now_text())
        out['sample'] = sample
        if sample['mismatches']:
            self._verification_failed('The sampled verification', out, pending, None, sample['mismatched_blocks'])
        return sample

    def _verification_failed(self, what, out, pending, exc=None, bad=()):
        """Fail the cycle after a verification found a difference (or could not read): never a good image.

        The record says so (``last_verify_sample`` / ``last_full_verify``, step ``verify``), the image
        metadata is marked (``verify_failed``), the tracker goes back to incremental and the next
        run takes a full backup.
        """
        if bad:
            msg = ('%s found %d block(s) of %s that differ from the snapshot outside the masks (first: %s): the '
                   'change list missed them, or the backup storage changed them.'
                   % (what, len(bad), self.p['image'], ', '.join(str(b) for b in list(bad)[:10])))
        else:
            text = exc.msg if isinstance(exc, DattobdError) else '%s' % (os.strerror(exc.errno or 0)
                                                                         if getattr(exc, 'errno', None) else exc)
            msg = '%s of %s could not be completed: %s' % (what, self.p['image'], text)
        self.verification = out
        self._record_verification(out, ok=False)
        self._back_to_incremental(exc)
        self.record['pending_cow_files'] = pending
        try:
            self.ops.mark_unverified(self.p['image'], msg)
        except (OSError, DattobdError) as mark_exc:
            self.warnings.append('Cannot mark the image metadata as failed verification: %s' % mark_exc)
        err = DattobdError(msg, hint='Check the backup storage (dmesg) and the dattobd version; the image is not '
                                     'used as a good image until a full backup replaces it.',
                           verification=out, mismatched_blocks=list(bad)[:100])
        self._fail(msg, 'verify', 'resumable', 'full', exc=err, why=self._lost_tracker_reason(
            not self.wedged, msg) or plan_mod.Why(plan_mod.VERIFY_FAILED, msg))

    def _record_verification(self, out, ok):
        """Keep the schedule, the last sample and the last full verification in the backup record."""
        p = self.p
        rec = self.record
        rec['full_verify_every_cycles'] = p['full_verify_every_cycles']
        rec['full_verify_every_days'] = p['full_verify_every_days']
        out = out or {}
        lists = ('mismatched_blocks', 'unstable_blocks')
        if out.get('sample'):
            rec['last_verify_sample'] = dict((k, v) for k, v in out['sample'].items() if k not in lists)
        if out.get('full'):
            rec['last_full_verify'] = dict((k, v) for k, v in out['full'].items() if k not in lists)
        if not ok:
            return
        if self.mode == 'full' or (out.get('full') or {}).get('result') == 'ok':
            rec['cycles_since_full_verify'] = 0
        else:
            before = rec.get('cycles_since_full_verify')
            rec['cycles_since_full_verify'] = (before if isinstance(before, int) and before >= 0 else 0) + 1

    def _plan_verify(self, copies, snapshot):
        """Check mode: whether a sample or a full verification would run (result key ``verification``)."""
        p = self.p
        due, why = verify_mod.full_due(self.loaded_record, p['full_verify_every_cycles'], p['full_verify_every_days'],
                                       self.clock())
        out = {'sample': None, 'full': None, 'full_verify_due': False, 'full_verify_reason': why}
        if self.mode == 'full':
            out['full_verify_reason'] = 'a full copy is the new baseline'
            if p['verify'] != 'none':
                out['full'] = {'planned': True, 'trigger': 'verify=%s of the full copy' % p['verify']}
            return out
        if not copies:
            out['full_verify_reason'] = 'nothing to copy'
            return out
        if due or p['verify'] == 'full':
            out['full_verify_due'] = due
            trigger = why if due else 'verify=full'
            out['full'] = {'planned': True, 'trigger': trigger}
            self.actions.append('verify the whole image %s against %s (%s)' % (p['image'], snapshot, trigger))
        elif p['verify_sample_budget']:
            seed = p['verify_sample_seed']
            out['sample'] = {'planned': True, 'seed': seed, 'sample_min': p['verify_sample_min'],
                             'sample_max': p['verify_sample_max'], 'budget': p['verify_sample_budget']}
            self.actions.append('compare a random sample of at most %d allocated block(s) outside the change list of '
                                '%s with %s (what %g %% of the copy time pays for, at least %d; seed %s)'
                                % (p['verify_sample_max'], p['image'], snapshot, 100 * p['verify_sample_budget'],
                                   p['verify_sample_min'], 'random' if seed is None else seed))
        return out

    def _verify_hooks(self, hooks, snap, tracker, minor, pending):
        """Run the verify hooks while the snapshot still exists; a failing one fails the cycle."""
        live = self._live_cow(snap, tracker)
        env = {'SNAPFLEET_SNAPSHOT': self.ops.snapshot_device(minor), 'SNAPFLEET_COW_FILE': live or '',
               'SNAPFLEET_PREVIOUS_COW_FILE': pending[-1]['path'] if pending else '',
               'SNAPFLEET_MODE': self.mode}
        if self._run_hooks('verify', hooks, env):
            return
        self._back_to_incremental()
        self.record['pending_cow_files'] = pending
        failed = [h for h in self.hooks if h['phase'] == 'verify' and h['rc'] != 0][-1]
        self._fail('A verify hook failed (%s, rc %s): the image may not match the snapshot.'
                   % (shlex.join(failed['argv']), failed['rc']), 'verify_hooks', 'complete', 'full',
                   why=plan_mod.Why(plan_mod.VERIFY_HOOK_FAILED, shlex.join(failed['argv'])),
                   hint='Its output is in hooks. The next run takes a full backup.')
