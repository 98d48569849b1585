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
import shlex
import signal
import time

from . import backup_hooks as hooks_mod
from . import backup_plan as plan_mod
from . import fsmap
from . import image as image_mod
from . import sync as sync_mod
from . import tracker as tracker_mod
from . import verify as verify_mod
from .constants import now_text
from .errors import DattobdError
from .runs import merge_runs
# The public names of the backup library, defined in the files of their concern:
from .backup_hooks import validate_hooks  # noqa: F401 pylint: disable=unused-import
from .backup_ops import Ops, check_destination  # noqa: F401 pylint: disable=unused-import
from .backup_record import (  # noqa: F401 pylint: disable=unused-import
    DEFAULT_STATE_DIR, RECORD_FORMAT, _private_dir, check_state_dir, find_record, legacy_record_name, load_record, lock_name,
    migrate_record, record_name, save_record)
from .boot_state import BOOT_CHECK_PATH, boot_requires_full, read_boot_check  # noqa: F401 pylint: disable=unused-import

AFTER_REBOOT = ('metadata', 'full', 'none')
PARTIAL_SUFFIX = '.partial'
VERIFY = sync_mod.VERIFY

MODES = ('full', 'incremental', 'resume')
SPARSE = ('filesystem', 'zeros')
IMAGE_STATES = ('untouched', 'resumable', 'complete')


class BackupError(DattobdError):
    """A failed cycle; ``details`` carry ``image_state``, ``next_run``, ``step``, ``actions``, ``hooks``."""


class Interrupted(DattobdError):
    """The module process got SIGTERM/SIGINT/SIGHUP while the cycle could still stop cleanly."""


SIGNALS = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGINT', 'SIGHUP') if hasattr(signal, name))


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except (ValueError, AttributeError):
        return 'signal %s' % signum


PATH_OPTIONS = ('image', 'state_dir', 'boot_check_path', 'cow_dir', 'dbdctl_path')


def validate_params(p):
    """Check every parameter of a cycle, touching nothing; returns the hooks ``(pre, post, verify)``.

    Defaults are filled in ``p``. Raises :class:`DattobdError` (``step`` ``parameters``).
    """
    try:
        return _validate_params(p)
    except DattobdError as exc:
        exc.details.setdefault('step', 'parameters')
        exc.details.setdefault('image_state', 'untouched')
        raise


def _validate_params(p):
    p.setdefault('state_dir', DEFAULT_STATE_DIR)
    p.setdefault('verify', 'none')
    p['after_reboot'] = p.get('after_reboot') or 'metadata'
    device = p.get('device')
    if not isinstance(device, str) or not device.startswith('/'):
        raise DattobdError('device must be an absolute path (a block device or a mount point), got %r.' % (device,))
    for key in PATH_OPTIONS:
        value = p.get(key)
        if value is None and key not in ('image', 'state_dir'):
            continue
        if not isinstance(value, str) or not os.path.isabs(value) or '\0' in value:
            raise DattobdError('%s must be an absolute path, got %r.' % (key, value))
    if p['verify'] not in VERIFY:
        raise DattobdError('verify must be one of %s, got %r.' % (', '.join(VERIFY), p['verify']))
    if (p.get('sparse') or 'filesystem') not in SPARSE:
        raise DattobdError('sparse must be one of %s, got %r.' % (', '.join(SPARSE), p.get('sparse')))
    if p['after_reboot'] not in AFTER_REBOOT:
        raise DattobdError('after_reboot must be one of %s, got %r.' % (', '.join(AFTER_REBOOT), p['after_reboot']))
    tracker_mod.check_options(p.get('minor'), p.get('cache_size'), p.get('fallocate'), p.get('timeout', 60),
                              p.get('cow_name'))
    verify_mod.validate(p)
    return (validate_hooks(p.get('pre_hooks'), 'pre_hooks'), validate_hooks(p.get('post_hooks'), 'post_hooks'),
            validate_hooks(p.get('verify_hooks'), 'verify_hooks'))


class Cycle(object):
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
        self.loaded_record = {}
        self.legacy_record = None  # the record under its old name, moved once the lock is held
        self.clock = time.time  # wall clock of the full-verification schedule (tests replace it)
        self.extra_copied = None  # the blocks copied besides the change list (_extra_runs)
        self.verification = None  # what this cycle verified beyond the change list (result key)

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
        env = {'SNAPFLEET_HOOK_PHASE': phase, 'SNAPFLEET_DEVICE': self.p['device'], 'SNAPFLEET_IMAGE': self.p['image']}
        env.update(extra_env or {})
        return hooks_mod.run_hooks(self.ops, phase, hooks, env, self)

    def _device_names(self, res=None):
        names = [self.p['device']]
        dev = (res or {}).get('device') or {}
        for key in ('path', 'stable_name', 'given'):
            if dev.get(key):
                names.append(dev[key])
        return names

    def _fail(self, msg, step, image_state, next_run, hint=None, exc=None, record=None):
        details = {}
        if exc is not None:
            details = dict(getattr(exc, 'details', {}) or {})
            details.pop('actions', None)
            if hint is None:
                hint = getattr(exc, 'hint', None)
        record = dict(record or self.record, last_result='failed', msg=msg, finished=now_text(), step=step,
                      image_state=image_state, next_run=next_run, mode=self.mode)
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
        details.update(step=step, image_state=image_state, next_run=next_run, actions=list(self.actions),
                       hooks=self.hooks, warnings=self.warnings, mode=self.mode, record=record_path,
                       image=self.p['image'], device=self.p['device'])
        raise BackupError('%s %s %s' % (msg.rstrip(), img, nxt), hint=hint, **details)

    def _note_untracked(self, failed=False):
        """Record the blocks the driver wrote untracked into the live COW file's data area.

        Called right before the tracker goes back to incremental (see ``sync.cow_data_runs``);
        the next sync copies them. On failure the runs not yet copied are kept as well.
        """
        if self.untracked is None:
            return
        path, minor, consumed = self.untracked
        self.untracked = None
        runs = []
        try:
            if path:
                runs = self.ops.untracked_runs(path, minor)
        except (OSError, ValueError, DattobdError) as exc:
            self.warnings.append('Cannot locate the blocks of the COW file %s (%s): the next incremental backup may '
                                 'miss what the driver wrote there; take a full backup to be sure.' % (path, exc))
        if failed:
            runs = merge_runs([sorted(tuple(r) for r in consumed), sorted(tuple(r) for r in runs)])
        self.record['untracked_runs'] = [list(r) for r in runs]

    def _back_to_incremental(self):
        """Best effort after a failure: returns True when the tracker is healthy and incremental."""
        self._note_untracked(failed=True)
        try:
            self._ensure('incremental')
            return True
        except DattobdError as exc:
            self.warnings.append('Could not transition the tracker back to incremental: %s' % exc.full_msg)
            return False

    # --- the cycle ---------------------------------------------------------------------------
    def decide(self, record, meta, image_exists, boot, boot_mtime, names=None, minor=None):
        return plan_mod.decide_mode(self.p.get('full'), record, meta, image_exists, boot, boot_mtime,
                                    names or [self.p['device']], minor)

    def run(self, check_mode=False):
        """Validate every parameter, run every readiness check (reading only), then act.

        A request refused before the cycle starts raises :class:`DattobdError` (a parameter) or
        :class:`BackupError` (a readiness check) and leaves the host as it was: no hook run, no
        lock, no record, no directory. Check mode takes the same decisions, then reports the plan.
        """
        pre, post, verify_hooks = validate_params(self.p)
        snap = self._ready()
        if check_mode:
            return self._plan(pre, post, snap)
        lock = self.ops.lock(self.p['state_dir'], self.p['image'])
        try:
            return self._run(pre, post, verify_hooks)
        finally:
            self.ops.unlock(lock)

    def _refuse(self, msg, step, exc=None, locked=False):
        """A readiness check failed: raise, having changed nothing (no hook, no record; no lock unless ``locked``)."""
        details = dict(getattr(exc, 'details', {}) or {})
        details.pop('actions', None)
        details.update(step=step, image_state='untouched', actions=[], hooks=[], warnings=self.warnings,
                       mode=self.mode, record=None, image=self.p['image'], device=self.p['device'])
        if self.mode is not None:
            details['next_run'] = self.mode
        done = 'the lock was taken, but no hook ran and no record was written' if locked else \
            'no hook ran, no record or lock was written'
        raise BackupError('%s Nothing was changed: %s.' % (msg.rstrip(), done), hint=getattr(exc, 'hint', None),
                          **details)

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
        self.boot, self.boot_mtime = self.ops.boot_check(p.get('boot_check_path') or BOOT_CHECK_PATH)
        self.boot_id = self.ops.boot_id()
        self.names = [p['device']]
        self._decide(record or {})
        try:
            snap = self.ops.tracker_ensure(p['device'], 'snapshot', check_mode=True,
                                           **dict(self._tracker_kwargs(), recover='rebaseline'))
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

    def _check_destination(self, locked=False):
        """The destination for the mode decided: root-only, not on the volume, the right size, room for a full copy."""
        try:
            self.ops.check_destination(self.p['image'], self.rdev, self.facts.get('size'), self.mode == 'full',
                                       self.p.get('check_free_space', True))
        except DattobdError as exc:
            self._refuse(exc.msg, 'destination', exc, locked=locked)

    def _run(self, pre, post, verify_hooks):
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
        meta, rebooted, boot_id = self.meta, self.rebooted, self.boot_id
        self.started = now_text()
        began = time.monotonic()
        self.record = dict(record, name=p.get('name') or record.get('name') or os.path.basename(image),
                           device=p['device'], image=image, started=self.started)
        self.record.setdefault('pending_cow_files', [])

        if not self._run_hooks('pre', pre):
            if pre:
                self._run_hooks('post', post)
            self._fail('A pre hook failed; no snapshot was taken.', 'pre_hooks', 'untouched',
                       'full' if self.mode == 'full' else self.mode,
                       hint='Fix the hook command (its output is in hooks).')
        if self.interrupted is not None:
            if pre:
                self._run_hooks('post', post)
            self._fail('Interrupted by %s before the snapshot; nothing was changed.' % signal_name(self.interrupted),
                       'interrupted', 'untouched', self.mode)
        try:
            snap = self._ensure('snapshot')
        except DattobdError as exc:
            self._run_hooks('post', post)
            healthy = self._back_to_incremental()
            nxt = self.mode if healthy else 'full'
            self._fail('Taking the snapshot failed: %s' % exc.msg, 'snapshot', 'untouched', nxt, exc=exc)
        self._run_hooks('post', post)

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

        self.mode, self.reason, pending = plan_mod.copy_mode(self.mode, self.reason, snap.get('rebaseline_required'),
                                                             meta, uuid, seq, pending)
        if plan_mod.after_reboot_step(rebooted, self.mode, p['after_reboot'], pending):
            self._after_reboot(minor, pending)
        result = self._copy(minor, uuid, seq, pending, meta)
        self.verification = self._verify(minor, pending, result)
        if verify_hooks:
            self._verify_hooks(verify_hooks, snap, tracker, minor, pending)

        # Record first: the image is complete now, whatever happens to the tracker.
        self.record.update(uuid=uuid, seq_id=seq, pending_cow_files=[], image_state='complete')
        # The boot whose mount-time writes the image holds: every block after a full copy, the
        # mount regions when they were copied; else the next cycle after this reboot copies them.
        if not rebooted or self.mode == 'full' or self.mount_runs is not None or p['after_reboot'] == 'none':
            self.record['boot_id'] = boot_id
        if self.mode == 'full':
            self.record['last_full_epoch'] = self.clock()
        self._record_verification(self.verification, ok=True)
        self._note_untracked()
        try:
            final = self._ensure('incremental')
        except DattobdError as exc:
            try:
                tracker_now = self.ops.read_tracker(minor)
            except DattobdError:
                tracker_now = None
            nxt = 'incremental' if tracker_now is not None and not tracker_now.failed else 'full'
            self._fail('The image is complete (seq_id %s), but going back to incremental failed: %s'
                       % (seq, exc.msg), 'incremental', 'complete', nxt, exc=exc,
                       record=dict(self.record, last_success=now_text(), **self._figures(result)))
        for entry in pending:
            self._remove_cow(entry['path'])
        if self.interrupted is not None:
            self.warnings.append('Got %s after the copy was complete; the cycle finished its last steps.'
                                 % signal_name(self.interrupted))
        seconds = round(time.monotonic() - began, 3)
        figures = self._figures(result)
        self.record.update(figures, last_result='ok', msg=None, step=None, finished=now_text(),
                           last_success=now_text(), next_run='incremental', mode=self.mode,
                           cycle_seconds=seconds)
        record_path = None
        try:
            record_path = self.ops.save_record(p['state_dir'], image, self.record)
        except (OSError, DattobdError) as exc:
            self.warnings.append('Cannot write the backup record: %s' % exc)
        out = dict(changed=True, mode=self.mode, reason=self.reason, actions=self.actions, hooks=self.hooks,
                   image=image, image_state='complete', next_run='incremental',
                   minor=minor, uuid=uuid, seq_id=seq, removed_cow_files=self.removed, record=record_path,
                   cycle_seconds=seconds, warnings=self.warnings, tracker=final.get('tracker') or tracker,
                   after_reboot=self.after_reboot, verification=self.verification)
        out.update(figures)
        return out

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
            self.warnings.append('First backup since a reboot with after_reboot=none: the blocks the filesystem '
                                 'wrote while it was mounted at boot are not copied; the image may differ there.')
            return
        if policy == 'full':
            self.mode, self.reason = 'full', plan_mod.AFTER_REBOOT_FULL
            return
        snapshot = self.ops.snapshot_device(minor)
        try:
            found = self.ops.mount_map(snapshot, [e['path'] for e in pending])
        except (OSError, DattobdError) as exc:
            found = fsmap.MountMap(None, note='the blocks %s writes at mount are unknown: %s' % (snapshot, exc))
        self.after_reboot.update(found.to_dict())
        if not found.known:
            self.mode, self.reason = 'full', ('first backup since a reboot, and %s: a full backup instead'
                                              % found.note)
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
            trigger = why if due else 'verify=full'
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
            out['full'] = full
            return out
        if not p['verify_sample_budget']:
            return out
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
        return out

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
        self._back_to_incremental()
        self.record['pending_cow_files'] = pending
        try:
            self.ops.mark_unverified(self.p['image'], msg)
        except (OSError, DattobdError) as mark_exc:
            self.warnings.append('Cannot mark the image metadata as failed verification: %s' % mark_exc)
        err = DattobdError(msg, hint='Check the backup storage (dmesg) and the dattobd version; the image is not '
                                     'used as a good image until a full backup replaces it.',
                           verification=out, mismatched_blocks=list(bad)[:100])
        self._fail(msg, 'verify', 'resumable', 'full', exc=err)

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
            self.actions.append('compare a random sample of %d to %d allocated block(s) outside the change list of '
                                '%s with %s (at most %g %% of the copy time; seed %s)'
                                % (p['verify_sample_min'], p['verify_sample_max'], p['image'], snapshot,
                                   100 * p['verify_sample_budget'], 'random' if seed is None else seed))
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
        return out

    @staticmethod
    def _live_cow(snap, tracker):
        """Absolute path of the snapshot's live COW file."""
        live = snap.get('new_cow_file')
        mount_point = (snap.get('device') or {}).get('mount_point')
        if not live and tracker.get('cow_file') and mount_point:
            live = os.path.join(mount_point, tracker['cow_file'].lstrip('/'))
        return live

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
                   hint='Its output is in hooks. The next run takes a full backup.')

    def _remove_cow(self, path):
        self.actions.append('remove %s' % path)
        try:
            self.ops.unlink(path)
            self.removed.append(path)
        except OSError as exc:
            if self.ops.exists(path):
                self.warnings.append('Cannot remove the old COW file %s: %s' % (path, os.strerror(exc.errno or 0)))

    def _copy(self, minor, uuid, seq, pending, meta):
        p = self.p
        image = p['image']
        snapshot = self.ops.snapshot_device(minor)
        if self.mode == 'full':
            partial = image + PARTIAL_SUFFIX
            self.actions.append('copy %s into %s (sparse: %s)' % (snapshot, partial, self._sparse_text()))
            try:
                self.interruptible = True
                self._check_interrupted()
                size = self.ops.size_of(snapshot)
                self.ops.check_destination(image, self.rdev, size, True, p.get('check_free_space', True))
                stats = self.ops.full_copy(snapshot, partial, sparse=p.get('sparse') or 'filesystem')
                stats = stats.to_dict() if hasattr(stats, 'to_dict') else dict(stats)
                note = (stats.get('sparse') or {}).get('note')
                if note and p.get('sparse', 'filesystem') == 'filesystem':
                    self.warnings.append('Filesystem-aware sparse copy not used: %s.' % note)
                # Throughput of a full copy: the volume read (holes are not written, but read all the same).
                if stats.get('read_bytes') and stats.get('seconds'):
                    stats['mb_per_s'] = round(stats['read_bytes'] / 1048576.0 / stats['seconds'], 2)
                if p['verify'] != 'none':
                    self.actions.append('verify %s against %s' % (partial, snapshot))
                    stats.update(self.ops.verify_copy(snapshot, partial))
                self.interruptible = False  # from here on the image is replaced: finish
                self.actions.append('remove %s' % image_mod.sidecar_path(image))
                self.ops.remove_meta(image)
                self.actions.append('rename %s to %s' % (partial, image))
                self.ops.rename(partial, image)
                self.actions.append('write %s (seq_id %s)' % (image_mod.sidecar_path(image), seq))
                self.ops.init_meta(image, uuid, seq, size)
            except (OSError, DattobdError) as exc:
                self.interruptible = False
                text = exc.msg if isinstance(exc, DattobdError) else '%s: %s' % (
                    getattr(exc, 'filename', None) or image, os.strerror(exc.errno or 0))
                for path in (partial,):
                    try:
                        if self.ops.exists(path):
                            self.ops.unlink(path)
                    except OSError:
                        self.warnings.append('Cannot remove %s.' % path)
                healthy = self._back_to_incremental()
                self.record['pending_cow_files'] = pending
                self._fail('The full copy failed: %s' % text, 'copy', 'untouched', 'full',
                           exc=exc if isinstance(exc, DattobdError) else None,
                           hint=None if healthy else 'The tracker could not go back to incremental.')
            stats.setdefault('verified', False)
            return stats
        if not pending:
            self.actions.append('nothing to copy: %s already holds snapshot %s' % (image, seq))
            return dict(blocks=0, bytes=0, seconds=0.0, mb_per_s=None, verified=False)
        try:
            self.interruptible = True
            self._check_interrupted()
            if self.mode == 'incremental':
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
            healthy = self._back_to_incremental()
            self.record['pending_cow_files'] = pending
            # A damaged COW file (cow.py) breaks the incremental chain: resuming would meet it again.
            damaged = bool(getattr(exc, 'details', {}).get('cow_damaged'))
            self._fail('Copying the changed blocks failed: %s' % text, 'copy',
                       'resumable' if written else 'untouched', 'resume' if healthy and not damaged else 'full',
                       exc=exc if isinstance(exc, DattobdError) else None)

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
        self.mode, self.reason = plan_mod.planned_copy_mode(self.mode, self.reason, snap.get('rebaseline_required'),
                                                            meta)
        image = p['image']
        pending = [e.get('path') for e in self.loaded_record.get('pending_cow_files') or [] if isinstance(e, dict)]
        previous = snap.get('previous_cow_file')
        step = plan_mod.after_reboot_step(self.rebooted, self.mode, p['after_reboot'],
                                          pending + ([previous] if previous else []))
        if step == 'full':
            self.mode, self.reason = 'full', plan_mod.AFTER_REBOOT_FULL
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
