# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The logic of the ``snapshot`` module as a library call (reused by the ``backup`` module).

:func:`ensure` brings the tracker of one block device to the wanted state:

1. read /proc/datto-info (with a timeout) and resolve the device (block device or mount point);
2. find the tracker already on that device, else pick the minor (the given one, checked, or a
   free one derived from the live state: the minor of the device's own reload script, else the
   lowest free minor no reload script claims, else the lowest free one);
3. plan (:mod:`planner`) and check everything the plan needs before touching anything: the
   filesystem is mounted read-write, the COW file is on it and not a directory, /dev/datto<N>
   is not mounted, the driver version allows the call;
4. run the steps through :class:`dbdctl.Dbdctl` (check mode only records them); a tracker set up
   by this call is destroyed again if a later step fails, so a failure leaves the host as it was;
5. keep the boot reload script in step (``persist``): ``reload.ensure`` after every run that
   leaves a tracker (and ``reload.remove`` of our scripts of other minors naming the same device:
   one script per device), ``reload.remove`` after destroy.

Host access goes through a :class:`Context` so that tests can replace every part of it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import shlex
import stat as _stat

from . import dbdctl as _dbdctl
from . import devices as _devices
from . import holders as _holders
from . import planner as _planner
from . import procinfo as _procinfo
from .errors import DattobdError
from . import validation
from . import wedge

from . import reload as _reload
from .constants import MAX_MINOR, MAX_ULONG
DEFAULT_CACHE_PARAM = '/sys/module/dattobd/parameters/cow_max_memory_default'


class Context(object):
    """Everything :func:`ensure` touches on the host; replace parts in tests."""

    def __init__(self, module=None, host=None, runner=None, watcher_factory=None, read_procinfo=None,
                 max_snap_devices=None, driver_version=None, reload_module=None, reload_dir=None,
                 dbdctl_path=None, sys_root='/sys', proc_root='/proc', tools=None):
        self.module = module
        self.host = host or _devices.Host()
        self.runner = runner
        self.watcher_factory = watcher_factory
        self._read_procinfo = read_procinfo
        self._max_snap_devices = max_snap_devices
        self._driver_version = driver_version
        self.reload = reload_module if reload_module is not None else _reload
        self.reload_dir = reload_dir
        self.dbdctl_path = dbdctl_path
        self.sys_root = sys_root
        self.proc_root = proc_root
        self.tools = dict(tools or {})

    def holders(self, minor):
        """What holds /dev/datto<minor> open (:func:`holders.diagnose` of the real ``sys_root`` and ``proc_root``)."""
        return _holders.diagnose(minor, _devices.Host(), self.sys_root, self.proc_root)

    def which(self, name):
        """Path of the tool ``name`` (dmsetup, losetup), or None."""
        if name in self.tools:
            return self.tools[name]
        if self.module is not None:
            return self.module.get_bin_path(name, required=False, opt_dirs=['/usr/sbin', '/sbin'])
        return _dbdctl.first_executable(['/usr/sbin/' + name, '/sbin/' + name, '/usr/bin/' + name, '/bin/' + name])

    def procinfo(self, timeout):
        wedge.check()  # a driver wedged earlier in this call or this boot is not read (wedge.py)
        if self._read_procinfo is not None:
            return self._read_procinfo(timeout)
        return _procinfo.read(timeout=timeout)

    def max_snap_devices(self):
        if self._max_snap_devices is not None:
            return self._max_snap_devices
        return _procinfo.max_snap_devices()

    def driver_version(self, info=None):
        if self._driver_version is not None:
            return self._driver_version
        version = _dbdctl.read_driver_version()
        if version is None and info is not None:
            version = info.version
        return version

    def find_dbdctl(self, path=None):
        if self.dbdctl_path and not path:
            return self.dbdctl_path
        return _dbdctl.find(self.module, path)


def _int_option(value, name, minimum=0, maximum=MAX_ULONG):
    """None, or ``value`` checked by :func:`validation.check_between`."""
    return None if value is None else validation.check_between(value, name, minimum, maximum)


def _summary(tracker):
    if tracker is None:
        return {}
    d = tracker.to_dict()
    keys = ('minor', 'block_device', 'cow_file', 'state', 'state_name', 'mode', 'phase', 'failed', 'error_name',
            'max_cache', 'seq_id', 'uuid')
    return dict((k, d[k]) for k in keys)


def _find_current(info, dev, host):
    found = [t for t in info.devices if _devices.same_device(t.block_device, dev, host)]
    if len(found) > 1:
        raise DattobdError('%s is tracked by several minors (%s); dattobd allows one tracker per device.'
                           % (dev.given, ', '.join(str(t.minor) for t in found)),
                           hint='Destroy the extra trackers (snapfleet.dattobd.snapshot state: absent, minor: N).')
    return found[0] if found else None


def _choose_minor(info, current, dev, minor, max_devices, scripts=(), host=None):
    if minor is not None and not 0 <= minor < max_devices:
        raise DattobdError('minor %d is out of range: the driver has minors 0..%d (max_snap_devices=%d).'
                           % (minor, max_devices - 1, max_devices),
                           hint='Pick a smaller minor, or load dattobd with a larger max_snap_devices.')
    if current is not None:
        if minor is not None and minor != current.minor:
            raise DattobdError('%s is already tracked by minor %d, not %d.' % (dev.given, current.minor, minor),
                               hint='Omit minor (the existing tracker is used) or destroy the tracker on minor %d '
                                    'first.' % current.minor, minor=current.minor)
        return current.minor
    if minor is not None:
        other = info.by_minor(minor)
        if other is not None:
            raise DattobdError('minor %d is taken by another device (%s).'
                               % (minor, _procinfo.display_text(other.block_device)),
                               hint='Omit minor to use the lowest free one, or pick a free minor.', minor=minor)
        return minor
    free = info.free_minors(max_devices)
    if not free:
        raise DattobdError('All %d dattobd minors are in use.' % max_devices,
                           hint='Destroy unused trackers or load dattobd with a larger max_snap_devices.')
    return _preferred_minor(free, dev, scripts, host)


def _preferred_minor(free, dev, scripts, host):
    """The minor of a new tracker, derived from the live state (the free minors and the reload scripts).

    After a reboot that lost the trackers, the lowest free minor may be another volume's: taking it
    would rewrite that volume's reload script while this device's own script stays behind (two
    scripts for one device). So: the free minor of our own script naming this device, else the
    lowest free minor no reload script claims, else the lowest free minor.
    """
    for entry in scripts:
        if entry.get('ours') and entry.get('minor') in free and entry.get('block_device') \
                and _devices.same_device(entry['block_device'], dev, host):
            return entry['minor']
    claimed = set(e.get('minor') for e in scripts)
    unclaimed = [m for m in free if m not in claimed]
    return unclaimed[0] if unclaimed else free[0]


def _scan_scripts(ctx, reload_dir, warnings):
    """The reload scripts (``reload.scan``), or () when they cannot be read (said in ``warnings``)."""
    if ctx.reload is None or not reload_dir:
        return ()
    try:
        return ctx.reload.scan(reload_dir)
    except DattobdError as exc:
        warnings.append('The reload scripts could not be read (%s): the minor is the lowest free one.' % exc.msg)
        return ()


def _drop_duplicate_scripts(ctx, reload_dir, dev, chosen, check_mode, actions, warnings):
    """Remove our reload scripts of other minors that name ``dev`` (the one of ``chosen`` matches the
    live tracker): the boot hook refuses two scripts for one device. Returns True if one was removed."""
    changed = False
    for entry in _scan_scripts(ctx, reload_dir, warnings):
        if entry.get('minor') in (None, chosen) or not entry.get('block_device') \
                or not _devices.same_device(entry['block_device'], dev, ctx.host):
            continue
        if not entry.get('ours'):
            warnings.append('%s also reloads %s (minor %s) but was not written by snapfleet.dattobd: the boot hook '
                            'refuses two reload scripts for one device. Remove it by hand.'
                            % (entry.get('path'), dev.given, entry['minor']))
            continue
        res = ctx.reload.remove(entry['minor'], directory=reload_dir, check_mode=check_mode)
        if res.get('changed'):
            changed = True
            actions.extend(res.get('actions') or ['remove %s' % res.get('path')])
            warnings.append('Removed %s: it reloaded %s as minor %s (COW file %s), but the live tracker is minor %d; '
                            'two reload scripts for one device are refused at boot.'
                            % (res.get('path'), dev.given, entry['minor'], entry.get('cow_file'), chosen))
    return changed


def _check_not_mounted(minor, host):
    """/dev/datto<minor> must not be mounted (destroy and transitions fail with EBUSY otherwise)."""
    node = '/dev/datto%d' % minor
    m = _devices.node_mount(node, host)
    if m is not None:
        raise DattobdError('%s is busy: it is mounted at %s.' % (node, m.mount_point),
                           hint='Unmount it (umount %s) and stop every process using it, then run again.'
                                % shlex.quote(m.mount_point), minor=minor)


class _Busy(object):
    """The holders of the snapshot devices met in one :func:`ensure` (found, released)."""

    def __init__(self, ctx, runner, release, check_mode, timeout, warnings):
        self.ctx = ctx
        self.runner = runner
        self.release = release
        self.check_mode = check_mode
        self.timeout = timeout
        self.warnings = warnings
        self.found = []

    def _diagnose(self, minor):
        held = self.ctx.holders(minor)
        for h in held:
            same = [f for f in self.found if all(f[k] == h[k] for k in ('kind', 'device', 'mount_points', 'pids'))]
            if same:
                h['released'] = same[0]['released']
                self.found.remove(same[0])
            self.found.append(h)
        return held

    def _release(self, held):
        return _holders.release(held, self.runner.actions, check_mode=self.check_mode, runner=self.ctx.runner,
                                which=self.ctx.which, timeout=self.timeout)

    def call(self, op, kwargs):
        """``runner.call(op, **kwargs)``; on EBUSY the holders are named (and stale ones released, then one retry).

        With ``release_holders`` (and in check mode) the holders are looked at before the call too,
        so that check mode plans the removals the real run makes.
        """
        minor = kwargs.get('minor')
        if op not in _holders.BUSY_OPERATIONS or minor is None:
            return self.runner.call(op, **kwargs)
        if self.release or self.check_mode:
            held = self._diagnose(minor)
            if self.release:
                self._release(held)
            elif held:
                self.warnings.append('%s: the real run fails with EBUSY (release_holders: true removes the stale '
                                     'ones).' % _holders.describe(minor, held))
        for attempt in (1, 2):
            try:
                return self.runner.call(op, **kwargs)
            except _dbdctl.DbdctlError as exc:
                if exc.details.get('errno_name') != 'EBUSY':
                    raise
                held = self._diagnose(minor)
                if attempt == 1 and self.release and self._release(held):
                    continue
                raise self.error(exc, op, minor, held)

    def error(self, exc, op, minor, held):
        """The EBUSY of ``op`` with the holders named."""
        details = dict(exc.details, holders=_holders.public(self.found))
        if not held:
            return _dbdctl.DbdctlError('%s. %s.' % (exc.msg.rstrip('.'), _holders.describe(minor, held)),
                                       hint=exc.hint, **details)
        stale = [h['device'] for h in held if h['releasable'] and not h['released']]
        if stale and not self.release:
            hint = ('Release them (the commands above) and run again; release_holders: true removes the stale '
                    'one(s) (%s) and retries.' % ', '.join(stale))
        elif self.release:
            hint = ('release_holders removes only stale device-mapper targets and loop devices (nothing uses them) '
                    'and never unmounts: release the rest by hand (the commands above) and run again.')
        else:
            hint = 'Release them (the commands above) and run again.'
        msg = 'dbdctl %s %d failed: device busy: %s.' % (op, minor, _holders.describe(minor, held))
        return _dbdctl.DbdctlError(msg, hint=hint, **details)


def _existing(directory, host):
    try:
        return set(posixpath.join(directory, n) for n in host.listdir(directory))
    except OSError:
        return set()


def _remove_scripts(ctx, reload_dir, dev, minor, check_mode, actions):
    """Remove the reload scripts of :func:`_script_minors`; ``actions`` gets what was removed. Returns the results
    of the removals that changed something."""
    removed = []
    for m in _script_minors(ctx, reload_dir, dev, minor):
        res = ctx.reload.remove(m, directory=reload_dir, check_mode=check_mode)
        if res.get('changed'):
            actions.extend(res.get('actions') or ['remove %s' % res.get('path')])
            removed.append(res)
    return removed


def _script_minors(ctx, reload_dir, dev, minor):
    """Minors of our reload scripts to remove for ``dev``: ``minor`` plus every script naming the device."""
    targets = [minor] if minor is not None else []
    if dev is None:
        return targets
    for entry in ctx.reload.scan(reload_dir):
        if entry.get('ours') and entry.get('block_device') and entry.get('minor') is not None \
                and _devices.same_device(entry['block_device'], dev, ctx.host) and entry['minor'] not in targets:
            targets.append(entry['minor'])
    return targets


def _predicted(current, plan, dev, minor, new_rel):
    """What /proc/datto-info should show after the plan (for check mode and diff)."""
    if plan.mode_after is None:
        return {}
    if not plan.changed and current is not None:
        return _summary(current)
    out = _summary(current) if current is not None and not plan.rebaseline_required else {}
    state = 3 if plan.mode_after == 'snapshot' else 2
    out.update(minor=minor, block_device=dev.path, state=state, mode=plan.mode_after, phase='active',
               state_name=_procinfo.STATE_NAMES[state], failed=False, error_name=None)
    if new_rel is not None:
        out['cow_file'] = new_rel
    return out


def _default_cache(host, path=DEFAULT_CACHE_PARAM):
    """The driver's cow_max_memory_default (what cache_size 0 means), None when it cannot be read."""
    try:
        text = host.read_text(path).strip()
    except (OSError, IOError):
        return None
    number = validation.to_int(text)
    return number if number is not None and number > 0 else None


def check_options(minor=None, cache_size=None, fallocate=None, timeout=60, cow_name=None):
    """The tracker options of :func:`ensure`, checked without touching the host.

    Returns ``(minor, cache_size, fallocate, timeout, cow_name)`` (``cow_name`` defaulted); raises
    :class:`DattobdError` naming the first bad one. Callers that must refuse a request before acting
    (the backup module validates everything before its hooks run) call it up front.
    """
    return (_int_option(minor, 'minor', 0, MAX_MINOR), _int_option(cache_size, 'cache_size'),
            _int_option(fallocate, 'fallocate (MiB)', 1, 2 ** 44), _int_option(timeout, 'timeout', 1, 86400),
            _planner.validate_cow_name(cow_name or _planner.DEFAULT_COW_NAME))


def ensure(module_or_ctx, device, state, minor=None, cow_file=None, cow_dir=None, cache_size=None,
           fallocate=None, persist=True, recover='fail', check_mode=False, timeout=60, dbdctl_path=None,
           cow_name=None, auto_expand=None, reload_dir=None, release_holders=False):
    """Bring the tracker of ``device`` to ``state`` (snapshot, incremental or absent).

    Parameters: one per option of the ``snapshot`` module (hence seventeen). Long (about 65 lines): the sequence of
    the parts below, in the order that is the contract: every refusal before the first dbdctl call.

    Returns ``dict(changed, actions, before, after, tracker, previous_cow_file, new_cow_file,
    rebaseline_required, minor, device, diff, warnings, holders)``; raises :class:`DattobdError` (host
    unchanged; an EBUSY names what holds /dev/datto<N> in the message and the ``holders`` detail).
    Every option is checked and every dbdctl argv validated before the first one runs.
    """
    ctx = module_or_ctx if isinstance(module_or_ctx, Context) else Context(module=module_or_ctx)
    minor, cache_size, fallocate, timeout, cow_name, auto_expand, reload_dir = _checked_options(
        ctx, state, recover, release_holders, minor, cache_size, fallocate, timeout, cow_name, auto_expand,
        reload_dir, persist)
    warnings = []
    info = ctx.procinfo(timeout)
    if not info.loaded:
        if state == 'absent':
            return _absent_without_driver(ctx, device, minor, persist, reload_dir, check_mode)
        raise DattobdError('The dattobd driver is not loaded (/proc/datto-info does not exist).',
                           hint='Load it (modprobe dattobd) or run snapfleet.dattobd.engine to build and load it.')
    dev = _devices.resolve(device, ctx.host)
    current = _find_current(info, dev, ctx.host)
    chosen = _minor_for(ctx, info, dev, current, state, minor, persist, reload_dir, warnings)
    wanted = _wanted(ctx, dev, state, chosen, cow_file, cow_dir, cow_name, cache_size, fallocate, recover)
    if state != 'absent' and (current is None or (current.failed and recover == 'rebaseline')):
        _devices.require_mounted_rw(dev)  # setup-snapshot needs it; say so before anything else
    plan = _planner.plan(current, wanted)
    warnings.extend(plan.notes)

    new_rel = _preflight(ctx, dev, plan, chosen)
    path = ctx.find_dbdctl(dbdctl_path)
    runner = _dbdctl.Dbdctl(path, timeout=timeout, check_mode=check_mode, runner=ctx.runner,
                            watcher_factory=ctx.watcher_factory, driver_version=ctx.driver_version(info))
    steps = _steps(plan, current, chosen, auto_expand, runner)
    before = _summary(current)
    busy = _Busy(ctx, runner, release_holders, check_mode, timeout, warnings)
    _run_steps(steps, runner, busy, check_mode, warnings)

    if check_mode or not steps:  # what the steps would leave, or nothing changed
        after_tracker = None if plan.mode_after is None else current
        after = _predicted(current, plan, dev, chosen, new_rel)
    else:
        after_tracker = ctx.procinfo(timeout).by_minor(chosen) if plan.mode_after is not None else None
        after = _summary(after_tracker)
    actions = list(runner.actions)
    changed = bool(steps)
    reload_diff = None
    if persist:
        holder = after_tracker if after_tracker is not None else current
        rel = new_rel if new_rel is not None else (holder.cow_file if holder is not None else None)
        persisted, reload_diff = _persist(ctx, reload_dir, dev, chosen, plan.mode_after, rel, cache_size, path,
                                          check_mode, actions, warnings)
        changed = changed or persisted

    diff = {'before': before, 'after': after}
    if reload_diff:
        diff = [diff, reload_diff]
    return dict(changed=changed, actions=actions, before=before, after=after,
                tracker=after_tracker.to_dict() if after_tracker is not None and not check_mode else (after or None),
                previous_cow_file=plan.previous_cow_file, new_cow_file=plan.new_cow_file,
                rebaseline_required=plan.rebaseline_required, minor=chosen, device=dev.to_dict(),
                diff=diff, warnings=warnings, holders=_holders.public(busy.found))


def _minor_for(ctx, info, dev, current, state, minor, persist, reload_dir, warnings):
    """The minor of the device's tracker: its live one, else ``minor``, else a free one that no reload script
    claims (:func:`_choose_minor`). Parameters: what the choice reads (hence nine)."""
    if state == 'absent' and current is None:
        return minor
    scripts = _scan_scripts(ctx, reload_dir, warnings) if persist and current is None and minor is None else ()
    return _choose_minor(info, current, dev, minor, ctx.max_snap_devices(), scripts, ctx.host)


def _preflight(ctx, dev, plan, chosen):
    """Refuse what the plan's steps cannot do (a COW file needs the device mounted writable and on it; a transition
    or a destroy needs /dev/datto<minor> unmounted); returns the new COW file's path relative to the mount, or None.
    """
    ops = plan.ops()
    new_rel = None
    if 'setup-snapshot' in ops or 'transition-to-snapshot' in ops:
        _devices.require_mounted_rw(dev)
        dummy, new_rel = _devices.cow_location(dev, plan.new_cow_file, ctx.host)
    if set(ops) & set(('destroy', 'transition-to-incremental', 'transition-to-snapshot', 'reconfigure')):
        _check_not_mounted(chosen, ctx.host)
    return new_rel


def _checked_options(ctx, state, recover, release_holders, minor, cache_size, fallocate, timeout, cow_name,
                     auto_expand, reload_dir, persist):
    """The options of :func:`ensure` checked (a bad one raises :class:`DattobdError` before anything is read) and
    normalised: ``(minor, cache_size, fallocate, timeout, cow_name, auto_expand, reload_dir)``.

    Parameters: the options that need a check (hence twelve)."""
    if state not in _planner.STATES:
        raise DattobdError('state must be one of %s, got %r.' % (', '.join(_planner.STATES), state))
    if recover not in _planner.RECOVER:
        raise DattobdError('recover must be one of %s, got %r.' % (', '.join(_planner.RECOVER), recover))
    if not isinstance(release_holders, bool):
        raise DattobdError('release_holders must be true or false, got %r.' % (release_holders,))
    minor, cache_size, fallocate, timeout, cow_name = check_options(minor, cache_size, fallocate, timeout, cow_name)
    if auto_expand:
        auto_expand = dict(auto_expand)
        _int_option(auto_expand.get('step_size'), 'auto_expand.step_size (MiB)', 1)
        _int_option(auto_expand.get('reserved_space', 0), 'auto_expand.reserved_space (MiB)')
    reload_dir = reload_dir or ctx.reload_dir or (ctx.reload.DEFAULT_DIR if ctx.reload else None)
    if persist and ctx.reload is None:
        raise DattobdError('persist needs the reload library (module_utils/_dattobd/reload.py), which is missing.',
                           hint='Reinstall the snapfleet.dattobd collection, or set persist: false.')
    return minor, cache_size, fallocate, timeout, cow_name, auto_expand, reload_dir


def _absent_without_driver(ctx, device, minor, persist, reload_dir, check_mode):
    """``state=absent`` with no driver loaded: no tracker can exist, but a reload script would bring one back at the
    next boot, so the device's scripts go."""
    actions = []
    if persist:
        try:
            dev = _devices.resolve(device, ctx.host)
        except DattobdError:
            dev = None
        _remove_scripts(ctx, reload_dir, dev, minor, check_mode, actions)
    return dict(changed=bool(actions), actions=actions, before={}, after={}, tracker=None,
                previous_cow_file=None, new_cow_file=None, rebaseline_required=False, minor=minor,
                device=None, diff={'before': {}, 'after': {}}, holders=[],
                warnings=['The dattobd driver is not loaded: no tracker exists.'])


def _wanted(ctx, dev, state, chosen, cow_file, cow_dir, cow_name, cache_size, fallocate, recover):
    """What the planner is asked for (:class:`planner.Wanted`), the COW path options checked.

    Parameters: the options that describe the tracker (hence ten)."""
    mount_point = dev.mount_point
    if cow_file is not None:
        cow_file = posixpath.normpath(cow_file) if isinstance(cow_file, str) else cow_file
    if cow_dir is not None:
        if not isinstance(cow_dir, str) or not cow_dir.startswith('/'):
            raise DattobdError('cow_dir must be an absolute path, got %r.' % (cow_dir,))
        cow_dir = posixpath.normpath(cow_dir)
    if cow_file is not None and state != 'absent':
        try:
            cst = ctx.host.stat(cow_file)
        except OSError:
            cst = None
        if cst is not None and _stat.S_ISDIR(cst.st_mode):
            raise DattobdError('The COW file path %s is a directory.' % cow_file,
                               hint='Give a new file name, or set cow_dir to the directory instead.')
    directory = posixpath.dirname(cow_file) if cow_file else (cow_dir or mount_point)
    return _planner.Wanted(
        state, chosen, block_device=dev.path, mount_point=mount_point, cow_dir=cow_dir or mount_point,
        cow_file=cow_file, cow_name=cow_name, cache_size=cache_size, fallocate=fallocate,
        device_size=dev.size, recover=recover, existing=_existing(directory, ctx.host) if directory else (),
        default_cache=_default_cache(ctx.host) if cache_size == 0 else None)


def _steps(plan, current, chosen, auto_expand, runner):
    """The plan's dbdctl steps, plus the auto-expand settings when they differ; every argv validated (and an
    operation that wedges this driver refused) before the first one runs."""
    steps = list(plan.steps)
    if auto_expand and plan.mode_after == 'snapshot':
        wanted_ae = {'step_size_mib': auto_expand['step_size'],
                     'reserved_space_mib': auto_expand.get('reserved_space') or 0}
        have_ae = current.auto_expand if current is not None and not plan.changed else None
        if have_ae != wanted_ae:
            runner.refuse_wedging('reconfigure-auto-expand')  # before anything runs
            steps.append(('reconfigure-auto-expand', dict(minor=chosen, step=wanted_ae['step_size_mib'],
                                                          reserved=wanted_ae['reserved_space_mib'])))
    for step in steps:  # validate every argv before running the first one
        if isinstance(step, tuple):
            runner.argv(step[0], **step[1])
        else:
            runner.argv(step.op, **step.kwargs())
    return steps


def _run_steps(steps, runner, busy, check_mode, warnings):
    """Run the steps (through ``busy``: EBUSY diagnosis); on a failure, destroy a tracker this call set up, and
    raise with what ran (``actions``, ``actions_done_before_failure``), the holders found and the warnings."""
    created = None
    try:
        for step in steps:
            if isinstance(step, tuple):
                busy.call(step[0], step[1])
                continue
            busy.call(step.op, step.kwargs())
            if step.op == 'setup-snapshot':
                created = step.minor
    except DattobdError as exc:
        done = list(runner.actions)
        if created is not None and not check_mode:
            try:
                runner.call('destroy', minor=created)
                warnings.append('Rolled back: destroyed the tracker set up on minor %s.' % created)
            except DattobdError as rollback_exc:
                warnings.append('Rollback failed: %s' % rollback_exc.full_msg)
        exc.details.setdefault('actions', list(runner.actions))
        exc.details.setdefault('holders', _holders.public(busy.found))
        exc.details.setdefault('actions_done_before_failure', done)
        if warnings:
            exc.details.setdefault('warnings', warnings)
        raise


def _persist(ctx, reload_dir, dev, chosen, mode_after, rel, cache_size, dbdctl, check_mode, actions, warnings):
    """The device's reload script after the steps: removed with the tracker, else written for ``mode_after`` and
    the COW file ``rel`` (when the device has a stable name), other scripts of the device dropped. Returns
    ``(changed, the script's diff or None)``; ``actions`` and ``warnings`` get what happened.

    Parameters: the tracker's state after the steps, and the two lists it adds to (hence eleven)."""
    changed = False
    reload_diff = None
    if mode_after is None:
        for res in _remove_scripts(ctx, reload_dir, dev, chosen, check_mode, actions):
            changed = True
            reload_diff = {'before_header': res.get('path'), 'before': res.get('before') or '',
                           'after_header': res.get('path'), 'after': ''}
        return changed, reload_diff
    if rel is not None and dev.stable_name:
        res = ctx.reload.ensure(chosen, dev.stable_name, rel, mode_after, cache_size=cache_size or None,
                                directory=reload_dir, dbdctl=dbdctl, check_mode=check_mode)
        warnings.extend(res.get('warnings') or [])
        if res.get('changed'):
            changed = True
            actions.extend(res.get('actions') or ['write %s' % res.get('path')])
            reload_diff = res.get('diff')
        if _drop_duplicate_scripts(ctx, reload_dir, dev, chosen, check_mode, actions, warnings):
            changed = True
    return changed, reload_diff
