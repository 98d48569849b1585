# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One backup cycle of one volume (the ``backup`` module).

A cycle, in order:

0. validate every parameter (:func:`validate_params`), then make every readiness check, reading
   only (:meth:`Cycle._ready`: the record of this image, the snapshot step planned in check mode -
   driver, device, minor -, the destination and its space). A request refused there changes
   nothing: no hook, no lock, no record. Then take the lock and move a record written under the
   old, shared name to its own (:func:`migrate_record`);
1. decide the mode from the image sidecar (image.py), the backup record of this image (a JSON
   file under ``state_dir``), the boot check of the systemd role and ``full``:
   ``full`` (no image, no metadata, forced, boot check), ``resume`` (COW files of earlier failed
   cycles are still pending) or ``incremental``;
2. pre hooks (argv lists with a timeout; one failing aborts the cycle, nothing changed);
3. ``tracker.ensure(state=snapshot, recover=rebaseline)``: setup-snapshot on the first run,
   else transition-to-snapshot with a new COW file (the previous one lists the changes);
4. post hooks (always, once pre hooks ran: they thaw what the pre hooks froze);
5. copy: ``full`` writes ``/dev/datto<N>`` into ``<image>.partial`` (sparse: the blocks the
   filesystem reports unallocated (fsmap.py: ext2/3/4, XFS) are not even read, all-zero blocks
   are not written; both stay holes), fsyncs, renames it over the image and writes new metadata; ``incremental``
   is ``sync.run`` from the previous COW file (journalled, optional verify); ``resume`` copies
   the union of the blocks listed by every pending COW file plus the previous one (a failed
   cycle's COW file still lists changes the image lacks) and records the new seq_id;
6. record the new state, ``tracker.ensure(state=incremental)``, remove the consumed COW files.

Any failure leaves the tracker incremental (a transition back is attempted) and the image either
untouched (full copies go to ``.partial``) or resumable (journal + pending COW files); the raised
:class:`BackupError` and the record say which (``image_state``) and what the next run does
(``next_run``: ``incremental``, ``resume`` or ``full``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import time

from . import backup_hooks as hooks_mod
from . import boot_state
from . import backup_plan as plan_mod
from .backup_plan import CheckModePlan, Why, detail_of
from .backup_cowfiles import CowFiles
from .backup_incremental import IncrementalCopy
from .backup_publish import Publishing
from .backup_rebaseline import Rebaseline
from .backup_reboot import AfterReboot
from .backup_verify import Verification
from . import cow as cow_mod
from . import history as history_mod
from . import restore_points
from .constants import now_text
from .errors import DattobdError, DriverTimeout
from . import wedge
from .backup_ops import Ops
from .backup_record import check_state_dir
from .backup_group import BackupError, Group, Interrupted, SIGNALS, signal_name


class Cycle(CheckModePlan, Rebaseline, AfterReboot, Verification, CowFiles, IncrementalCopy, Publishing):
    """One backup cycle; :meth:`run` returns the result dict or raises :class:`BackupError`."""

    def __init__(self, params, ops=None):
        self.p = dict(params)
        self.ops = ops or Ops(timeout=self.p.get('timeout', 60), dbdctl_path=self.p.get('dbdctl_path'))
        self.actions = []
        self.hooks = []
        self.warnings = []
        self.removed = []
        self.started = None
        self.rdev = None
        self.record = {}
        self.mode = self.reason = None
        self.untracked = None  # (path, minor, consumed runs) while a snapshot of this cycle exists
        self.mount_runs = None  # blocks the filesystem wrote at mount, copied after a reboot
        self.after_reboot = None  # what this cycle did about a reboot since the last one (result key)
        self.interrupted = None  # number of the signal received, if any
        self.interruptible = False  # True while the copy runs: a signal stops it at once
        # what the readiness checks found (_ready), before anything is written
        self.facts = {}
        self.names = []
        self.meta = None
        self.boot = self.boot_mtime = self.boot_id = None
        self.rebooted = False
        self.rebooted_during_run = None  # the boot id differs from run_boot_id (the run's first one)
        self.loaded_record = {}
        self.legacy_record = None  # the record under its old name, moved once the lock is held
        self.clock = time.time  # wall clock of the full-verification schedule (tests replace it)
        self.extra_copied = None  # the blocks copied besides the change list (_extra_runs)
        self.verification = None  # what this cycle verified beyond the change list (result key)
        self.began = None  # time.monotonic() when the cycle started (cycle_seconds)
        self.wedged = False  # a driver call of this cycle timed out: no further driver call (wedge.py)
        self.leftovers = []  # COW files left behind by a re-baseline or a destroy (removed after a good cycle)
        self.cow_usage = None  # (used, size) bytes of the snapshot's COW file when the cycle ended it (metrics)
        self.run_began = None  # time.monotonic() when run() started (the metrics' duration)
        self.restore_point = None  # the restore point made before the cycle (restore_points.py; result key)
        self.restore_now = None  # the time of the restore point's name (tests set it; default now)
        self.hook_args = None  # (pre, post, verify) hooks, validated (validate_params)
        self.lock_handle = None  # the image's lock while this cycle holds it
        self.snap = None  # the snapshot step's result once this volume's snapshot is taken (Group)
        self.outcome = None  # the result, or the exception that failed the cycle (Group)

    # --- signals -----------------------------------------------------------------------------
    def on_signal(self, signum, frame=None):
        """Signal handler: stop the copy (the failure path then goes back to incremental).

        Outside the copy the signal is remembered: before the snapshot the cycle stops at the next
        step; once the image is complete the cycle finishes its last steps (seconds) and says so.
        """
        self.interrupted = signum
        if self.interruptible:
            self.interruptible = False
            raise Interrupted('Interrupted by %s.' % signal_name(signum))

    def _check_interrupted(self):
        if self.interrupted is not None:
            raise Interrupted('Interrupted by %s.' % signal_name(self.interrupted))

    # --- helpers ---------------------------------------------------------------------------
    def _tracker_kwargs(self):
        kw = {}
        for key in ('minor', 'cow_dir', 'cow_name', 'cache_size', 'fallocate', 'reload_dir'):
            if self.p.get(key) is not None:
                kw[key] = self.p[key]
        kw['persist'] = self.p.get('persist', True)
        return kw

    def _ensure(self, state, check_mode=False):
        kw = self._tracker_kwargs()
        if state == 'snapshot':
            kw['recover'] = 'rebaseline'
        res = self.ops.tracker_ensure(self.p['device'], state, check_mode=check_mode, **kw)
        self.actions.extend(res.get('actions') or [])
        self.warnings.extend(res.get('warnings') or [])
        return res

    def _run_hooks(self, phase, hooks, extra_env=None):
        env = self._hook_env(phase)
        env.update(extra_env or {})
        return hooks_mod.run_hooks(self.ops, phase, hooks, env, self)

    def _device_names(self, res=None):
        names = [self.p['device']]
        dev = (res or {}).get('device') or {}
        for key in ('path', 'stable_name', 'given'):
            if dev.get(key):
                names.append(dev[key])
        return names

    def _next_full_reason(self, next_run, why=None):
        """Why the next run is full (a :class:`Why`), or None when it is not: ``why``, else this cycle's full reason."""
        if next_run != 'full':
            return None
        if why is not None:
            return why
        if self.mode == 'full' and self.reason:
            return self.reason
        if self.wedged:
            return Why(plan_mod.DRIVER_WEDGED)
        return Why(plan_mod.LAST_RUN_FAILED)

    def _fail(self, msg, step, image_state, next_run, hint=None, exc=None, record=None, why=None):
        """Fail the cycle: the record says what happened and what the next run does (``why``: why it is full)."""
        details = {}
        if exc is not None:
            details = dict(getattr(exc, 'details', {}) or {})
            details.pop('actions', None)
            if hint is None:
                hint = getattr(exc, 'hint', None)
        why = self._next_full_reason(next_run, why)
        record = dict(record or self.record, last_result='failed', msg=msg, finished=now_text(), step=step,
                      image_state=image_state, next_run=next_run, mode=self.mode,
                      reason=str(self.reason) if self.reason else None, reason_detail=detail_of(self.reason),
                      next_full_reason=str(why) if why else None, next_full_reason_detail=detail_of(why))
        record['history'] = history_mod.appended(record, record['finished'], 'failed', self.mode, step=step)
        try:
            record_path = self.ops.save_record(self.p['state_dir'], self.p['image'], record)
        except (OSError, DattobdError) as save_exc:
            record_path = None
            self.warnings.append('Cannot write the backup record: %s' % save_exc)
        nxt = {'incremental': 'The next run takes an incremental backup.',
               'resume': 'The next run resumes: it copies the blocks of the pending COW files as well.',
               'full': 'The next run takes a full backup.'}[next_run]
        img = {'untouched': 'The image was not changed.',
               'resumable': 'The image is partly updated (journalled): do not use it for a restore before the '
                            'next successful run.',
               'complete': 'The image is complete.'}[image_state]
        if why:
            nxt = 'The next run takes a full backup (%s).' % why
        details.update(step=step, image_state=image_state, next_run=next_run, actions=list(self.actions),
                       hooks=self.hooks, warnings=self.warnings, mode=self.mode, record=record_path,
                       image=self.p['image'], device=self.p['device'], reason=record['reason'],
                       reason_detail=record['reason_detail'], next_full_reason=record['next_full_reason'],
                       removed_cow_files=list(self.removed), rebooted_during_run=self.rebooted_during_run)
        raise BackupError('%s %s %s' % (msg.rstrip(), img, nxt), hint=hint, **details)

    def _timed_out(self, exc):
        """True once a driver call of this cycle timed out (``exc`` now, or earlier): the driver is wedged."""
        self.wedged = self.wedged or isinstance(exc, DriverTimeout)
        return self.wedged

    def _back_to_incremental(self, cause=None):
        """Best effort after a failure: returns True when the tracker is healthy and incremental.

        Not even tried once a driver call of this cycle timed out (``cause``, or earlier): the driver
        is wedged and the call would only wait for its own timeout (wedge.py).
        """
        if self._timed_out(cause):
            self.untracked = None
            self.warnings.append('The tracker was not transitioned back to incremental: the dattobd driver is wedged, '
                                 'that call would block as well.')
            return False
        self._note_untracked(failed=True)
        try:
            self._ensure('incremental')
            return True
        except DattobdError as exc:
            self._timed_out(exc)
            self.warnings.append('Could not transition the tracker back to incremental: %s' % exc.full_msg)
            return False

    def _lost_tracker_reason(self, healthy, detail=None):
        """Why the next run is full when the tracker could not go back to incremental (None when it did)."""
        if healthy:
            return None
        if self.wedged:
            return Why(plan_mod.DRIVER_WEDGED, detail)
        return Why(plan_mod.TRACKER_FAILED, detail or 'the tracker could not go back to incremental')

    # --- the cycle ---------------------------------------------------------------------------
    def decide(self, record, meta, image_exists, boot, boot_mtime, names=None, minor=None):
        return plan_mod.decide_mode(self.p.get('full'), record, meta, image_exists, boot, boot_mtime,
                                    names or [self.p['device']], minor)

    def run(self, check_mode=False):
        """Validate every parameter, run every readiness check (reading only), then act.

        A request refused before the cycle starts raises :class:`DattobdError` (a parameter) or
        :class:`BackupError` (a readiness check) and leaves the host as it was: no hook run, no
        lock, no record, no directory. Check mode takes the same decisions, then reports the plan.
        The volume is a consistency group of one (:class:`Group`: its own hooks around its snapshot).
        """
        outcome = Group([self]).run(check_mode=check_mode)[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _prepare(self, check_mode=False):
        """Every readiness check (reading only); then, unless ``check_mode``, the lock, the restore point and the
        record. Returns the snapshot step planned (the one :meth:`_ready` found); raises as :meth:`run` does.

        A failure once the lock is held publishes the failure's metrics; the lock stays for the caller to release.
        """
        try:
            try:
                self.ops.check_driver()  # wedged earlier in this boot: fail at once, no driver call (wedge.py)
                snap = self._ready()
            except DriverTimeout as exc:
                self._wedged(exc)
        except DattobdError as exc:
            if not check_mode:
                self._publish(exc=exc)
            raise
        if check_mode:
            return snap
        # A second cycle of the image refused here publishes nothing: the running one will.
        self.lock_handle = self.ops.lock(self.p['state_dir'], self.p['image'])
        try:
            with cow_mod.remembered_runs():     # the COW files a cycle reads are parsed once
                self._restore_point()
                self._begin()
        except (DattobdError, OSError, ValueError) as exc:
            self._published_failure(exc)
            raise
        return snap

    def _planned(self, pre, post, snap):
        """Check mode: the plan of this volume (:meth:`_plan`), its restore point and its metrics file."""
        planned = restore_points.plan(self.p, self.restore_now)
        out = dict(self._plan(pre, post, snap), rebooted_during_run=self.rebooted_during_run,
                   metrics_file=self.p.get('metrics_file'), restore_point=planned)
        out['actions'] = restore_points.actions(planned, self.p['image']) + list(out.get('actions') or [])
        return out

    def _published_failure(self, exc):
        """A failure once the lock is held: its metrics, and the restore point made (if any) in its details."""
        if isinstance(exc, DattobdError):
            exc.details.setdefault('restore_point', self.restore_point)
        self._publish(exc=exc)

    def _finish(self, snap):
        """Once the snapshot is taken: copy, verify, complete, publish; releases the lock. Returns the result."""
        try:
            with cow_mod.remembered_runs():     # the COW files a cycle reads are parsed once
                try:
                    result = dict(self._run(snap, self.hook_args[2]), rebooted_during_run=self.rebooted_during_run,
                                  restore_point=self.restore_point)
                except (DattobdError, OSError, ValueError) as exc:
                    self._published_failure(exc)
                    raise
                self._publish(result=result)
                return result
        finally:
            self._unlock()

    def _unlock(self):
        if self.lock_handle is not None:
            lock, self.lock_handle = self.lock_handle, None
            self.ops.unlock(lock)

    def _restore_point(self):
        """The restore point of the current image, and pruning (``retention``), under the lock, before any hook.

        One that cannot be made refuses the cycle: the lock was taken, nothing else changed."""
        try:
            self.restore_point = restore_points.make(self.p, self.restore_now)
        except DattobdError as exc:
            self._refuse('No restore point of the image could be made: %s' % exc.msg, 'restore_point', exc, locked=True)
        if self.restore_point:
            self.warnings.extend(self.restore_point.pop('warnings', None) or [])
        self.actions.extend(restore_points.actions(self.restore_point, self.p['image']))

    def _wedged(self, exc):
        """The driver is wedged (``exc``: found now, or a marker of this boot): refuse at once.

        A readiness check like any other (:meth:`_refuse`): no hook runs, no driver call is made and
        nothing is written (no lock, no record), in check mode or not. The result says the next run
        is full (``next_full_reason``: only a hard reset clears the wedge, and it loses every tracker)
        and reaches the fleet report through the task result.
        """
        self.wedged = True
        self.mode = self.reason = None
        why = Why(plan_mod.DRIVER_WEDGED, exc.msg)
        self._refuse(exc.msg, 'driver', exc, then='The next run takes a full backup (%s).' % why, next_run='full',
                     reason=None, next_full_reason=str(why))

    def _refuse(self, msg, step, exc=None, locked=False, then=None, **extra):
        """A readiness check failed: raise, having changed nothing (no hook, no record; no lock unless ``locked``).

        ``then``: a sentence for the message on what the next run does; ``extra``: result keys to set.
        """
        details = dict(getattr(exc, 'details', {}) or {})
        details.pop('actions', None)
        details.update(step=step, image_state='untouched', actions=[], hooks=[], warnings=self.warnings,
                       mode=self.mode, record=None, image=self.p['image'], device=self.p['device'],
                       rebooted_during_run=self.rebooted_during_run)
        if self.mode is not None:
            details['next_run'] = self.mode
        details.update(extra)
        done = 'the lock was taken, but no hook ran and no record was written' if locked else \
            'no hook ran, no record or lock was written'
        raise BackupError('%s Nothing was changed: %s.%s' % (msg.rstrip(), done, ' ' + then if then else ''),
                          hint=getattr(exc, 'hint', None), **details)

    def _ready(self):
        """Every check that does not need the snapshot, in the order a run needs them; reads only.

        The backup record (this image's, in a state directory only root can access), the image
        metadata and the boot check (the mode, so that a refusal can say what the next run does),
        the snapshot step planned in check mode (driver loaded, device present and mounted
        read-write, minor free, dbdctl found), the device (the mode again, with its names), the
        destination (root-only, not on the volume, room for a full copy). Returns the planned
        snapshot step.
        """
        p = self.p
        try:
            check_state_dir(p['state_dir'])
            record, self.legacy_record = self.ops.find_record(p['state_dir'], p['image'])
        except DattobdError as exc:
            self._refuse(exc.msg, 'record', exc)
        self.boot, self.boot_mtime = self.ops.boot_check(p.get('boot_check_path') or boot_state.BOOT_CHECK_PATH)
        self.boot_id = self.ops.boot_id()
        self._check_run_boot(p.get('run_boot_id'))
        self.names = [p['device']]
        self._decide(record or {})
        try:
            snap = self.ops.tracker_ensure(p['device'], 'snapshot', check_mode=True,
                                           **dict(self._tracker_kwargs(), recover='rebaseline'))
        except DriverTimeout:
            raise  # the driver is wedged: run() fails the cycle at once
        except DattobdError as exc:
            self._refuse('The snapshot cannot be taken: %s' % exc.msg, 'snapshot', exc)
        try:
            self.facts = self.ops.device_facts(p['device'])
        except DattobdError as exc:
            self._refuse(exc.msg, 'destination', exc)
        self.rdev = self.facts.get('rdev')
        self.names = [p['device']] + list(self.facts.get('names') or [])
        self._decide(record or {}, read_meta=False)
        self._check_destination()
        return snap

    def _check_run_boot(self, run_boot_id):
        """A reboot since the run started (the role's ``run_boot_id``): nothing of the run's plan is reused.

        Every volume's cycle reads the live state anyway; this says so, and the tracker step derives the
        minor, the COW file and the reload script again from it (one script per device)."""
        if not run_boot_id:
            return
        self.rebooted_during_run = self.boot_id != run_boot_id
        if self.rebooted_during_run:
            self.warnings.append('The host rebooted during this run (boot id %s when the run started, now %s): the '
                                 'minor, COW file and reload script of this volume are derived again from the live '
                                 'state, and reload scripts left from before the reboot are repaired.'
                                 % (run_boot_id, self.boot_id or 'unknown'))

    def _decide(self, record, read_meta=True, locked=False):
        """The mode from ``record``, the image metadata (read again with ``read_meta``) and the boot check."""
        p = self.p
        image = p['image']
        self.loaded_record = record
        if read_meta:
            try:
                self.meta = self.ops.load_meta(image) if self.ops.exists(image) else None
            except DattobdError as exc:
                self._refuse(exc.msg, 'destination', exc, locked=locked)
        minor = p.get('minor') if p.get('minor') is not None else record.get('minor')
        self.mode, self.reason = self.decide(record, self.meta, self.ops.exists(image), self.boot,
                                             self.boot_mtime, self.names, minor)
        # A record of an earlier version has no boot id: count that as a reboot (the safe side).
        self.rebooted = self.boot_id is None or record.get('boot_id') != self.boot_id

    planned_dirs = ()  # check mode: image directories the call would create first (image_dirs)

    def _check_destination(self, locked=False):
        """The destination for the mode decided: root-only, not on the volume, the right size, room for a full copy."""
        if os.path.dirname(os.path.normpath(self.p['image'])) in self.planned_dirs:
            return  # check mode: the call creates the directory first; nothing in it to check yet
        try:
            # room for a whole new image, unless the full backup compares with the image in place
            need_full = self.mode == 'full' and self._rebaseline_method(self.facts.get('size')) != plan_mod.COMPARE
            self.ops.check_destination(self.p['image'], self.rdev, self.facts.get('size'), need_full,
                                       self.p.get('check_free_space', True))
        except DattobdError as exc:
            self._refuse(exc.msg, 'destination', exc, locked=locked)

    def _run(self, snap, verify_hooks):
        """The cycle once its snapshot is taken (:meth:`Group._snapshot`): copy, verify, complete."""
        tracker, minor, seq, uuid, pending = self._journal_pending(snap)
        lost = None
        if 'before' in snap and not snap['before'] and not snap.get('rebaseline_required'):
            lost = 'boot' if self.rebooted else 'run'  # no tracker was there: set up again
        self.mode, self.reason, pending = plan_mod.copy_mode(self.mode, self.reason, snap.get('rebaseline_required'),
                                                             self.meta, uuid, seq, pending, lost=lost)
        result = None
        # the steps check mode reports (backup_plan.cycle_steps), executed
        for step in plan_mod.cycle_steps(self.rebooted, self.mode, self.p['after_reboot'], pending, verify_hooks):
            if step == plan_mod.AFTER_REBOOT:
                self._after_reboot(minor, pending)
            elif step == plan_mod.COPY:
                result = self._copy(minor, uuid, seq, pending, self.meta)
            elif step == plan_mod.VERIFY:
                self.verification = self._verify(minor, pending, result)
            elif step == plan_mod.VERIFY_HOOKS:
                self._verify_hooks(verify_hooks, snap, tracker, minor, pending)
            else:  # COMPLETE
                return self._complete(result, tracker, minor, uuid, seq, pending)
        raise AssertionError('cycle_steps ends with the complete step')  # pragma: no cover

    def _begin(self):
        """Move an old record under the lock, decide again if another cycle ended meanwhile, start the record."""
        p = self.p
        image = p['image']
        try:
            record, moved = self.ops.migrate_record(p['state_dir'], image)
        except DattobdError as exc:
            self._refuse(exc.msg, exc.details.get('step') or 'record', exc, locked=True)
        self.actions.extend(moved)
        record = record or {}
        if record != self.loaded_record:  # another cycle ended between the checks and the lock
            self._decide(record, locked=True)
            self._check_destination(locked=True)
        self.started = now_text()
        self.began = time.monotonic()
        self.record = dict(record, name=p.get('name') or record.get('name') or os.path.basename(image),
                           device=p['device'], image=image, started=self.started)
        self.record.setdefault('pending_cow_files', [])

    def _hook_env(self, phase):
        return {'SNAPFLEET_HOOK_PHASE': phase, 'SNAPFLEET_DEVICE': self.p['device'], 'SNAPFLEET_IMAGE': self.p['image']}

    def _abandon_snapshot(self, snap, msg):
        """The snapshot of this volume was taken but its group failed: journal the COW file the copy would have
        read, go back to incremental, fail (image untouched; the next run copies what this one did not)."""
        tracker, minor, seq, uuid, pending = self._journal_pending(snap)
        lost = None
        if 'before' in snap and not snap['before'] and not snap.get('rebaseline_required'):
            lost = 'boot' if self.rebooted else 'run'
        self.mode, self.reason, pending = plan_mod.copy_mode(self.mode, self.reason, snap.get('rebaseline_required'),
                                                             self.meta, uuid, seq, pending, lost=lost)
        healthy = self._back_to_incremental()
        self.record['pending_cow_files'] = pending
        if not healthy or self.mode == 'full':
            nxt = 'full'
        else:
            nxt = 'resume' if pending else 'incremental'
        self._fail('%s Its snapshot was taken, then the tracker went back to incremental without a copy.' % msg,
                   'group', 'untouched', nxt, why=self._lost_tracker_reason(healthy))

    def _complete(self, result, tracker, minor, uuid, seq, pending):
        """The image is complete: record it, back to incremental, remove the consumed COW files, the result."""
        p = self.p
        image = p['image']
        # Record first: the image is complete now, whatever happens to the tracker.
        self.record.update(uuid=uuid, seq_id=seq, pending_cow_files=[], image_state='complete')
        # The boot whose mount-time writes the image holds: every block after a full copy, the
        # mount regions when they were copied; else the next cycle after this reboot copies them.
        if not self.rebooted or self.mode == 'full' or self.mount_runs is not None or p['after_reboot'] == 'none':
            self.record['boot_id'] = self.boot_id
        if self.mode == 'full':
            self.record['last_full_epoch'] = self.clock()
        self._record_verification(self.verification, ok=True)
        self._note_untracked()
        try:
            if self.wedged:
                raise wedge.error({'reason': 'a driver call of this cycle timed out'}, fresh=True)
            final = self._ensure('incremental')
        except DattobdError as exc:
            tracker_now = None
            if not self._timed_out(exc):
                try:
                    tracker_now = self.ops.read_tracker(minor)
                except DattobdError:
                    tracker_now = None
            healthy = tracker_now is not None and not tracker_now.failed
            self._fail('The image is complete (seq_id %s), but going back to incremental failed: %s'
                       % (seq, exc.msg), 'incremental', 'complete', 'incremental' if healthy else 'full', exc=exc,
                       record=dict(self.record, last_success=now_text(), **self._figures(result)),
                       why=self._lost_tracker_reason(healthy, exc.msg))
        for entry in pending:
            self._remove_cow(entry['path'])
        self._remove_leftovers(final, pending)
        if self.interrupted is not None:
            self.warnings.append('Got %s after the copy was complete; the cycle finished its last steps.'
                                 % signal_name(self.interrupted))
        seconds = round(time.monotonic() - self.began, 3)
        figures = self._figures(result)
        self.record.update(figures, last_result='ok', msg=None, step=None, finished=now_text(),
                           last_success=now_text(), next_run='incremental', mode=self.mode,
                           reason=str(self.reason) if self.reason else None, reason_detail=detail_of(self.reason),
                           next_full_reason=None, next_full_reason_detail=None, cycle_seconds=seconds)
        self.record['history'] = history_mod.appended(self.record, self.record['finished'], 'ok', self.mode,
                                                      figures=figures, cycle_seconds=seconds)
        record_path = None
        try:
            record_path = self.ops.save_record(p['state_dir'], image, self.record)
        except (OSError, DattobdError) as exc:
            self.warnings.append('Cannot write the backup record: %s' % exc)
        out = dict(changed=True, mode=self.mode, reason=self.record['reason'],
                   reason_detail=self.record['reason_detail'], actions=self.actions, hooks=self.hooks, image=image,
                   image_state='complete', next_run='incremental',
                   minor=minor, uuid=uuid, seq_id=seq, removed_cow_files=self.removed,
                   leftover_cow_files=self.leftovers, record=record_path,
                   cycle_seconds=seconds, warnings=self.warnings, tracker=final.get('tracker') or tracker,
                   after_reboot=self.after_reboot, verification=self.verification)
        out.update(figures)
        return out

    def _sparse_text(self):
        if (self.p.get('sparse') or 'filesystem') == 'filesystem':
            return 'blocks the filesystem reports unallocated are not read, all-zero blocks not written'
        return 'all-zero blocks are not written'

    @staticmethod
    def _figures(result):
        out = dict(blocks=result.get('blocks'), bytes=result.get('bytes'), seconds=result.get('seconds'),
                   mb_per_s=result.get('mb_per_s'), verified=result.get('verified', False),
                   read_bytes=result.get('read_bytes'))
        if result.get('sparse'):
            out['sparse'] = result['sparse']
        # how a full backup wrote the image (None for the other modes: the record keeps no stale one)
        out['rebaseline'] = result.get('rebaseline')
        return out


def run_cycle(params, ops=None, check_mode=False, handle_signals=False):
    """Run one backup cycle (see the module docstring). Returns the result dict.

    With ``handle_signals``, SIGTERM/SIGINT/SIGHUP stop the copy cleanly (tracker back to
    incremental, image resumable) instead of killing the process in the middle of it.
    """
    cycle = Cycle(params, ops)
    previous = {}
    if handle_signals and not check_mode:
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, cycle.on_signal)
    try:
        return cycle.run(check_mode=check_mode)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
