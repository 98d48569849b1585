# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure planning: (current tracker, wanted state) -> ordered dbdctl steps, or a refusal.

Nothing here touches the host: the caller gathers facts (the tracker from /proc/datto-info,
the device's mount point and size, which COW names already exist) into a :class:`Wanted` and
gets back a :class:`Plan` or a :class:`PlanRefused` error saying why the wanted state cannot be
reached from the current one and what to do.

Rules (facts of dattobd 0.12.1, see the reference):

* transition-to-incremental needs an active snapshot (state 3), transition-to-snapshot an
  active incremental tracker (state 2); dormant (0/1) and unverified (4/5) trackers cannot
  change mode until their filesystem is mounted read-write; destroy works in every state.
* every transition to snapshot gets a NEW COW file name: the current file holds the changed
  block list the next sync needs (and the driver refuses to reopen it, EPERM). ``-f`` is
  always passed (without it the driver reuses the stored size, which after a reload is only the
  index size, and the new snapshot fails with EFBIG at its first write).
* a failed tracker (``error`` in /proc) has lost its change tracking: ``recover: rebaseline``
  destroys it and sets it up again (``rebaseline_required``: the next backup must be full);
  ``recover: fail`` refuses.
* ``cache_size`` is not carried over by transitions: a wanted cache size is re-applied with
  ``reconfigure`` after each transition, and on a steady tracker when it differs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import string

from .errors import DattobdError, errno_name, errno_text

MIB = 1024 * 1024
DEFAULT_CACHE = 314572800
DEFAULT_FALLOCATE_PERCENT = 10
DEFAULT_COW_NAME = '.datto_{minor}_{seq}'
STATES = ('snapshot', 'incremental', 'absent')
RECOVER = ('fail', 'rebaseline')


class PlanRefused(DattobdError):
    """The wanted state cannot be reached from the current one (host left unchanged)."""


class Step(object):
    """One dbdctl operation."""

    __slots__ = ('op', 'minor', 'block_device', 'cow_file', 'cache_size', 'fallocate')

    def __init__(self, op, minor, block_device=None, cow_file=None, cache_size=None, fallocate=None):
        self.op = op
        self.minor = minor
        self.block_device = block_device
        self.cow_file = cow_file
        self.cache_size = cache_size
        self.fallocate = fallocate

    def kwargs(self):
        """Keyword arguments for :meth:`dbdctl.Dbdctl.call`."""
        out = {'minor': self.minor}
        for key in ('block_device', 'cow_file', 'cache_size', 'fallocate'):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def as_tuple(self):
        return (self.op, self.minor, self.block_device, self.cow_file, self.cache_size, self.fallocate)

    def __eq__(self, other):
        return isinstance(other, Step) and self.as_tuple() == other.as_tuple()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.as_tuple())

    def __repr__(self):
        return 'Step%r' % (self.as_tuple(),)


class Wanted(object):
    """What the caller wants, plus the facts the planner needs.

    ``mount_point``: where the tracked filesystem is mounted (to turn the mount-relative COW
    path of /proc into an absolute one); ``cow_dir``: absolute directory for new COW files
    (default: the mount point); ``cow_file``: an explicit absolute path for the next new COW
    file; ``cow_name``: template for rotated names (``{minor}`` and ``{seq}``);
    ``existing``: absolute paths that already exist (never overwritten); ``device_size``: bytes
    of the tracked block device (for the default fallocate of 10 %).
    """

    def __init__(self, state, minor, block_device=None, mount_point=None, cow_dir=None, cow_file=None,
                 cow_name=DEFAULT_COW_NAME, cache_size=None, fallocate=None, device_size=None,
                 recover='fail', existing=(), default_cache=None):
        if state not in STATES:
            raise DattobdError('state must be one of %s, got %r.' % (', '.join(STATES), state))
        if recover not in RECOVER:
            raise DattobdError('recover must be one of %s, got %r.' % (', '.join(RECOVER), recover))
        self.state = state
        self.minor = minor
        self.block_device = block_device
        self.mount_point = mount_point
        self.cow_dir = cow_dir or mount_point
        self.cow_file = cow_file
        self.cow_name = cow_name or DEFAULT_COW_NAME
        self.cache_size = cache_size
        self.fallocate = fallocate
        self.device_size = device_size
        self.recover = recover
        self.existing = frozenset(existing or ())
        # What the driver stores for cache_size 0: its cow_max_memory_default parameter.
        self.default_cache = default_cache or DEFAULT_CACHE


class Plan(object):
    """Ordered steps plus what the caller must know about them."""

    def __init__(self, steps=None, previous_cow_file=None, new_cow_file=None, rebaseline_required=False,
                 mode_after=None, notes=None):
        self.steps = list(steps or [])
        self.previous_cow_file = previous_cow_file
        self.new_cow_file = new_cow_file
        self.rebaseline_required = rebaseline_required
        self.mode_after = mode_after
        self.notes = list(notes or [])

    @property
    def changed(self):
        return bool(self.steps)

    def ops(self):
        return [s.op for s in self.steps]


# --- helpers ------------------------------------------------------------------------------

_FIELDS = frozenset(['minor', 'seq'])


def validate_cow_name(template):
    """Check a COW name template: one path component with ``{seq}`` (so that rotation makes new names)."""
    if not isinstance(template, str) or not template:
        raise DattobdError('cow_name must be a non-empty string.')
    try:
        fields = [f for dummy, f, dummy2, dummy3 in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise DattobdError('cow_name %r is not a valid template: %s.' % (template, exc),
                           hint='Use {minor} and {seq}, e.g. ".datto_{minor}_{seq}".')
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise DattobdError('cow_name %r uses unknown fields %s.' % (template, ', '.join(sorted(set(unknown)))),
                           hint='Only {minor} and {seq} are available, e.g. ".datto_{minor}_{seq}".')
    if 'seq' not in fields:
        raise DattobdError('cow_name %r lacks {seq}: every snapshot needs a new COW file name.' % template,
                           hint='Use e.g. ".datto_{minor}_{seq}".')
    sample = template.format(minor=0, seq=1)
    if '/' in sample or '\0' in sample or '\n' in sample or sample in ('.', '..'):
        raise DattobdError('cow_name %r must give a plain file name (no "/", NUL or newline); put the '
                           'directory in cow_dir.' % template)
    return template


def absolute_cow(mount_point, relative):
    """Absolute path of a COW file that /proc shows relative to ``mount_point``."""
    if relative is None:
        return None
    if not mount_point:
        return relative
    rel = relative if relative.startswith('/') else '/' + relative
    return posixpath.normpath(mount_point.rstrip('/') + rel) if mount_point != '/' else posixpath.normpath(rel)


def new_cow_name(wanted, seq, avoid):
    """A new absolute COW path: ``wanted.cow_file`` or the template in ``cow_dir``; never one in ``avoid``."""
    if wanted.cow_file:
        if wanted.cow_file in avoid:
            raise PlanRefused(
                'The COW file %s already exists or is the current COW file; refusing to overwrite it '
                '(it may hold the changed-block list the next sync needs).' % wanted.cow_file,
                hint='Give a new cow_file for every snapshot, or use cow_name rotation (omit cow_file).',
                cow_file=wanted.cow_file)
        return wanted.cow_file
    if not wanted.cow_dir:
        raise PlanRefused('No directory is known for the new COW file.',
                          hint='Set cow_dir (a directory on the tracked filesystem).')
    base = posixpath.join(wanted.cow_dir, wanted.cow_name.format(minor=wanted.minor, seq=seq))
    candidate = base
    n = 1
    while candidate in avoid:
        candidate = '%s.%d' % (base, n)
        n += 1
    return candidate


def default_fallocate(wanted, current=None):
    """MiB to pass with -f: the wanted value, else 10 % of the device, else the tracker's stored size."""
    if wanted.fallocate:
        return wanted.fallocate
    if wanted.device_size:
        return max(1, (wanted.device_size * DEFAULT_FALLOCATE_PERCENT // 100) // MIB)
    if current is not None and current.fallocate and current.fallocate >= MIB:
        return current.fallocate // MIB
    raise PlanRefused('Cannot tell how much space to preallocate for the new COW file.',
                      hint='Set fallocate (MiB).')


def _cache_matches(wanted, current):
    if wanted.cache_size is None or current is None or current.max_cache is None:
        return True
    return (wanted.cache_size or wanted.default_cache) == current.max_cache


def _setup_steps(wanted, current_cow_abs=None):
    """setup-snapshot (+ transition-to-incremental) for a new tracker."""
    avoid = set(wanted.existing)
    if current_cow_abs:
        avoid.add(current_cow_abs)
    cow = new_cow_name(wanted, 1, avoid)
    steps = [Step('setup-snapshot', wanted.minor, block_device=wanted.block_device, cow_file=cow,
                  cache_size=wanted.cache_size, fallocate=wanted.fallocate)]
    if wanted.state == 'incremental':
        steps.append(Step('transition-to-incremental', wanted.minor))
    return steps, cow


def _refuse_phase(current, wanted):
    what = {'dormant': ('dormant: its filesystem is not mounted read-write, so the driver cannot change its mode',
                        'Mount the filesystem read-write (tracking resumes), then run again.'),
            'unverified': ('unverified: it was reloaded and waits for its filesystem to be mounted read-write',
                           'Mount the filesystem read-write so the driver activates the tracker, then run again; '
                           'if it stays unverified after a read-write mount, see the troubleshooting guide '
                           '(fd-based mount API, LIBMOUNT_FORCE_MOUNT2=always).')}[current.phase]
    return PlanRefused(
        'The tracker on minor %d is %s (state %d, %s); it cannot go to %s now.'
        % (current.minor, what[0], current.state, current.state_name, wanted.state),
        hint=what[1], minor=current.minor, state=current.state, state_name=current.state_name)


def plan(current, wanted):
    """Ordered steps from ``current`` (a procinfo.Tracker or None) to ``wanted`` (a :class:`Wanted`)."""
    if current is None:
        if wanted.state == 'absent':
            return Plan(mode_after=None)
        steps, cow = _setup_steps(wanted)
        return Plan(steps, new_cow_file=cow, mode_after=wanted.state)

    minor = current.minor
    current_abs = absolute_cow(wanted.mount_point, current.cow_file)
    if wanted.state == 'absent':
        notes = []
        if not current.active or current.failed:
            notes.append('The driver does not delete the COW file of a %s tracker; %s is left on disk.'
                         % ('failed' if current.failed else current.phase, current_abs))
        return Plan([Step('destroy', minor)], mode_after=None, notes=notes)

    if current.failed:
        if wanted.recover == 'fail':
            raise PlanRefused(
                'The tracker on minor %d has failed (%s: %s; state %d, %s): its change tracking is lost.'
                % (minor, errno_name(current.error), errno_text(current.error), current.state, current.state_name),
                hint='Set recover: rebaseline to destroy it and set it up again (the next backup is then full), '
                     'or destroy it with state: absent.',
                minor=minor, error=current.error, errno_name=errno_name(current.error))
        steps, cow = _setup_steps(wanted, current_abs)
        return Plan([Step('destroy', minor)] + steps, new_cow_file=cow, rebaseline_required=True,
                    mode_after=wanted.state,
                    notes=['The failed tracker was destroyed and set up again: take a full backup.'])

    if current.mode == wanted.state:
        notes = []
        steps = []
        if current.phase != 'active':
            notes.append('The tracker on minor %d is %s (%s); it becomes active when its filesystem is mounted '
                         'read-write.' % (minor, current.phase, current.state_name))
        elif not _cache_matches(wanted, current):
            steps.append(Step('reconfigure', minor, cache_size=wanted.cache_size))
        return Plan(steps, mode_after=current.mode, notes=notes)

    if current.phase != 'active':
        raise _refuse_phase(current, wanted)

    steps = []
    previous = new = None
    if wanted.state == 'incremental':
        steps.append(Step('transition-to-incremental', minor))
    else:
        avoid = set(wanted.existing)
        if current_abs:
            avoid.add(current_abs)
        seq = (current.seq_id or 0) + 1
        new = new_cow_name(wanted, seq, avoid)
        previous = current_abs
        steps.append(Step('transition-to-snapshot', minor, cow_file=new,
                          fallocate=default_fallocate(wanted, current)))
    if wanted.cache_size is not None:
        steps.append(Step('reconfigure', minor, cache_size=wanted.cache_size))
    return Plan(steps, previous_cow_file=previous, new_cow_file=new, mode_after=wanted.state)
