# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""node_exporter textfile metrics of a backup cycle (Prometheus text exposition format 0.0.4).

One file per image (:func:`file_name`: the backup record's name, so two images never share a
file), written atomically (``fileutil.atomic_write``: a ``.tmp-`` file the textfile collector
ignores, renamed over the last one), mode 0644 for the collector's user. Every series of every
file carries the same label names (``volume``, ``image``, ``minor``, and the fixed extra labels of
the ``*_info`` metrics), and every metric the same HELP and TYPE, as node_exporter requires of the
files it merges. docs/monitoring.md lists the metrics.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import errno
import math
import os
import time

from .backup_record import record_name
from .errors import DattobdError
from .fileutil import atomic_write

DEFAULT_DIR = '/var/lib/prometheus/node-exporter'
PREFIX = 'snapfleet_dattobd_'
FILE_MODE = 0o644
LABELS = ('volume', 'image', 'minor')

# name (without PREFIX), help, extra label names of an info metric (its value is always 1)
METRICS = (
    ('last_success_timestamp_seconds', 'Unix time the last successful backup cycle of the image ended (0 if none '
                                       'succeeded yet).', ()),
    ('last_run_timestamp_seconds', 'Unix time the last backup cycle of the image ended, successful or not.', ()),
    ('last_run_success', '1 if the last backup cycle of the image succeeded, 0 if it failed or was refused.', ()),
    ('last_run_info', 'How the last backup cycle ended: result (ok or failed), the step that failed, what the next '
                      'run does and the state of the image.', ('result', 'step', 'next_run', 'image_state')),
    ('duration_seconds', 'Seconds the last backup cycle took, from its checks to its end.', ()),
    ('blocks_read', 'Blocks (4 KiB) the last successful cycle copied from the snapshot: the changed blocks of an '
                    'incremental, the allocated blocks of a full backup.', ()),
    ('bytes_read', 'Bytes the last successful cycle read from the snapshot device.', ()),
    ('bytes_written', 'Bytes the last successful cycle wrote into the image (all-zero blocks stay holes).', ()),
    ('mode_info', 'Mode of the last backup cycle (full, incremental or resume), why, and whether it was the first '
                  'since a reboot.', ('mode', 'reason', 'after_reboot')),
    ('verification_ok', '1 if what the last cycle verified matched the snapshot, 0 if a verification or a verify '
                        'hook failed; absent when the cycle verified nothing.', ()),
    ('tracker_state', 'State number of the dattobd tracker at the end of the last successful cycle '
                      '(/proc/datto-info: bit 0 snapshot, bit 1 active, bit 2 unverified).', ()),
    ('tracker_state_info', 'State of the dattobd tracker at the end of the last successful cycle, by name.',
     ('state',)),
    ('cow_bytes_used', 'Bytes of the snapshot COW file in use when the last cycle ended its snapshot (header, '
                       'index and the blocks copied on write).', ()),
    ('cow_bytes_size', 'Size in bytes of the snapshot COW file when the last cycle ended its snapshot (the '
                       'preallocated size, grown by auto-expand).', ()),
)
HELP = dict((name, text) for name, text, dummy in METRICS)
INFO_LABELS = dict((name, extra) for name, dummy, extra in METRICS)


def file_name(image):
    """The metrics file of ``image``: ``snapfleet_dattobd_<record stem>.prom`` (one per image, like its record)."""
    return PREFIX + record_name(image)[:-len('.json')] + '.prom'


def target(params):
    """The metrics file a cycle with ``params`` writes, or None; reads only, refuses a bad request.

    ``metrics`` false: None. ``metrics_dir`` omitted: :data:`DEFAULT_DIR` when it is a directory,
    else None (no node_exporter here). ``metrics_dir`` given: it must be an absolute path of an
    existing directory; otherwise :class:`DattobdError` (raised before the cycle does anything).
    """
    if params.get('metrics') is False:
        return None
    directory = params.get('metrics_dir')
    if directory is None:
        return os.path.join(DEFAULT_DIR, file_name(params['image'])) if os.path.isdir(DEFAULT_DIR) else None
    if not isinstance(directory, str) or not os.path.isabs(directory) or '\0' in directory:
        raise DattobdError('metrics_dir must be an absolute path, got %r.' % (directory,))
    if not os.path.isdir(directory):
        why = 'is not a directory' if os.path.lexists(directory) else 'does not exist'
        raise DattobdError('The metrics directory %s %s.' % (directory, why),
                           hint='Install prometheus-node-exporter (its textfile collector reads %s), create the '
                                'directory node_exporter reads (--collector.textfile.directory), or set metrics '
                                'to false.' % DEFAULT_DIR)
    return os.path.join(directory, file_name(params['image']))


# --- the text exposition format ----------------------------------------------------------------

def _text(value):
    """``value`` as valid UTF-8 text: bytes a path held that are not UTF-8 become ``\\xNN``."""
    if value is None:
        return ''
    if not isinstance(value, str):
        value = str(value)
    return value.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')


def escape_label(value):
    """A label value as the exposition format quotes it: backslash, double quote and line feed escaped."""
    return _text(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def escape_help(text):
    """A HELP text: backslash and line feed escaped."""
    return _text(text).replace('\\', '\\\\').replace('\n', '\\n')


def number(value):
    """A sample value: integers as such, floats in Python's shortest round-trip form (``NaN``, ``+Inf``...)."""
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return '%d' % value
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    return repr(value)


def render(labels, values):
    """The exposition text of one image: ``labels`` (a dict with :data:`LABELS`) and ``values``.

    ``values`` maps a metric name of :data:`METRICS` (without prefix) to a number, or for an
    ``*_info`` metric to the dict of its extra labels (value 1). Metrics missing from ``values``
    or None are left out (HELP and TYPE as well). The order is that of :data:`METRICS`.
    """
    base = ','.join('%s="%s"' % (key, escape_label(labels.get(key))) for key in LABELS)
    lines = []
    for name, text, extra in METRICS:
        value = values.get(name)
        if value is None:
            continue
        full = PREFIX + name
        series = base
        if extra:
            series += ''.join(',%s="%s"' % (key, escape_label(value.get(key))) for key in extra)
            value = 1
        lines.append('# HELP %s %s' % (full, escape_help(text)))
        lines.append('# TYPE %s gauge' % full)
        lines.append('%s{%s} %s' % (full, series, number(value)))
    return '\n'.join(lines) + '\n'


def read_value(path, name):
    """The value of metric ``name`` (without prefix) in the metrics file ``path``, or None (missing, unreadable)."""
    full = PREFIX + name + '{'
    try:
        with open(path, 'rb') as handle:
            data = handle.read(1 << 20).decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
    for line in data.splitlines():
        if line.startswith(full):
            try:
                value = float(line.rsplit(' ', 1)[1])
            except (IndexError, ValueError):
                return None
            return value if math.isfinite(value) else None
    return None


def epoch_of(text):
    """Unix time of a record time stamp (``2026-01-31T12:00:00Z``, ``constants.now_text``), or None."""
    if not isinstance(text, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%SZ')))
    except ValueError:
        return None


# --- what a cycle publishes ----------------------------------------------------------------------

def verification_ok(verification, verified=False, failed_step=None):
    """1 when the cycle verified something and it matched, 0 when a verification (or verify hook) failed, else None."""
    if failed_step in ('verify', 'verify_hooks'):
        return 0
    verification = verification or {}
    results = [(verification.get(kind) or {}).get('result') for kind in ('sample', 'full')]
    if 'failed' in results:
        return 0
    if 'ok' in results or verified:
        return 1
    return None


def cycle_values(run):
    """The metric values of one cycle from ``run``, a dict the cycle fills (every key optional).

    ``success`` (bool), ``finished`` (Unix time), ``duration``, ``last_success`` (the previous
    successful cycle's Unix time, kept when this one failed), ``mode``, ``reason``,
    ``after_reboot`` (bool), ``step``, ``next_run``, ``image_state``, ``blocks``, ``read_bytes``,
    ``bytes``, ``verification_ok`` (1, 0 or None), ``tracker`` (a tracker dict with ``state`` and
    ``state_name``), ``cow_used``, ``cow_size``. The copy figures and the tracker state are
    published for a successful cycle only.
    """
    ok = bool(run.get('success'))
    finished = run.get('finished')
    last = finished if ok else run.get('last_success')
    out = {
        'last_success_timestamp_seconds': round(last, 3) if last else 0,
        'last_run_timestamp_seconds': round(finished, 3),
        'last_run_success': 1 if ok else 0,
        'last_run_info': {'result': 'ok' if ok else 'failed', 'step': run.get('step') or '',
                          'next_run': run.get('next_run') or '', 'image_state': run.get('image_state') or ''},
        'duration_seconds': round(run['duration'], 3) if run.get('duration') is not None else None,
        'mode_info': {'mode': run.get('mode') or '', 'reason': run.get('reason') or '',
                      'after_reboot': 'true' if run.get('after_reboot') else 'false'},
        'verification_ok': run.get('verification_ok'),
        'cow_bytes_used': run.get('cow_used'),
        'cow_bytes_size': run.get('cow_size'),
    }
    if ok:
        out.update(blocks_read=run.get('blocks'), bytes_read=run.get('read_bytes'), bytes_written=run.get('bytes'))
        tracker = run.get('tracker') or {}
        if isinstance(tracker.get('state'), int) and tracker.get('state_name'):
            out['tracker_state'] = tracker['state']
            out['tracker_state_info'] = {'state': tracker['state_name']}
    return out


def publish(path, labels, run):
    """Write the metrics of one cycle (:func:`cycle_values`) to ``path``, atomically, mode 0644.

    A failed cycle keeps the last success time: the later of ``run['last_success']`` (the backup
    record's) and the one the previous file holds. Raises ``OSError`` when the file cannot be
    written (the previous one is then left as it was).
    """
    run = dict(run)
    if not run.get('success'):
        known = [v for v in (run.get('last_success'), read_value(path, 'last_success_timestamp_seconds')) if v]
        run['last_success'] = max(known) if known else None
    text = render(labels, cycle_values(run))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise OSError(errno.ENOENT, 'the metrics directory %s does not exist (any more)' % directory)
    atomic_write(path, text.encode('utf-8'), mode=FILE_MODE)
    return path
