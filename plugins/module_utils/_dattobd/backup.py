# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup library's entry points: the ``backup`` module's runner (:func:`module_runner`), one volume
(:func:`run_volume`: its cycle, with the monitor's pings), and every volume of a host (:func:`run_volumes`:
each validated before any acts, one after the other, the volumes of a consistency group together,
:class:`Group`).

The cycle of one volume is :class:`backup_cycle.Cycle` (its steps in backup_cycle.py); the library's public
names are importable from here, each defined in the file of its concern.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import stat
import time

from . import copy as copy_mod
from . import ping as ping_mod
from .errors import DattobdError
# The public names of the backup library, defined in the files of their concern:
from .backup_hooks import validate_hooks  # noqa: F401 pylint: disable=unused-import
from .backup_params import (  # noqa: F401 pylint: disable=unused-import
    AFTER_REBOOT, ARGUMENT_RULES, IMAGE_STATES, MODES, SPARSE, VERIFY, argument_spec, check_group, check_group_hooks,
    validate_params, validate_volumes, volume_label, volume_params)
from .backup_ops import Ops, check_destination  # noqa: F401 pylint: disable=unused-import
from .backup_record import (  # noqa: F401 pylint: disable=unused-import
    DEFAULT_STATE_DIR, RECORD_FORMAT, _private_dir, check_state_dir, find_record, legacy_record_name, load_record, lock_name,
    migrate_record, record_name, save_record)
from .boot_state import BOOT_CHECK_PATH, boot_requires_full, read_boot_check  # noqa: F401 pylint: disable=unused-import
from .backup_cycle import Cycle, run_cycle  # noqa: F401 pylint: disable=unused-import
from .backup_group import (  # noqa: F401 pylint: disable=unused-import
    SIGNALS, BackupError, Group, Interrupted, _text, signal_name)


UNEXPECTED = dict(msg='Backup cycle failed unexpectedly: %s',
                  hint='Check the image directory and the state directory, then run again.')


def module_runner(module, ops_factory=None):
    """The ``backup`` module's work on its validated ``module.params`` (``ops_factory``: tests).

    One cycle (the single-volume form, ``device`` and ``image``: :func:`run_volume`), or every cycle of the
    host (``volumes``, :func:`run_volumes`)."""
    params = dict(module.params)
    if params.get('volumes') is None:
        return run_volume(params, module=module, ops=ops_factory(module) if ops_factory else None,
                          check_mode=module.check_mode)

    def make_ops(p):  # read_depth: checked with every other parameter (validate_volumes) before any Ops
        return ops_factory(module) if ops_factory else volume_ops(p, module=module)

    return run_volumes(volume_params(params), make_ops, check_mode=module.check_mode, handle_signals=True)


def volume_ops(params, module=None):
    """The :class:`Ops` of a volume's cycle: its ``timeout``, ``dbdctl_path`` and ``read_depth`` (checked)."""
    read_depth = copy_mod.check_read_depth(params['read_depth'])
    return Ops(module=module, timeout=params['timeout'], dbdctl_path=params['dbdctl_path'], read_depth=read_depth)


def run_volume(params, module=None, ops=None, check_mode=False):
    """One cycle of a volume's validated options (the ``backup`` module's, or the host runner's, cli.py).

    ``params``: every option of :func:`argument_spec` (defaults filled); ``ops``: tests. A failure
    says how long the call took (``cycle_seconds``).
    """
    began = time.monotonic()
    params = dict(params)
    pings = ping_mod.Pings([params.get('ping_url')], check_mode=check_mode)
    if pings.urls:
        validate_params(dict(params))  # a refused request pings nothing (run_cycle validates again)
    ops = ops or volume_ops(params, module=module)
    pings.start()
    try:
        result = run_cycle(params, ops=ops, check_mode=check_mode, handle_signals=True)
    except DattobdError as exc:
        # How long the call took until it failed: one timeout for the first volume of a wedged host, none for
        # the next ones (a fleet run tells the two apart by it).
        exc.details.setdefault('cycle_seconds', round(time.monotonic() - began, 3))
        if pings.urls:
            exc.details['ping'] = pings.finish(dict((url, [_failure_line(params, exc.to_result())])
                                                    for url in pings.urls))
            exc.details['warnings'] = exc.warnings + pings.warnings
        raise
    except BaseException as exc:  # the monitor still hears of it; the caller reports the exception
        pings.finish(dict((url, [_failure_line(params, dict(msg=str(exc)))]) for url in pings.urls))
        raise
    if pings.urls:
        result['ping'] = pings.finish({})
        result['warnings'] = list(result.get('warnings') or []) + pings.warnings
    return result


def _failure_line(params, result):
    """One line of a failed cycle for the monitor: ``name: failed at step: message``."""
    name = params.get('name') or os.path.basename(params.get('image') or '') or params.get('device')
    return ' '.join(('%s: failed at %s: %s' % (name, result.get('step') or '?', result.get('msg'))).split())


def _failure(exc, began):
    """A failed volume's entry: what the single-volume form's failure result holds (``fail_module``)."""
    if isinstance(exc, DattobdError):
        exc.details.setdefault('cycle_seconds', round(time.monotonic() - began, 3))
        out = exc.to_result()
        out['warnings'] = exc.warnings
    else:
        out = dict(UNEXPECTED, msg=UNEXPECTED['msg'] % exc, warnings=[])
    out.update(failed=True, changed=False)
    return out


def image_dirs(volumes, check_mode=False):
    """The image directories of the volumes with ``create_dirs``, made root-only before any volume acts (in check
    mode only listed): ``(created, secured)``. ``created``: missing ones, made 0700 with their missing parents;
    ``secured``: existing ones that were not 0700 and owned by this user (root), chmod 0700 and chown, as the role's
    ``file`` task made them. One that cannot be made so raises :class:`DattobdError` (no volume has acted)."""
    created, secured = [], []
    for p in volumes:
        parent = os.path.dirname(os.path.normpath(p['image']))
        if not p.get('create_dirs') or parent in created or parent in secured:
            continue
        try:
            st = os.stat(parent)
        except OSError:
            created.append(parent)
            continue
        if not stat.S_ISDIR(st.st_mode):
            created.append(parent)  # makedirs fails on it, with the reason
        elif stat.S_IMODE(st.st_mode) != 0o700 or (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            secured.append(parent)
    if not check_mode:
        for directory in created + secured:
            try:
                if directory in created:
                    os.makedirs(directory, 0o700)
                os.chown(directory, os.geteuid(), os.getegid())
                os.chmod(directory, 0o700)  # whatever the umask
            except OSError as exc:
                raise DattobdError('The image directory %s could not be %s: %s.'
                                   % (directory, 'created' if directory in created else 'made root-only (0700)',
                                      exc.strerror or exc),
                                   step='destination', image_state='untouched',
                                   hint='Check the backup disk (mounted? read-only?), then run again.')
    return created, secured


class _Volumes(object):
    """The signal handler of a call with several volumes: the running cycles stop, the next ones do not start."""

    def __init__(self):
        self.cycles = []
        self.interrupted = None

    def on_signal(self, signum, frame=None):
        self.interrupted = signum
        for cycle in list(self.cycles):
            cycle.on_signal(signum, frame)


def _batches(volumes):
    """The indexes of ``volumes`` as they run: a volume alone, or a consistency group (``group``) where its first
    volume is, its volumes in the order given. Returns ``[(group name or None, [index, ...]), ...]``."""
    out, where = [], {}
    for index, p in enumerate(volumes):
        name = p.get('group')
        if name is None:
            out.append((None, [index]))
        elif name in where:
            out[where[name]][1].append(index)
        else:
            where[name] = len(out)
            out.append((name, [index]))
    return out


def run_volumes(volumes, make_ops, check_mode=False, handle_signals=False):
    """Every volume's cycle, one after the other (``volumes``: :func:`volume_params`, ``make_ops(params)``: the
    :class:`Ops` of one); the module's result.

    Every element is validated before any volume acts: a rejected element raises (nothing ran, nothing
    was written). Then a volume that fails does not stop the next ones; a wedged driver fails them at
    once (``Ops.check_driver``, wedge.py), a signal stops the running cycle and starts no other.
    ``volumes`` of the result holds one entry per volume: the single-volume form's result (success or
    failure) with its ``name``, ``device``, ``image``, ``failed`` and ``changed``.

    The volumes of a consistency group (the same ``group``) run together where the first of them is
    (:class:`Group`): their entries say ``group``, and ``groups`` of the result has one entry per group.
    """
    validate_volumes(volumes)
    made, secured = image_dirs(volumes, check_mode)
    pings = ping_mod.Pings([p.get('ping_url') for p in volumes], check_mode=check_mode)
    pings.start()
    state = _Volumes()
    previous = {}
    if handle_signals and not check_mode:
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, state.on_signal)
    entries = {}
    groups = []
    try:
        for name, indexes in _batches(volumes):
            began = time.monotonic()
            outcomes, group = _run_batch(volumes, indexes, name, make_ops, made, check_mode, state)
            for index, outcome in zip(indexes, outcomes):
                entries[index] = _entry(volumes[index], index, outcome, began, name)
            if name is not None:
                groups.append(group.summary(check_mode) if group is not None else dict(
                    name=name, volumes=[_volume_name(volumes[i]) for i in indexes],
                    snapshot_window_ms=None, failed=True, msg=_text(outcomes[0])))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    out = _summary([entries[index] for index in sorted(entries)], check_mode)
    out.update(created_dirs=made, secured_dirs=secured)
    out['changed'] = out['changed'] or bool(made) or bool(secured)
    if groups:
        out['groups'] = groups
    if pings.urls:
        failures = {}
        for index in sorted(entries):
            if entries[index]['failed'] and volumes[index].get('ping_url'):
                failures.setdefault(volumes[index]['ping_url'], []).append(_failure_line(volumes[index], entries[index]))
        out['ping'] = pings.finish(failures)
        out['warnings'] = out['warnings'] + pings.warnings
    return out


def _volume_name(p):
    """A volume's name in results: its ``name``, else its image's file name."""
    return p.get('name') or os.path.basename(p['image'])


def _run_batch(volumes, indexes, name, make_ops, made, check_mode, state):
    """``(one outcome per volume: a result or an exception, the Group or None)`` of one volume or one consistency
    group (``name``); none runs once a signal was received (``state``, :class:`_Volumes`)."""
    if state.interrupted is not None:
        msg = 'Interrupted by %s before this volume started; nothing was changed.' % signal_name(state.interrupted)
        return [BackupError(msg, step='interrupted', image_state='untouched', actions=[], hooks=[], record=None)
                for dummy in indexes], None
    try:
        state.cycles = [Cycle(volumes[index], make_ops(volumes[index])) for index in indexes]
        for cycle in state.cycles:
            cycle.planned_dirs = made if check_mode else ()
        group = Group(state.cycles, name)
        return group.run(check_mode=check_mode), group
    except (DattobdError, OSError, ValueError) as exc:  # the ops of a volume (read_depth)
        return [exc for dummy in indexes], None
    finally:
        state.cycles = []


def _entry(p, index, outcome, began, group_name):
    """The result entry of one volume (``outcome``: its cycle's result, or the exception that ended it)."""
    out = _failure(outcome, began) if isinstance(outcome, BaseException) else dict(outcome, failed=False)
    out.update(name=_volume_name(p), device=p['device'], image=p['image'], volume=index)
    out['changed'] = bool(out.get('changed'))
    if group_name is not None:
        out['group'] = group_name
    return out


def _summary(entries, check_mode):
    failed = [e for e in entries if e['failed']]
    warnings = ['%s: %s' % (e['name'], w) for e in entries for w in e.get('warnings') or []]
    if check_mode:
        msg = 'Check mode: %d volume(s) planned' % len(entries)
    else:
        msg = '%d of %d volume(s) backed up' % (len(entries) - len(failed), len(entries))
    if failed:
        msg += '; failed: %s' % '; '.join(
            '%s (at %s): %s' % (e['name'], e.get('step') or '?', e.get('msg')) for e in failed)
    out = dict(changed=any(e['changed'] for e in entries), volumes=entries, msg=msg + '.', warnings=warnings)
    if failed:
        out['failed'] = True
    return out
