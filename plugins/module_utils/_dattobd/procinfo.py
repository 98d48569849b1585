# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parser of ``/proc/datto-info``.

The driver prints hand-made JSON (src/proc_seq_file.c) and does **not** escape the COW file
and block device paths: a path holding a quote, a backslash, a control character or bytes that
are not UTF-8 makes the text invalid JSON. :func:`parse` therefore first tries strict JSON and
then falls back to a parser of the driver's exact layout, which takes each path verbatim
between its fixed neighbours. Text that fits neither raises :class:`ParseError` with a clear
message; nothing here raises anything else.

Paths are returned as ``str`` decoded with ``surrogateescape`` (``os.fsencode`` gives back the
exact bytes); :meth:`Tracker.to_dict` renders them printable for module results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from .errors import DriverTimeout, ParseError, errno_name, errno_text
from .runner import read_file_timed
from . import validation
from . import wedge

PROC_PATH = '/proc/datto-info'
MAX_SNAP_DEVICES_PATH = '/sys/module/dattobd/parameters/max_snap_devices'
DEFAULT_MAX_SNAP_DEVICES = 24

# sd_state bits (src/snap_device.h)
STATE_SNAPSHOT = 1
STATE_ACTIVE = 2
STATE_UNVERIFIED = 4

STATE_NAMES = {
    0: 'dormant incremental',
    1: 'dormant snapshot',
    2: 'active incremental',
    3: 'active snapshot',
    4: 'unverified incremental',
    5: 'unverified snapshot',
}

_INT_KEYS = ('minor', 'max_cache', 'fallocate', 'cow_size_current', 'seq_id', 'version',
             'nr_changed_blocks', 'error', 'state')
_STR_KEYS = ('cow_file', 'block_device', 'uuid')


def display_text(value):
    """Printable form of a path decoded with surrogateescape (undecodable bytes as ``\\xNN``)."""
    if value is None:
        return None
    return value.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')


class Tracker(object):
    """One dattobd device (tracker) as listed in /proc/datto-info."""

    __slots__ = ('minor', 'cow_file', 'block_device', 'max_cache', 'fallocate', 'cow_size_current',
                 'seq_id', 'uuid', 'version', 'nr_changed_blocks', 'auto_expand', 'error', 'state',
                 'extra')

    def __init__(self, minor, cow_file, block_device, state, max_cache=None, fallocate=None,
                 cow_size_current=None, seq_id=None, uuid=None, version=None,
                 nr_changed_blocks=None, auto_expand=None, error=None, extra=None):
        self.minor = minor
        self.cow_file = cow_file
        self.block_device = block_device
        self.state = state
        self.max_cache = max_cache
        self.fallocate = fallocate
        self.cow_size_current = cow_size_current
        self.seq_id = seq_id
        self.uuid = uuid
        self.version = version
        self.nr_changed_blocks = nr_changed_blocks
        self.auto_expand = auto_expand
        self.error = error
        self.extra = extra or {}

    # --- derived state -------------------------------------------------------------------
    @property
    def snapshot(self):
        return bool(self.state & STATE_SNAPSHOT)

    @property
    def active(self):
        return bool(self.state & STATE_ACTIVE) and not self.unverified

    @property
    def unverified(self):
        return bool(self.state & STATE_UNVERIFIED)

    @property
    def dormant(self):
        return not self.active and not self.unverified

    @property
    def failed(self):
        return self.error is not None and self.error != 0

    @property
    def mode(self):
        """``snapshot`` or ``incremental``."""
        return 'snapshot' if self.snapshot else 'incremental'

    @property
    def phase(self):
        """``active``, ``dormant`` or ``unverified``."""
        if self.unverified:
            return 'unverified'
        if self.state & STATE_ACTIVE:
            return 'active'
        return 'dormant'

    @property
    def state_name(self):
        name = STATE_NAMES.get(self.state, 'unknown state %s' % self.state)
        if self.failed:
            name = 'failed %s (%s)' % (name, errno_name(self.error))
        return name

    @property
    def device_path(self):
        """The snapshot block device of this tracker."""
        return '/dev/datto%d' % self.minor

    def to_dict(self):
        """JSON-safe facts for module results."""
        return {
            'minor': self.minor,
            'cow_file': display_text(self.cow_file),
            'block_device': display_text(self.block_device),
            'max_cache': self.max_cache,
            'fallocate': self.fallocate,
            'cow_size_current': self.cow_size_current,
            'seq_id': self.seq_id,
            'uuid': self.uuid,
            'cow_version': self.version,
            'nr_changed_blocks': self.nr_changed_blocks,
            'auto_expand': dict(self.auto_expand) if self.auto_expand is not None else None,
            'state': self.state,
            'state_name': self.state_name,
            'mode': self.mode,
            'phase': self.phase,
            'failed': self.failed,
            'error': self.error,
            'error_name': errno_name(self.error) if self.failed else None,
            'error_text': errno_text(self.error) if self.failed else None,
            'snapshot_device': self.device_path,
            'extra': dict(self.extra),
        }

    def __repr__(self):
        return 'Tracker(minor=%r, state=%r, block_device=%r, cow_file=%r, error=%r)' % (
            self.minor, self.state, self.block_device, self.cow_file, self.error)


class ProcInfo(object):
    """Parsed content of /proc/datto-info (``loaded`` is False when the file does not exist)."""

    def __init__(self, loaded, version=None, devices=None, raw=None):
        self.loaded = loaded
        self.version = version
        self.devices = list(devices or [])
        self.raw = raw

    def by_minor(self, minor):
        for dev in self.devices:
            if dev.minor == minor:
                return dev
        return None

    def used_minors(self):
        return sorted(dev.minor for dev in self.devices)

    def free_minors(self, max_devices=DEFAULT_MAX_SNAP_DEVICES):
        used = set(self.used_minors())
        return [m for m in range(max_devices) if m not in used]

    def to_dict(self):
        return {
            'loaded': self.loaded,
            'version': self.version,
            'devices': [dev.to_dict() for dev in self.devices],
        }


# --- parsing ------------------------------------------------------------------------------

def _snippet(text, pos, width=60):
    start = max(0, pos - width // 2)
    return display_text(text[start:start + width]).replace('\n', '\\n').replace('\t', '\\t')


def _check_int(dev, key, value, strict_positive=False):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError('/proc/datto-info: device %s: "%s" is not an integer: %r.' % (dev, key, value))
    if strict_positive and value < 0:
        raise ParseError('/proc/datto-info: device %s: "%s" is negative: %r.' % (dev, key, value))
    return value


def _tracker_from_mapping(obj):
    """Build a Tracker from a dict (strict JSON path), validating types."""
    if not isinstance(obj, dict):
        raise ParseError('/proc/datto-info: a device entry is not an object: %r.' % (obj,))
    for key in ('minor', 'cow_file', 'block_device', 'state'):
        if key not in obj:
            raise ParseError('/proc/datto-info: a device entry lacks "%s": %r.' % (key, obj))
    minor = obj['minor']
    kwargs = {}
    extra = {}
    for key, value in obj.items():
        if key in _INT_KEYS:
            kwargs['minor' if key == 'minor' else key] = _check_int(
                minor, key, value, strict_positive=(key != 'error'))
        elif key in _STR_KEYS:
            if not isinstance(value, str):
                raise ParseError('/proc/datto-info: device %s: "%s" is not a string: %r.' % (minor, key, value))
            kwargs[key] = value
        elif key == 'auto_expand':
            if not isinstance(value, dict):
                raise ParseError('/proc/datto-info: device %s: "auto_expand" is not an object.' % (minor,))
            kwargs['auto_expand'] = value
        else:
            extra[key] = value
    kwargs['extra'] = extra
    return Tracker(**kwargs)


def _parse_json(text):
    obj = json.loads(text)
    if not isinstance(obj, dict) or 'devices' not in obj or not isinstance(obj['devices'], list):
        raise ParseError('/proc/datto-info does not hold a "devices" list; is this dattobd?')
    version = obj.get('version')
    if version is not None and not isinstance(version, str):
        raise ParseError('/proc/datto-info: "version" is not a string: %r.' % (version,))
    devices = [_tracker_from_mapping(d) for d in obj['devices']]
    return version, devices


_HEADER_RE = re.compile(r'\A\{\n\t"version": "(?P<version>[^"\n]*)",\n\t"devices": \[\n(?P<body>.*)\n\t\]\n\}\n?\Z',
                        re.DOTALL)
_DEVICE_RE = re.compile(
    r'\t\t\{\n'
    r'\t\t\t"minor": (?P<minor>[0-9]+),\n'
    r'\t\t\t"cow_file": "(?P<cow_file>.*?)",\n'
    r'\t\t\t"block_device": "(?P<block_device>.*?)",\n'
    r'\t\t\t"max_cache": (?P<max_cache>[0-9]+),\n'
    r'(?P<rest>(?:\t\t\t[^\n]*\n)*?)'
    r'\t\t\t"state": (?P<state>[0-9]+)\n'
    r'\t\t\}', re.DOTALL)
_REST_RE = re.compile(
    r'\t\t\t"(?P<key>[a-z_]+)": (?:(?P<int>-?[0-9]+)|"(?P<str>[0-9a-f]*)"|(?P<obj>\{\n'
    r'\t\t\t\t"step_size_mib": (?P<step>[0-9]+),\n'
    r'\t\t\t\t"reserved_space_mib": (?P<reserved>[0-9]+)\n'
    r'\t\t\t\}|\{\n(?:\t\t\t\t[^\n]*\n)*\t\t\t\})),\n')


def _parse_driver_layout(text):
    """Parse the driver's exact output layout, taking paths verbatim."""
    head = _HEADER_RE.match(text)
    if head is None:
        if not text.startswith('{'):
            raise ParseError('/proc/datto-info does not start with "{" (got "%s"); is this dattobd?'
                             % _snippet(text, 0))
        if not text.rstrip().endswith('}'):
            raise ParseError('/proc/datto-info is truncated (it does not end with "}"): "...%s".'
                             % _snippet(text, len(text) - 30))
        raise ParseError('/proc/datto-info is not in the layout dattobd prints; start: "%s".' % _snippet(text, 0))
    body = head.group('body')
    devices = []
    if body.strip() == '':
        return head.group('version'), devices
    pos = 0
    while True:
        m = _DEVICE_RE.match(body, pos)
        if m is None:
            raise ParseError('/proc/datto-info: cannot parse the device entry at "%s".' % _snippet(body, pos))
        devices.append(_tracker_from_match(m))
        pos = m.end()
        if pos == len(body):
            break
        if body.startswith(',\n', pos):
            pos += 2
            continue
        raise ParseError('/proc/datto-info: unexpected text after device %s: "%s".'
                         % (m.group('minor'), _snippet(body, pos)))
    return head.group('version'), devices


def _tracker_from_match(m):
    minor = int(m.group('minor'))
    kwargs = dict(minor=minor, cow_file=m.group('cow_file'), block_device=m.group('block_device'),
                  max_cache=int(m.group('max_cache')), state=int(m.group('state')))
    rest = m.group('rest')
    extra = {}
    pos = 0
    while pos < len(rest):
        r = _REST_RE.match(rest, pos)
        if r is None:
            raise ParseError('/proc/datto-info: device %s: cannot parse "%s".' % (minor, _snippet(rest, pos)))
        key = r.group('key')
        if r.group('int') is not None:
            value = int(r.group('int'))
        elif r.group('str') is not None:
            value = r.group('str')
        elif r.group('step') is not None:
            value = {'step_size_mib': int(r.group('step')), 'reserved_space_mib': int(r.group('reserved'))}
        else:
            value = r.group('obj')
        if key in _INT_KEYS and isinstance(value, int):
            kwargs[key] = value
        elif key == 'uuid' and isinstance(value, str):
            kwargs['uuid'] = value
        elif key == 'auto_expand' and isinstance(value, dict):
            kwargs['auto_expand'] = value
        else:
            extra[key] = value
        pos = r.end()
    kwargs['extra'] = extra
    return Tracker(**kwargs)


def parse(data):
    """Parse the text (``str`` or ``bytes``) of /proc/datto-info into a :class:`ProcInfo`.

    Raises :class:`ParseError` with a clear message for anything that is not dattobd's output.
    """
    if data is None:
        return ProcInfo(loaded=False)
    if isinstance(data, bytes):
        text = data.decode('utf-8', 'surrogateescape')
    else:
        text = data
    if text.strip() == '':
        raise ParseError('/proc/datto-info is empty; the driver may be unloading or broken.')
    try:
        version, devices = _parse_json(text)
    except ValueError:
        # json.JSONDecodeError is a ValueError: unescaped paths, or not JSON at all.
        version, devices = _parse_driver_layout(text)
    except RecursionError:
        raise ParseError('/proc/datto-info is nested too deeply to be dattobd output.')
    minors = [d.minor for d in devices]
    if len(set(minors)) != len(minors):
        raise ParseError('/proc/datto-info lists a minor twice: %s.' % sorted(minors))
    return ProcInfo(loaded=True, version=version, devices=devices, raw=text)


def read(path=PROC_PATH, timeout=10):
    """Read and parse /proc/datto-info with a timeout; ``loaded`` is False when it does not exist.

    A driver already known to be wedged (``wedge.py``) is not read: :class:`errors.DriverWedged` at
    once. A read that times out marks it wedged (this call and the rest of this boot).
    """
    wedge.check()
    try:
        data = read_file_timed(path, timeout=timeout)
    except DriverTimeout as exc:
        raise wedge.mark(exc, 'reading %s' % path)
    return parse(data)


def max_snap_devices(path=MAX_SNAP_DEVICES_PATH):
    """The driver's number of minors (module parameter), or the default when unreadable."""
    try:
        with open(path) as f:
            value = validation.to_int(f.read(), strip=True)
    except (OSError, ValueError):
        return DEFAULT_MAX_SNAP_DEVICES
    return value if value is not None and 0 < value <= 255 else DEFAULT_MAX_SNAP_DEVICES
