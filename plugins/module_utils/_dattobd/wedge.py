# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A wedged driver costs one timeout per host and boot, not one per call.

dattobd 0.12.x leaks its global lock after a successful ``expand-cow-file``: from then on every
ioctl and every read of ``/proc/datto-info`` blocks in D state until the machine is reset. The
first driver call that times out (:func:`mark`, called by ``procinfo.read`` and ``dbdctl``)
marks the driver wedged:

* in this process: every later driver call of the same module call fails at once (:func:`check`);
* on the host, until the next boot: a marker file under ``/run`` (tmpfs, gone after a reboot),
  keyed by the boot id (``/proc/sys/kernel/random/boot_id``) so that a marker of an earlier boot
  is ignored. The backup, snapshot, sync and engine modules fail at once on it, without a
  timeout; the info module reports it (``driver_wedged``).

What clears it: a hard reset only. A clean ``systemctl reboot`` hangs (measured: minutes) on the
unmounts of the tracked filesystems, which block on the same lock. :data:`RECOVERY` says how;
docs/troubleshooting.md has the steps.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from . import boot_state
from .errors import DriverWedged
from .fileutil import atomic_write

DEFAULT_DIR = '/run/snapfleet-dattobd'
MARKER_NAME = 'driver-wedged.json'
SCHEMA = 1

CAUSE = ('every ioctl and every read of /proc/datto-info blocks (dattobd 0.12.x leaks its global lock after a '
         'successful expand-cow-file)')
RECOVERY = ('Only a hard reset clears it: a clean reboot hangs on the unmounts of the tracked filesystems. Run '
            '"sync", then reset through sysrq (echo 1 > /proc/sys/kernel/sysrq; echo s > /proc/sysrq-trigger; '
            'echo b > /proc/sysrq-trigger) or the hypervisor\'s reset. Every tracker is lost then: the next '
            'backup of each volume is full. The status and backup playbooks do it when asked '
            '(-e dattobd_recover_wedged=reset). See docs/troubleshooting.md, "Wedged driver".')

# The wedge seen by this process (one module call): set by mark() and by a marker check() found.
_STATE = {'marker': None}


def marker_path(directory=None):
    return os.path.join(directory or DEFAULT_DIR, MARKER_NAME)


def reset():
    """Forget the wedge seen by this process (tests)."""
    _STATE['marker'] = None


def read(directory=None, boot_id=None):
    """The marker of this boot as a dict (``since``, ``reason``, ``boot_id``, ``path``), or None.

    This process's own wedge first; then the marker file, which counts only when its boot id is
    this boot's (``boot_id``: tests). An unreadable or foreign marker counts as none.
    """
    if _STATE['marker'] is not None:
        return dict(_STATE['marker'])
    path = marker_path(directory)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get('schema') != SCHEMA:
        return None
    current = boot_id if boot_id is not None else boot_state.read_boot_id()
    if not current or data.get('boot_id') != current:
        return None  # written before the last reboot: the reset cleared the wedge
    out = dict((k, data.get(k)) for k in ('since', 'reason', 'boot_id', 'call'))
    out['path'] = path
    _STATE['marker'] = out
    return dict(out)


def error(marker, fresh=False, **details):
    """The :class:`DriverWedged` of ``marker``: what happened, since when, what clears it."""
    if fresh:
        msg = '%s: the dattobd driver is wedged; no further driver call is made until the next boot.' % (
            marker.get('reason') or 'a driver call did not finish').rstrip('.')
    else:
        msg = 'The dattobd driver is wedged since %s (%s); no driver call was made.' % (
            marker.get('since') or 'earlier in this boot',
            (marker.get('reason') or 'a driver call timed out').rstrip('.'))
    details.setdefault('wedged', True)
    details['driver_wedged'] = dict(marker)
    return DriverWedged(msg, hint=RECOVERY, **details)


def check(directory=None, boot_id=None):
    """Raise :class:`DriverWedged` when the driver is known to be wedged (this call or this boot)."""
    marker = read(directory, boot_id)
    if marker is not None:
        raise error(marker)


def mark(exc, what, directory=None, boot_id=None, now=None, persist=True):
    """A driver call ``what`` timed out (``exc``, a ``DriverTimeout``): mark the driver wedged.

    Remembered in this process, and written (best effort; not with ``persist=False``, check mode)
    to the marker file of this boot.
    Returns the :class:`DriverWedged` to raise (``exc``'s details kept, the marker's path in
    ``driver_wedged.path``, or None when the file could not be written).
    """
    if isinstance(exc, DriverWedged):
        return exc
    timeout = (getattr(exc, 'details', None) or {}).get('timeout')
    reason = '%s did not finish within %s seconds' % (what, timeout) if timeout is not None else \
        '%s did not finish in time' % what
    stamp = now if now is not None else time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    current = boot_id if boot_id is not None else boot_state.read_boot_id()
    marker = {'since': stamp, 'reason': reason, 'boot_id': current, 'call': what, 'path': None}
    path = marker_path(directory)
    if current and persist:
        data = dict(schema=SCHEMA, since=stamp, reason=reason, boot_id=current, call=what)
        try:
            atomic_write(path, (json.dumps(data, sort_keys=True) + '\n').encode('utf-8'), mode=0o600,
                         dir_mode=0o700)
            marker['path'] = path
        except (IOError, OSError):
            pass
    _STATE['marker'] = dict(marker)
    details = dict(getattr(exc, 'details', None) or {})
    return error(marker, fresh=True, **details)
