# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How backup cycles run together: a consistency group (:class:`Group`: the readiness checks of every volume,
the hooks once around snapshots taken back to back, then each copy), a volume alone being a group of one; and
what a cycle raises (:class:`BackupError`, :class:`Interrupted`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import time

from . import backup_hooks as hooks_mod
from .backup_params import validate_params
from .errors import DattobdError


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


class _HookLog(object):
    """Where :func:`backup_hooks.run_hooks` logs the hooks of a group, then handed to every volume of it."""

    def __init__(self):
        self.actions = []
        self.hooks = []
        self.warnings = []


def _text(exc):
    return exc.msg if isinstance(exc, DattobdError) else str(exc)


class Group(object):
    """Volumes whose snapshots are taken together (a consistency group, ``group``), or one volume alone.

    Every volume first passes its readiness checks, takes its lock, makes its restore point and starts its
    record (:meth:`Cycle._prepare`); then the pre hooks run once, every volume transitions to snapshot back to
    back, the post hooks run once (:meth:`_snapshot`); then each volume copies, verifies and goes back to
    incremental, one after the other (:meth:`Cycle._finish`). A failure before the copies fails every volume of
    the group (:meth:`_fail_all`): the volumes already in snapshot go back to incremental, no image is changed.
    A volume alone (``name`` None) is exactly the single cycle: its own hooks, its own failures.

    :meth:`run` returns one outcome per volume, in order: its result, or the exception that failed it.
    """
    # A group runs the steps of its cycles (a single cycle is a group of one): they are its own.
    # pylint: disable=protected-access

    def __init__(self, cycles, name=None):
        self.cycles = list(cycles)
        self.name = name
        self.pre = self.post = []
        self.window_ms = None  # first transition's start to the last one's end (ms), once every one is taken
        self.failure = None  # why the group failed (a sentence), None when its snapshots were taken

    def run(self, check_mode=False):
        for cycle in self.cycles:
            cycle.run_began = time.monotonic()
            cycle.hook_args = validate_params(cycle.p)
        self.pre, self.post = self.cycles[0].hook_args[:2]
        try:
            if self._prepare(check_mode) and not check_mode and self._snapshot():
                for cycle in self.cycles:
                    self._outcome(cycle, cycle._finish, cycle.snap)
        finally:
            for cycle in self.cycles:
                cycle._unlock()
        return [cycle.outcome for cycle in self.cycles]

    @staticmethod
    def _outcome(cycle, step, *args):
        """Run ``step(*args)`` of ``cycle``; its result, or the failure (kept as the outcome), becomes the outcome."""
        try:
            cycle.outcome = step(*args)
        except (DattobdError, OSError, ValueError) as exc:
            cycle.outcome = exc
        return not isinstance(cycle.outcome, BaseException)

    def _label(self, cycle, exc):
        step = exc.details.get('step') if isinstance(exc, DattobdError) else None
        name = cycle.p.get('name') or os.path.basename(cycle.p['image'])
        return '%s%s: %s' % (name, ' (at %s)' % step if step else '', _text(exc).rstrip())

    def _prepare(self, check_mode):
        """Every volume's readiness checks, lock, restore point and record, in order; False when one failed."""
        for cycle in self.cycles:
            cycle.outcome = None
            if not self._outcome(cycle, cycle._prepare, check_mode):
                self._fail_all(cycle, check_mode)
                return False
            cycle.snap, cycle.outcome = cycle.outcome, None
        if check_mode:
            for cycle in self.cycles:
                cycle.outcome = cycle._planned(self.pre, self.post, cycle.snap)
                cycle.snap = None
        return True

    def _fail_all(self, failed, check_mode=False):
        """``failed`` failed the group before any snapshot: every other volume fails too, having changed nothing."""
        self.failure = self._label(failed, failed.outcome)
        for cycle in self.cycles:
            if cycle.outcome is not None:
                continue
            try:
                cycle._refuse('Consistency group %s failed: %s' % (self.name, self.failure), 'group',
                              locked=cycle.lock_handle is not None)
            except BackupError as exc:
                cycle.outcome = exc
                if not check_mode:
                    cycle._publish(exc=exc)

    def _hooks(self, phase, hooks):
        """Run the group's hooks of ``phase`` once; every volume still running gets their actions and entries."""
        log = _HookLog()
        env = self.cycles[0]._hook_env(phase)
        if self.name is not None:
            env.update(SNAPFLEET_GROUP=self.name, SNAPFLEET_DEVICE='\n'.join(c.p['device'] for c in self.cycles),
                       SNAPFLEET_IMAGE='\n'.join(c.p['image'] for c in self.cycles))
        ok = hooks_mod.run_hooks(self.cycles[0].ops, phase, hooks, env, log)
        for cycle in self.cycles:
            if cycle.outcome is None:
                cycle.actions.extend(log.actions)
                cycle.hooks.extend(dict(entry) for entry in log.hooks)
                cycle.warnings.extend(log.warnings)
        return ok

    def _snapshot(self):
        """Pre hooks once, every volume's transition to snapshot back to back, post hooks once (always, once pre
        hooks ran). False when the group failed (every volume's outcome says why)."""
        try:
            return self._take()
        except (OSError, ValueError) as exc:  # unexpected: every volume fails with it
            self.failure = _text(exc)
            for cycle in self.cycles:
                if cycle.outcome is None:
                    cycle.outcome = exc
                    cycle._published_failure(exc)
            return False

    def _take(self):
        own = self.name is None
        if not self._hooks('pre', self.pre):
            if self.pre:
                self._hooks('post', self.post)
            msg = 'A pre hook failed; no snapshot was taken.' if own else \
                'A pre hook of consistency group %s failed; no snapshot was taken.' % self.name
            self.failure = msg
            for cycle in self.cycles:
                self._failed(cycle, cycle._fail, msg, 'pre_hooks', 'untouched',
                             'full' if cycle.mode == 'full' else cycle.mode,
                             hint='Fix the hook command (its output is in hooks).')
            return False
        signum = next((c.interrupted for c in self.cycles if c.interrupted is not None), None)
        if signum is not None:
            if self.pre:
                self._hooks('post', self.post)
            self.failure = 'Interrupted by %s before the snapshot; nothing was changed.' % signal_name(signum)
            for cycle in self.cycles:
                self._failed(cycle, cycle._fail, self.failure, 'interrupted', 'untouched', cycle.mode)
            return False
        first = last = None
        for index, cycle in enumerate(self.cycles):
            began = time.monotonic()
            first = began if first is None else first
            try:
                cycle.snap = cycle._ensure('snapshot')
            except DattobdError as exc:
                self._hooks('post', self.post)
                self._transition_failed(index, exc)
                return False
            last = time.monotonic()
        self.window_ms = round((last - first) * 1000.0, 3)
        self._hooks('post', self.post)
        return True

    def _failed(self, cycle, step, *args, **kw):
        """``step`` (one that raises: a failure of ``cycle``) as ``cycle``'s outcome, with its metrics."""
        try:
            step(*args, **kw)
        except (DattobdError, OSError, ValueError) as exc:
            cycle.outcome = exc
            cycle._published_failure(exc)

    def _transition_failed(self, index, exc):
        """The transition of volume ``index`` failed: back to incremental, every volume of the group fails."""
        cycle = self.cycles[index]
        healthy = cycle._back_to_incremental(exc)
        nxt = cycle.mode if healthy else 'full'
        self._failed(cycle, cycle._fail, 'Taking the snapshot failed: %s' % exc.msg, 'snapshot', 'untouched', nxt,
                     exc=exc, why=cycle._lost_tracker_reason(healthy, exc.msg))
        self.failure = self._label(cycle, cycle.outcome)
        msg = 'Consistency group %s failed: %s' % (self.name, self.failure)
        for other in self.cycles[:index]:
            self._failed(other, other._abandon_snapshot, other.snap, msg)
            other.snap = None
        for other in self.cycles[index + 1:]:
            self._failed(other, other._fail, msg, 'group', 'untouched', other.mode)

    def summary(self, check_mode=False):
        """The group's entry in the ``groups`` of the result."""
        names = [c.p.get('name') or os.path.basename(c.p['image']) for c in self.cycles]
        out = dict(name=self.name, volumes=names, snapshot_window_ms=self.window_ms, failed=self.failure is not None,
                   msg=None)
        if self.failure is not None:
            out['msg'] = 'Consistency group %s failed: %s' % (self.name, self.failure)
        elif check_mode:
            out.update(planned=True, pre_hooks=[h['argv'] for h in self.pre], post_hooks=[h['argv'] for h in self.post],
                       msg='The pre hooks run once, then %s transition to snapshot back to back, then the post '
                           'hooks run once.' % ', '.join(names))
        else:
            out['msg'] = 'The snapshots of %s were taken within %s ms.' % (', '.join(names), self.window_ms)
        return out
