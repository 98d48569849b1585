# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side filters that build and render the fleet report of the ``status`` and ``backup`` playbooks.

``fleet_report`` turns what a playbook collected from every host (the ``info`` module result, the
backup records written by the ``backup`` module, this run's backup results, reachability) into one
JSON-ready report (schema ``FLEET_REPORT_SCHEMA``, ``snapfleet.dattobd/fleet-report/v2``). The
renderings of that report:

- ``fleet_report_html``: one self-contained HTML page (inline CSS, inline script, inline SVG, no
  external asset) rendered from the Jinja2 template
  ``plugins/plugin_utils/templates/fleet_report.html.j2`` with autoescaping: problems first, then
  one row per volume in a table that sorts and filters in the browser;
- ``fleet_report_junit``: JUnit XML, one test case per host and one per volume;
- ``fleet_report_markdown``: a short Markdown summary for a CI job page.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import os
import re

import jinja2

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as verify_mod

SCHEMA_VERSION = 2
SCHEMA_ID = 'snapfleet.dattobd/fleet-report/v%d' % SCHEMA_VERSION

# Severity order: problems first.
STATUS_RANK = {'unreachable': 0, 'error': 1, 'warning': 2, 'unknown': 3, 'ok': 4}

DEFAULT_STALE_HOURS = 26
# Cycles of each volume's history kept in the report (the record keeps up to 20).
HISTORY_CYCLES = 14

# Problem kinds, in the order the report lists them (after severity). The ones in FAILURE_KINDS
# fail the test case of their host or volume in the JUnit file.
KINDS = (
    'unreachable',          # the host did not answer (from the start, or it stopped during the run)
    'not_run',              # the backup play never started on the host (max fail percentage)
    'collection_failed',    # the info module or reading the records failed
    'driver_wedged',        # the dattobd driver is wedged (only a hard reset clears it)
    'driver_reset',         # the playbook reset the host of a wedged driver (or would, or failed to)
    'driver_not_loaded',    # dattobd is not loaded: nothing is tracked
    'kernel_gate',          # the kernel the host boots next would not load dattobd
    'failed',               # the last backup of the volume failed
    'stale',                # the last good backup (recovery point) is older than stale_hours
    'tracker_lost',         # the tracker failed or disappeared: the next backup is a full one
    'no_backup',            # tracked but never backed up, or no successful backup yet
    'unverified',           # tracker not yet verified since boot
    'next_full',            # the next backup will be a full one or a resume
    'verify_overdue',       # the scheduled full verification is overdue
    'reload_drift',         # boot reload scripts differ from the live trackers
    'host_problem',         # other problems the info module reported
)
FAILURE_KINDS = ('unreachable', 'not_run', 'collection_failed', 'driver_wedged', 'driver_not_loaded', 'kernel_gate',
                 'failed',
                 'stale', 'tracker_lost')
KIND_LABELS = {
    'unreachable': 'unreachable', 'not_run': 'not run', 'collection_failed': 'collection failed',
    'driver_wedged': 'driver wedged', 'driver_reset': 'driver reset',
    'driver_not_loaded': 'driver not loaded', 'kernel_gate': 'kernel gate', 'failed': 'failed',
    'stale': 'stale', 'tracker_lost': 'tracker lost', 'no_backup': 'no backup', 'unverified': 'unverified',
    'next_full': 'next backup full', 'verify_overdue': 'verification overdue', 'reload_drift': 'reload drift',
    'host_problem': 'host problem',
}

# What the status and backup playbooks did about a wedged driver (playbooks/tasks/recover-wedged.yml) -> the
# severity of the host's problem [driver_reset] that says so (none: only the advice, in the wedged problem).
RECOVERY_ACTIONS = {'none': None, 'would_reset': 'warning', 'reset': 'warning', 'not_back': None, 'failed': 'error'}
# Appended to a wedged driver's problem: what clears it.
WEDGED_ADVICE = ('only a hard reset clears it (docs/troubleshooting.md, "Wedged driver"); the status and backup '
                 'playbooks do it with -e dattobd_recover_wedged=reset')

_NULL_STR = {'type': ['string', 'null']}
_NULL_INT = {'type': ['integer', 'null']}
_NULL_NUM = {'type': ['number', 'null']}
_RESULT = {'enum': ['ok', 'failed', None]}

# The last cycles of a volume, oldest first, one list per figure (all of the same length).
_HISTORY_SCHEMA = {
    'type': 'object',
    'required': ['finished', 'result', 'bytes_written', 'cycle_seconds'],
    'properties': {
        'finished': {'type': 'array', 'items': _NULL_STR},
        'result': {'type': 'array', 'items': {'enum': ['ok', 'failed', 'unknown']}},
        'bytes_written': {'type': 'array', 'items': _NULL_INT},
        'cycle_seconds': {'type': 'array', 'items': _NULL_NUM},
    },
}

_VOLUME_SCHEMA = {
    'type': 'object',
    'required': ['name', 'status', 'problems', 'problem_kinds', 'history'],
    'properties': {
        'name': {'type': 'string'},
        'status': {'enum': ['unreachable', 'error', 'warning', 'unknown', 'ok']},
        'problems': {'type': 'array', 'items': {'type': 'string'}},
        'problem_kinds': {'type': 'array', 'items': {'enum': list(KINDS)}},
        'device': _NULL_STR,
        'image': _NULL_STR,
        'minor': _NULL_INT,
        'tracker_state': _NULL_STR,
        'seq_id': _NULL_INT,
        'last_backup': _NULL_STR,
        'recovery_point_age_hours': _NULL_NUM,
        'stale': {'type': 'boolean'},
        'last_result': _RESULT,
        'this_run': {'enum': ['ok', 'failed', 'unreachable', 'skipped', 'check', None]},
        'mode': _NULL_STR,
        'reason': _NULL_STR,
        'next_full_reason': _NULL_STR,
        'blocks_read': _NULL_INT,
        'bytes_read': _NULL_INT,
        'bytes_written': _NULL_INT,
        'rebaseline': _NULL_STR,
        'blocks_differing': _NULL_INT,
        'seconds': _NULL_NUM,
        'mib_per_s': _NULL_NUM,
        'cycle_seconds': _NULL_NUM,
        'next_run': _NULL_STR,
        'image_state': _NULL_STR,
        'last_full_verify': _NULL_STR,
        'last_full_verify_result': _RESULT,
        'full_verify_age_days': _NULL_NUM,
        'full_verify_every_days': _NULL_NUM,
        'full_verify_every_cycles': _NULL_INT,
        'full_verify_overdue': {'type': ['boolean', 'null']},
        'last_sample_result': _RESULT,
        'last_sample_blocks': _NULL_INT,
        'history': _HISTORY_SCHEMA,
    },
}

_KERNEL_GATE_SCHEMA = {
    'type': ['object', 'null'],
    'properties': {
        'running': _NULL_STR,
        'next_boot': _NULL_STR,
        'next_boot_ok': {'type': ['boolean', 'null']},
        'kernels': {'type': 'array', 'items': {'type': 'object', 'properties': {
            'release': _NULL_STR, 'build': {'type': ['boolean', 'null']},
            'loads': {'type': ['boolean', 'null']}, 'reason': _NULL_STR}}},
    },
}

FLEET_REPORT_SCHEMA = {
    '$schema': 'http://json-schema.org/draft-07/schema#',
    '$id': SCHEMA_ID,
    'type': 'object',
    'required': ['schema', 'schema_version', 'generated', 'stale_hours', 'summary', 'problems', 'hosts'],
    'properties': {
        'schema': {'const': SCHEMA_ID},
        'schema_version': {'const': SCHEMA_VERSION},
        'generated': {'type': 'string'},
        'stale_hours': {'type': 'number'},
        'summary': {
            'type': 'object',
            'required': ['hosts', 'reached', 'volumes', 'by_status', 'volumes_by_status', 'by_kind', 'problems',
                         'failures', 'outcome', 'oldest_recovery_point_hours'],
            'properties': {
                'hosts': {'type': 'integer'},
                'reached': {'type': 'integer'},
                'volumes': {'type': 'integer'},
                'problems': {'type': 'integer'},
                'failures': {'type': 'integer'},
                'outcome': {'enum': ['all_good', 'problems', 'none_reached']},
                'oldest_recovery_point_hours': _NULL_NUM,
                'by_status': {'type': 'object', 'additionalProperties': {'type': 'integer'}},
                'volumes_by_status': {'type': 'object', 'additionalProperties': {'type': 'integer'}},
                'by_kind': {'type': 'object', 'additionalProperties': {'type': 'integer'}},
            },
        },
        'problems': {
            'type': 'array',
            'items': {
                'type': 'object',
                'required': ['host', 'volume', 'kind', 'severity', 'text'],
                'properties': {
                    'host': {'type': 'string'},
                    'volume': _NULL_STR,
                    'kind': {'enum': list(KINDS)},
                    'severity': {'enum': ['unreachable', 'error', 'warning']},
                    'text': {'type': 'string'},
                },
            },
        },
        'hosts': {
            'type': 'array',
            'items': {
                'type': 'object',
                'required': ['name', 'status', 'problems', 'problem_kinds', 'volumes'],
                'properties': {
                    'name': {'type': 'string'},
                    'status': {'enum': list(STATUS_RANK)},
                    'problems': {'type': 'array', 'items': {'type': 'string'}},
                    'problem_kinds': {'type': 'array', 'items': {'enum': list(KINDS)}},
                    'driver_loaded': {'type': ['boolean', 'null']},
                    'driver_version': _NULL_STR,
                    'driver_wedged': {'type': ['object', 'null'], 'properties': {
                        'since': _NULL_STR, 'reason': _NULL_STR, 'clears': _NULL_STR}},
                    'recovery': {'type': ['object', 'null'], 'properties': {
                        'action': {'enum': list(RECOVERY_ACTIONS)}, 'at': _NULL_STR, 'seconds': _NULL_NUM,
                        'sync': _NULL_STR, 'msg': _NULL_STR}},
                    'kernel_gate': _KERNEL_GATE_SCHEMA,
                    'volumes': {'type': 'array', 'items': _VOLUME_SCHEMA},
                },
            },
        },
    },
}


def _as_int(value):
    # the common case, fast; bool is no int here
    if type(value) is int:  # pylint: disable=unidiomatic-typecheck
        return value
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value):
    if type(value) is float:  # pylint: disable=unidiomatic-typecheck
        return value
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_bool(value):
    return value if isinstance(value, bool) else None


def _text(value):
    if value is None or type(value) is str:  # pylint: disable=unidiomatic-typecheck
        return value
    return value if isinstance(value, str) else str(value)


def _parse_time(value):
    """ISO 8601 text (``Z`` or offset) -> aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith('Z'):
        text = text[:-1] + '+00:00'
    try:
        stamp = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp


def _worst(statuses, default='ok'):
    worst = default
    for status in statuses:
        if STATUS_RANK.get(status, 3) < STATUS_RANK.get(worst, 3):
            worst = status
    return worst


class _Problems(object):
    """The problems of one host or volume: texts, their kinds, and the status they lead to."""

    def __init__(self, status='ok'):
        self.texts = []
        self.kinds = []
        self.severities = []
        self.status = status

    def add(self, kind, severity, text):
        self.texts.append(text)
        self.kinds.append(kind)
        self.severities.append(severity)
        self.status = _worst([self.status, severity])


def _problem_text(item):
    if isinstance(item, dict):
        for key in ('message', 'msg', 'problem'):
            if item.get(key):
                extra = item.get('minor')
                return ('minor %s: %s' % (extra, item[key])) if extra is not None else _text(item[key])
        return ', '.join('%s=%s' % (k, item[k]) for k in sorted(item))
    return _text(item)


def _tracker_state_name(tracker):
    name = tracker.get('state_name')
    if name:
        return _text(name)
    state = _as_int(tracker.get('state'))
    if state is None:
        return None
    return _STATE_NAMES.get(state, 'state %d' % state)


_STATE_NAMES = {0: 'dormant incremental', 1: 'dormant snapshot', 2: 'active incremental',
                3: 'active snapshot', 4: 'unverified incremental', 5: 'unverified snapshot'}


def _tracker_failed(tracker):
    if tracker.get('failed'):
        return True
    return tracker.get('error') not in (None, 0, '0', '')


def _history(record):
    """The last HISTORY_CYCLES cycles of the record's ``history`` (backup module), oldest first, in
    columns: ``finished``, ``result`` (ok, failed, unknown), ``bytes_written``, ``cycle_seconds``."""
    entries = record.get('history')
    entries = [e for e in entries if isinstance(e, dict)][-HISTORY_CYCLES:] if isinstance(entries, list) else []
    finished, result, written, cycle = [], [], [], []
    for entry in entries:
        value = entry.get('finished')
        finished.append(value if value is None or type(value) is str else _text(value))  # pylint: disable=unidiomatic-typecheck
        value = entry.get('result')
        result.append(value if value in ('ok', 'failed') else 'unknown')
        value = entry.get('bytes')
        written.append(value if type(value) is int else _as_int(value))  # pylint: disable=unidiomatic-typecheck
        value = entry.get('cycle_seconds')
        cycle.append(value if type(value) is float else _as_float(value))  # pylint: disable=unidiomatic-typecheck
    return {'finished': finished, 'result': result, 'bytes_written': written, 'cycle_seconds': cycle}


def _this_run(run):
    """What this run's backup did to the volume (backup playbook), or None (status playbook)."""
    if not run:
        return None
    if run.get('unreachable'):
        return 'unreachable'
    if run.get('failed'):
        return 'failed'
    if run.get('skipped'):
        return 'skipped'
    if run.get('check_mode'):
        return 'check'
    return 'ok'


def _volume_from(record, tracker, now, stale_hours, run=None, host_issue=None):
    """One volume of the report from its backup record, its tracker and this run's backup result (each may be None).

    ``host_issue``: ``(kind, severity, text)`` of a host problem that leaves the tracker unknown (the
    driver failed or is wedged, the host did not answer); the volume carries it and no lost tracker
    is concluded from the missing tracker."""
    record = record or {}
    tracker = tracker or {}
    run = run or {}
    found = _Problems()
    if host_issue is not None:
        found.add(*host_issue)
    device = _text(record.get('device') or run.get('device') or tracker.get('block_device'))
    image = _text(record.get('image') or run.get('image'))
    minor = _as_int(record.get('minor') if record.get('minor') is not None else
                    (run.get('minor') if run.get('minor') is not None else tracker.get('minor')))
    result = record.get('last_result')
    if result not in ('ok', 'failed'):
        result = None
    last_ok = _text(record.get('last_success') or (record.get('finished') if result == 'ok' else None))
    this_run = _this_run(run)

    _run_and_tracker_problems(found, record, tracker, run, this_run, result, host_issue)
    next_run, next_full_reason = _next_run(found, record, run)
    age_h, stale = _recovery_point(found, record, this_run, result, last_ok, now, stale_hours)
    verification = _full_verify(record, now, stale_hours)
    _verification_problem(found, verification)
    figures = run if this_run == 'ok' else record
    name = _text(record.get('name') or run.get('name')) or device or (
        'minor %s' % minor if minor is not None else 'volume')
    out = {
        'name': name,
        'status': found.status,
        'problems': found.texts,
        'problem_kinds': found.kinds,
        'severities': found.severities,
        'device': device,
        'image': image,
        'minor': minor,
        'tracker_state': _tracker_state_name(tracker) if tracker else None,
        'seq_id': _as_int(tracker.get('seq_id') if tracker.get('seq_id') is not None else
                          (record.get('seq_id') if record.get('seq_id') is not None else run.get('seq_id'))),
        'last_backup': last_ok,
        'recovery_point_age_hours': age_h,
        'stale': stale,
        'last_result': result,
        'this_run': this_run,
    }
    out.update(_figures(figures, record, next_full_reason))
    out.update(next_run=next_run, image_state=_text(run.get('image_state') or record.get('image_state')),
               history=_history(record))
    out.update(verification)
    return out


def _run_and_tracker_problems(found, record, tracker, run, this_run, result, host_issue):
    """Add the problems of this run's result, the record's last result and the tracker to ``found``."""
    if this_run == 'unreachable':
        found.add('unreachable', 'unreachable', 'the host stopped answering during the backup: %s'
                  % (_text(run.get('msg')) or 'no answer'))
    elif this_run == 'failed':
        found.add('failed', 'error', 'backup failed%s: %s' % (
            ' at %s' % run['step'] if run.get('step') else '', _text(run.get('msg')) or 'no message'))
    elif result == 'failed':
        found.add('failed', 'error', 'last backup failed: %s' % (_text(record.get('msg')) or 'no message'))
    if tracker and _tracker_failed(tracker):
        err = tracker.get('error_name') or tracker.get('error')
        code = _as_int(err)
        if code is not None:
            err = errno.errorcode.get(abs(code), 'E%d' % abs(code))
        found.add('tracker_lost', 'error', 'tracker failed (%s): the next backup is a full one' % err)
    if record and not tracker and this_run is None and host_issue is None:
        found.add('tracker_lost', 'warning', 'no tracker on this volume: the next backup is a full one')
    if tracker and not record and not run:
        found.add('no_backup', 'warning', 'tracked but never backed up by snapfleet')
    if tracker and not _tracker_failed(tracker) and (_tracker_state_name(tracker) or '').startswith('unverified'):
        found.add('unverified', 'warning',
                  'tracker still unverified: its filesystem was not seen mounted read-write since boot')


def _next_run(found, record, run):
    """``(next_run, next_full_reason)``; a full or resumed next run of a recorded volume is a warning."""
    next_run = _text(record.get('next_run') or run.get('next_run'))
    next_full_reason = None
    if next_run == 'full':
        next_full_reason = _text(record.get('next_full_reason') or run.get('next_full_reason'))
    if record and next_run in ('full', 'resume') and 'failed' not in found.kinds:
        found.add('next_full', 'warning', 'next backup: %s%s' % (
            next_run, ' (%s)' % next_full_reason if next_full_reason else ''))
    return next_run, next_full_reason


def _recovery_point(found, record, this_run, result, last_ok, now, stale_hours):
    """``(age in hours of the last good backup, stale)``; a stale or missing good backup is a problem."""
    stamp = _parse_time(last_ok)
    age_h = None
    stale = False
    if stamp is not None and now is not None:
        age_h = round((now - stamp).total_seconds() / 3600.0, 2)
        if age_h > stale_hours:
            stale = True
            found.add('stale', 'warning', 'last good backup is %s old (more than %g hours)'
                      % (_age_text(age_h), stale_hours))
    elif (record or this_run == 'failed') and last_ok is None and (result is not None or this_run is not None):
        # A host lost mid-run without its records read: whether it ever had a good backup is unknown.
        found.add('no_backup', 'warning', 'no successful backup yet')
    return age_h, stale


def _verification_problem(found, verification):
    """A full verification that is overdue (or whose last run failed) is a warning."""
    if verification['full_verify_overdue']:
        age = verification['full_verify_age_days']
        found.add('verify_overdue', 'warning', 'full verification overdue: %s (every %s)' % (
            'the last one failed' if verification['last_full_verify_result'] == 'failed'
            else ('never run' if age is None else 'the last one or the last full copy is %.1f days old' % age),
            _schedule_text(verification)))


def _figures(figures, record, next_full_reason):
    """The copy figures of the volume: this run's when it backed the volume up, else the record's (with the
    reason of the next full backup beside the reason of this one)."""
    return {
        'mode': _text(figures.get('mode') or record.get('mode')),
        # why that mode (a full backup's reason is one of the backup module's stable reasons)
        'reason': _text(figures.get('reason') or record.get('reason')),
        'next_full_reason': next_full_reason,
        # blocks read from the snapshot (the changed ones; for a full copy the volume's allocated
        # ones), bytes read from it, bytes written into the image; the rate in MiB/s (2**20 bytes)
        'blocks_read': _as_int(figures.get('blocks')),
        'bytes_read': _as_int(figures.get('read_bytes')),
        'bytes_written': _as_int(figures.get('bytes')),
        # how a full backup wrote the image: compare (only the blocks_differing written) or full (a new image)
        'rebaseline': _text(_rebaseline(figures).get('method')),
        'blocks_differing': _as_int(_rebaseline(figures).get('blocks_differing')),
        'seconds': _as_float(figures.get('seconds')),
        'mib_per_s': _as_float(figures.get('mb_per_s')),
        'cycle_seconds': _as_float(figures.get('cycle_seconds') if figures.get('cycle_seconds') is not None
                                   else record.get('cycle_seconds')),
    }


def _rebaseline(figures):
    """The backup module's ``rebaseline`` of a cycle's figures (a dict; empty when there is none)."""
    got = figures.get('rebaseline')
    return got if isinstance(got, dict) else {}


def _age_text(hours):
    if hours is None:
        return None
    if hours < 1:
        return '%d min' % max(0, round(hours * 60))
    if hours < 48:
        return '%.0f h' % hours
    return '%.1f days' % (hours / 24.0)


def _full_verify(record, now, stale_hours):
    """The full-verification fields of a volume: last one, its age, the schedule, whether it is overdue.

    The age counts from the last successful full verification or, when later, the last full copy
    (``verify.reference``, as the backup module schedules it). Overdue: the last one failed, or a
    cycle expected by then (``stale_hours`` after it was due) did not run it.
    """
    last = record.get('last_full_verify') if isinstance(record.get('last_full_verify'), dict) else {}
    sample = record.get('last_verify_sample') if isinstance(record.get('last_verify_sample'), dict) else {}
    every_days = _as_float(record.get('full_verify_every_days'))
    every_cycles = _as_int(record.get('full_verify_every_cycles'))
    ref = verify_mod.reference(record) if record else None
    age = None
    if ref is not None and now is not None:
        try:
            stamp = datetime.datetime.fromtimestamp(ref, datetime.timezone.utc)
            age = round((now - stamp).total_seconds() / 86400.0, 2)
        except (OverflowError, ValueError, OSError):
            age = None
    result = last.get('result') if last.get('result') in ('ok', 'failed') else None
    overdue = None
    if every_days or every_cycles:
        cycles = _as_int(record.get('cycles_since_full_verify')) or 0
        overdue = bool(result == 'failed'
                       or (every_days and (age is None or age * 24.0 > every_days * 24.0 + stale_hours))
                       or (every_cycles and cycles >= every_cycles))
    elif record and every_days is not None:
        overdue = False
    return {
        'last_full_verify': _text(last.get('time')),
        'last_full_verify_result': result,
        'full_verify_age_days': age,
        'full_verify_every_days': every_days,
        'full_verify_every_cycles': every_cycles,
        'full_verify_overdue': overdue,
        'last_sample_result': sample.get('result') if sample.get('result') in ('ok', 'failed') else None,
        'last_sample_blocks': _as_int(sample.get('blocks_compared')),
    }


def _schedule_text(vol):
    parts = []
    if vol.get('full_verify_every_days'):
        parts.append('%g days' % vol['full_verify_every_days'])
    if vol.get('full_verify_every_cycles'):
        parts.append('%d cycles' % vol['full_verify_every_cycles'])
    return ' or '.join(parts)


def _match(record, trackers, used):
    """The tracker of a backup record: same minor, else same block device."""
    rminor = _as_int(record.get('minor'))
    for idx, tracker in enumerate(trackers):
        if idx in used:
            continue
        if rminor is not None and _as_int(tracker.get('minor')) == rminor:
            return idx
    names = {record.get('device'), record.get('block_device')} - {None}
    for idx, tracker in enumerate(trackers):
        if idx not in used and tracker.get('block_device') in names:
            return idx
    return None


def _kernel_gate(info):
    """The ``kernel_gate`` of the info/engine result (running, next_boot, next_boot_ok, kernels), or None."""
    gate = info.get('kernel_gate')
    if not isinstance(gate, dict):
        return None
    kernels = []
    for kernel in gate.get('kernels') or []:
        if isinstance(kernel, dict):
            kernels.append({'release': _text(kernel.get('release')), 'build': _as_bool(kernel.get('build')),
                            'loads': _as_bool(kernel.get('loads')), 'reason': _text(kernel.get('reason'))})
    return {'running': _text(gate.get('running')), 'next_boot': _text(gate.get('next_boot')),
            'next_boot_ok': _as_bool(gate.get('next_boot_ok')), 'kernels': kernels}


def _kernel_gate_text(gate):
    nxt = gate['next_boot'] or 'the next boot kernel'
    why = None
    for kernel in gate['kernels']:
        if kernel['release'] == gate['next_boot']:
            why = kernel['reason'] or ('dattobd is not built for it' if kernel['build'] is False else
                                       'dattobd does not load on it' if kernel['loads'] is False else None)
    return 'kernel gate: the host boots %s next, and dattobd would not be loaded there%s' % (
        nxt, ' (%s)' % why if why else '')


def _wedged(info):
    """The info module's ``driver_wedged`` (since, reason, clears), or None."""
    got = info.get('driver_wedged')
    if not isinstance(got, dict):
        return None
    return {'since': _text(got.get('since')), 'reason': _text(got.get('reason')), 'clears': _text(got.get('clears'))}


def _recovery(data):
    """What the playbook did about the host's wedged driver (action, at, seconds, sync, msg), or None."""
    got = data.get('recovery')
    if not isinstance(got, dict) or got.get('action') not in RECOVERY_ACTIONS:
        return None
    return {'action': got['action'], 'at': _text(got.get('at')), 'seconds': _as_float(got.get('seconds')),
            'sync': _text(got.get('sync')), 'msg': _text(got.get('msg'))}


def _host_entry(name, data, now, stale_hours):
    data = data if isinstance(data, dict) else {}
    found = _Problems()
    recovery = _recovery(data)
    info = data.get('info') if isinstance(data.get('info'), dict) else {}
    _collection_problems(found, data, info)
    wedged = _wedged(info)
    if wedged is not None:
        found.add('driver_wedged', 'error', 'dattobd driver wedged since %s (%s): its trackers cannot be read; %s' % (
            wedged['since'] or '?', wedged['reason'] or '?', WEDGED_ADVICE))
    if recovery is not None and RECOVERY_ACTIONS[recovery['action']]:
        found.add('driver_reset', RECOVERY_ACTIONS[recovery['action']], recovery['msg'] or recovery['action'])
    loaded, version = _driver_of(info)
    if info and loaded is False:
        found.add('driver_not_loaded', 'error', 'dattobd module not loaded: nothing is tracked')
    gate = _kernel_gate(info if isinstance(info.get('kernel_gate'), dict) else data)
    if gate is not None and gate['next_boot_ok'] is False:
        found.add('kernel_gate', 'error', _kernel_gate_text(gate))
    reload_info = info.get('reload') if isinstance(info.get('reload'), dict) else {}
    for item in [d for d in (reload_info.get('drift') or []) if d]:
        found.add('reload_drift', 'warning', 'boot reload script drift: %s' % _problem_text(item))
    for item in info.get('problems') or []:
        found.add('host_problem', 'warning', _problem_text(item))
    volumes = _host_volumes(data, info, now, stale_hours, _host_issue(found))
    status = _worst([found.status] + [v['status'] for v in volumes])
    return {'name': name, 'status': status, 'problems': found.texts, 'problem_kinds': found.kinds,
            'severities': found.severities,
            'driver_loaded': loaded if isinstance(loaded, bool) else None,
            'driver_version': _text(version), 'driver_wedged': wedged, 'recovery': recovery, 'kernel_gate': gate,
            'volumes': volumes}


def _collection_problems(found, data, info):
    """What kept this host's status from being read: the play stopped first, no answer, or a failed collection."""
    if data.get('not_run'):
        found.add('not_run', 'error', 'not backed up: %s' % (_text(data.get('msg')) or 'the play stopped before this host'))
    elif data.get('unreachable'):
        found.add('unreachable', 'unreachable', 'unreachable: %s' % (_text(data.get('msg')) or 'no answer'))
    elif data.get('failed') or info.get('failed'):
        wedged_failure = bool(data.get('wedged') or info.get('wedged'))
        found.add('collection_failed', 'error', '%s: %s%s' % (
            'driver wedged' if wedged_failure else 'status collection failed',
            _text(data.get('msg') or info.get('msg')) or 'no message',
            ' (%s)' % WEDGED_ADVICE if wedged_failure else ''))


def _driver_of(info):
    """``(loaded, version)`` of the driver in the info module's result (or an older, nested ``driver`` form)."""
    driver = info.get('driver') if isinstance(info.get('driver'), dict) else {}
    loaded = info.get('loaded')
    if loaded is None:
        loaded = driver.get('loaded')
    version = info.get('version') or info.get('driver_version')
    if version is None:
        version = driver.get('version')
    return loaded, version


def _host_issue(found):
    """The host's own problem that leaves its trackers unknown (the driver failed or is wedged), as every volume of
    its records carries it (none then claims a lost tracker), or None. (The volumes of a host that did not answer
    come from this run's results, which say so themselves.)"""
    for kind in ('collection_failed', 'driver_wedged'):
        if kind in found.kinds:
            at = found.kinds.index(kind)
            return kind, found.severities[at], 'host problem, tracker state unknown: %s' % found.texts[at]
    return None


def _host_volumes(data, info, now, stale_hours, host_issue):
    """The host's volumes, worst first: each backup record with its tracker and this run's result, then this run's
    results without a record, then the trackers no record names."""
    runs = [r for r in (data.get('backup') or []) if isinstance(r, dict)]
    trackers = [t for t in (info.get('trackers') or []) if isinstance(t, dict)]
    records = [r for r in (data.get('records') or []) if isinstance(r, dict)]
    by_image = dict((r.get('image'), r) for r in runs if r.get('image'))
    volumes = []
    used = set()
    used_runs = set()
    for record in records:
        idx = _match(record, trackers, used)
        tracker = None
        if idx is not None:
            used.add(idx)
            tracker = trackers[idx]
        run = by_image.get(record.get('image'))
        if run is not None:
            used_runs.add(id(run))
        volumes.append(_volume_from(record, tracker, now, stale_hours, run, host_issue))
    for run in runs:
        if id(run) not in used_runs:
            volumes.append(_volume_from(None, None, now, stale_hours, run, host_issue))
    for idx, tracker in enumerate(trackers):
        if idx not in used:
            volumes.append(_volume_from(None, tracker, now, stale_hours))
    volumes.sort(key=lambda v: (STATUS_RANK.get(v['status'], 3), v['name']))
    return volumes


def _reached(entry):
    return not any(k in ('unreachable', 'not_run') for k in entry['problem_kinds'])


def fleet_report(hosts, generated=None, stale_hours=DEFAULT_STALE_HOURS, backup=None):
    """Build the fleet report from ``{host: collected}`` (or a list of dicts with ``host``).

    ``collected`` per host (every key optional): ``unreachable`` (bool), ``not_run`` (bool),
    ``failed`` (bool), ``msg``, ``info`` (the info module result, ``kernel_gate`` included),
    ``records`` (backup records) and ``backup`` (this run's ``dattobd_backup_results``).
    ``backup``: ``{host: dattobd_backup_results or None}`` of the backup playbook, merged into
    ``collected`` (a host with neither collected data nor results was not run)."""
    items = _host_items(hosts, backup)
    now = _parse_time(generated) if generated else None
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    stale_hours = float(stale_hours)
    entries = [_host_entry(_text(name), data, now, stale_hours) for name, data in items]
    entries.sort(key=lambda h: (STATUS_RANK.get(h['status'], 3), h['name']))
    by_status, volumes_by_status, problems, ages, failures = _tally(entries)
    by_kind = {}
    for problem in problems:
        by_kind[problem['kind']] = by_kind.get(problem['kind'], 0) + 1
    reached = sum(1 for e in entries if _reached(e))
    outcome = 'none_reached' if entries and not reached else ('problems' if problems else 'all_good')
    return {
        'schema': SCHEMA_ID,
        'schema_version': SCHEMA_VERSION,
        'generated': now.isoformat().replace('+00:00', 'Z'),
        'stale_hours': stale_hours,
        'summary': {'hosts': len(entries), 'reached': reached,
                    'volumes': sum(len(e['volumes']) for e in entries),
                    'by_status': by_status, 'volumes_by_status': volumes_by_status, 'by_kind': by_kind,
                    'problems': len(problems), 'failures': failures, 'outcome': outcome,
                    'oldest_recovery_point_hours': max(ages) if ages else None},
        'problems': problems,
        'hosts': entries,
    }


def _host_items(hosts, backup):
    """``[(host name, collected data)]`` of the filter's input, this run's backup results merged in (a host with
    neither was not run)."""
    if isinstance(hosts, dict):
        items = list(hosts.items())
    elif isinstance(hosts, (list, tuple)):
        items = [((h or {}).get('host') or 'host%d' % i, h) for i, h in enumerate(hosts)]
    else:
        raise TypeError('fleet_report expects a dict of host name -> collected data, got %s' % type(hosts).__name__)
    if backup is None:
        return items
    if not isinstance(backup, dict):
        raise TypeError('fleet_report expects backup as a dict of host name -> dattobd_backup_results')
    merged = []
    for name, data in items:
        data = data if isinstance(data, dict) else {}
        results = backup.get(name)
        if isinstance(results, list):
            data = dict(data, backup=results)
        elif not data:
            data = {'not_run': True, 'msg': 'the play stopped before this host (max fail percentage), '
                                            'or it failed before the backup ran (see the play recap)'}
        merged.append((name, data))
    return merged


def _tally(entries):
    """``(hosts by status, volumes by status, every problem sorted worst first, the recovery points' ages, the
    number of failures)`` of the host entries (whose ``severities`` move into the problems)."""
    by_status, volumes_by_status = {}, {}
    problems = []
    ages = []
    failures = 0
    for entry in entries:
        by_status[entry['status']] = by_status.get(entry['status'], 0) + 1
        failures += 1 if any(k in FAILURE_KINDS for k in entry['problem_kinds']) else 0
        for text, kind, severity in zip(entry['problems'], entry['problem_kinds'], entry.pop('severities')):
            problems.append({'host': entry['name'], 'volume': None, 'kind': kind, 'severity': severity, 'text': text})
        for vol in entry['volumes']:
            volumes_by_status[vol['status']] = volumes_by_status.get(vol['status'], 0) + 1
            failures += 1 if any(k in FAILURE_KINDS for k in vol['problem_kinds']) else 0
            if vol['recovery_point_age_hours'] is not None:
                ages.append(vol['recovery_point_age_hours'])
            for text, kind, severity in zip(vol['problems'], vol['problem_kinds'], vol.pop('severities')):
                problems.append({'host': entry['name'], 'volume': vol['name'], 'kind': kind, 'severity': severity,
                                 'text': text})
    kind_rank = dict((k, i) for i, k in enumerate(KINDS))
    problems.sort(key=lambda p: (STATUS_RANK[p['severity']], kind_rank[p['kind']], p['host'], p['volume'] or ''))
    return by_status, volumes_by_status, problems, ages, failures


def _check_report(report, name):
    if not isinstance(report, dict) or 'hosts' not in report or 'summary' not in report:
        raise TypeError('%s expects the result of the fleet_report filter' % name)


# --- HTML ------------------------------------------------------------------------------------------

# Not under plugins/filter/: ansible-doc loads every file there as a filter plugin.
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'plugin_utils', 'templates')
_ENV = []


def _environment():
    if not _ENV:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        env.filters['bytes_text'] = _bytes_text
        env.filters['age_text'] = _age_text
        env.filters['num'] = _num_text
        # the rows as compact JSON in the page (tojson escapes <, >, & and ' for a script element)
        env.policies['json.dumps_kwargs'] = {'sort_keys': False, 'separators': (',', ':')}
        _ENV.append(env)
    return _ENV[0]


def _bytes_text(value):
    """Bytes in binary units (KiB = 1024 bytes), or None."""
    if value is None:
        return None
    units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
    size = float(value)
    for unit in units:
        if abs(size) < 1024 or unit == units[-1]:
            return ('%d %s' % (size, unit)) if unit == 'B' else ('%.1f %s' % (size, unit))
        size /= 1024.0
    return None  # pragma: no cover


def _num_text(value, fmt='%s'):
    if value is None:
        return None
    try:
        return fmt % value
    except (TypeError, ValueError):
        return _text(value)


def _fleet_series(report, days=HISTORY_CYCLES):
    """Per UTC day of the last ``days``: bytes written by all volumes, longest cycle (from the histories)."""
    end = _parse_time(report.get('generated')) or datetime.datetime.now(datetime.timezone.utc)
    dates = [(end - datetime.timedelta(days=n)).date().isoformat() for n in range(days - 1, -1, -1)]
    written = dict((d, 0) for d in dates)
    longest = dict((d, None) for d in dates)
    seen = set()
    for host in report['hosts']:
        for vol in host.get('volumes') or []:
            hist = vol.get('history') or {}
            for finished, size, secs in zip(hist.get('finished') or [], hist.get('bytes_written') or [],
                                            hist.get('cycle_seconds') or []):
                day = (finished or '')[:10]
                if day not in written:
                    continue
                seen.add(day)
                written[day] += size or 0
                if secs is not None and (longest[day] is None or secs > longest[day]):
                    longest[day] = secs
    return dates, [written[d] if d in seen else None for d in dates], [longest[d] for d in dates]


def _chart(title, dates, values, text, width=420, height=90):
    """One bar chart of the fleet series: bars, the highest value as text, first and last date."""
    top = max([v for v in values if v is not None] or [0]) or 1.0
    slot = width / float(len(dates))
    bars = []
    for i, (date, value) in enumerate(zip(dates, values)):
        if value is None:
            continue
        h = max(1.0, (value / top) * (height - 20))
        bars.append({'x': round(i * slot + 1, 1), 'y': round(height - 14 - h, 1), 'w': round(slot - 2, 1),
                     'h': round(h, 1), 'label': '%s: %s' % (date, text(value))})
    return {'title': title, 'width': width, 'height': height, 'bars': bars,
            'top': text(max([v for v in values if v is not None])) if bars else None,
            'first': dates[0], 'last': dates[-1]}


# The columns of a row of the volume table, as the page's script reads them (one array per row).
# hist_w / hist_c: bytes written / cycle seconds of the last cycles (the sparklines), fails: the
# positions of the failed cycles among them.
ROW_COLUMNS = ('status', 'rank', 'host', 'volume', 'device', 'image', 'age_h', 'age', 'last_backup', 'stale',
               'run', 'mode', 'blocks', 'written', 'written_text', 'seconds', 'mib_s', 'cycle_s', 'hist_w',
               'hist_c', 'fails', 'next_run', 'tracker', 'verify_days', 'verify', 'overdue', 'problems', 'kinds')


def _verify_text(vol):
    if vol.get('full_verify_overdue') is None and vol.get('last_full_verify') is None:
        return ''
    age = vol.get('full_verify_age_days')
    text = 'never' if age is None else '%.1f days ago' % age
    if vol.get('last_full_verify_result') == 'failed':
        text += ' (failed)'
    return text


_NO_VOLUME = dict.fromkeys(_VOLUME_SCHEMA['properties'])


def _with_reason(mode, reason):
    """'full (why)' for a full backup with its reason, else the mode as it is."""
    return 'full (%s)' % reason if mode == 'full' and reason else mode


def _row(host, vol):
    """One row of the volume table (ROW_COLUMNS); a host without volumes gets one row, ``vol`` None."""
    vol = vol or _NO_VOLUME
    status = vol.get('status') or host['status']
    hist = vol.get('history') or {}
    results = hist.get('result') or []
    tracker = vol.get('tracker_state')
    if vol.get('minor') is not None:
        tracker = '%s (datto%s)' % (tracker or 'unknown', vol['minor'])
    age = vol.get('recovery_point_age_hours')
    return [status, STATUS_RANK.get(status, 3), host['name'], vol.get('name'), vol.get('device'), vol.get('image'),
            age, _age_text(age), vol.get('last_backup'), 1 if vol.get('stale') else 0,
            vol.get('this_run') or vol.get('last_result'), _with_reason(vol.get('mode'), vol.get('reason')),
            vol.get('blocks_read'),
            vol.get('bytes_written'), _bytes_text(vol.get('bytes_written')), vol.get('seconds'), vol.get('mib_per_s'),
            vol.get('cycle_seconds'), hist.get('bytes_written') or [], hist.get('cycle_seconds') or [],
            [i for i, r in enumerate(results) if r == 'failed'],
            _with_reason(vol.get('next_run'), vol.get('next_full_reason')), tracker, vol.get('full_verify_age_days'),
            _verify_text(vol),
            1 if vol.get('full_verify_overdue') else 0,
            list(host['problems']) + list(vol.get('problems') or []),
            ' '.join(sorted(set(host['problem_kinds']) | set(vol.get('problem_kinds') or [])))]


def fleet_report_html(report, title='snapfleet.dattobd fleet report', max_problems=500):
    """Render a ``fleet_report`` result as one self-contained HTML page (problems first).

    The page lists at most ``max_problems`` problems at the top; the volume table holds every
    volume (its rows are data in the page, drawn a page at a time by the page's script, so that a
    fleet of thousands of hosts loads, sorts and filters at once)."""
    _check_report(report, 'fleet_report_html')
    rows = []
    for host in report['hosts']:
        for vol in host.get('volumes') or [None]:
            rows.append(_row(host, vol))
    dates, written, longest = _fleet_series(report)
    charts = [_chart('bytes written per day (all volumes)', dates, written, _bytes_text),
              _chart('longest backup cycle per day', dates, longest, lambda v: '%.0f s' % v)]
    problems = report.get('problems') or []
    summary = report['summary']
    attention = sum(1 for h in report['hosts'] if h['status'] != 'ok')
    data = {'columns': ROW_COLUMNS, 'rows': rows, 'kinds': KIND_LABELS}
    return _environment().get_template('fleet_report.html.j2').render(
        title=title, report=report, summary=summary, data=data, row_count=len(rows), charts=charts,
        problems=problems[:max_problems], more_problems=max(0, len(problems) - max_problems),
        attention=attention, kind_labels=KIND_LABELS,
        kinds=[(k, summary['by_kind'][k]) for k in KINDS if summary['by_kind'].get(k)],
        statuses=[s for s in ('unreachable', 'error', 'warning', 'ok', 'unknown')
                  if summary['by_status'].get(s)])


# --- JUnit -----------------------------------------------------------------------------------------

_XML_BAD = re.compile(u'[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


def _xml_text(value):
    """The text of a value, JSON's true/false for booleans (characters XML 1.0 cannot carry are
    dropped from the whole document at the end: :func:`fleet_report_junit`)."""
    if value is None or type(value) is str:  # pylint: disable=unidiomatic-typecheck
        return value or ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


# The cycle's figures, the properties of a volume's test case.
_PROPERTY_KEYS = ('this_run', 'mode', 'reason', 'next_full_reason', 'blocks_read', 'bytes_read', 'bytes_written',
                  'rebaseline', 'blocks_differing', 'seconds', 'mib_per_s', 'cycle_seconds', 'last_backup', 'recovery_point_age_hours', 'next_run')


# XML escapes of text, and of attribute values (quotes and the white space an attribute would
# normalise too), as str.translate tables; the patterns find the texts that need one at all (at
# 5,000 hosts the JUnit file has about 300,000 values, nearly all plain).
_TEXT_TABLE = {ord('&'): '&amp;', ord('<'): '&lt;', ord('>'): '&gt;'}
_ATTR_TABLE = dict(_TEXT_TABLE)
_ATTR_TABLE.update({ord('"'): '&quot;', ord('\n'): '&#10;', ord('\r'): '&#13;', ord('\t'): '&#9;'})
_TEXT_SPECIAL = re.compile('[&<>]')
_ATTR_SPECIAL = re.compile('[&<>"\n\r\t]')


def _escape(text):
    """XML text content: & < > escaped."""
    return text.translate(_TEXT_TABLE) if _TEXT_SPECIAL.search(text) else text


def _attr(value):
    """An XML attribute value, quoted (the report's text is escaped, never trusted)."""
    # most figures: nothing to escape
    if type(value) in (int, float):  # pylint: disable=unidiomatic-typecheck
        return '"%r"' % value
    text = _xml_text(value)
    return '"%s"' % (text.translate(_ATTR_TABLE) if _ATTR_SPECIAL.search(text) else text)


def _properties(pairs, indent):
    lines = ['%s<property name=%s value=%s/>' % (indent, _attr(k), _attr(v)) for k, v in pairs if v is not None]
    if not lines:
        return []
    return [indent[:-2] + '<properties>'] + lines + [indent[:-2] + '</properties>']


def _testcase(out, classname, name, kinds, texts, properties, seconds=None):
    """Append the lines of one test case to ``out``; True when it fails."""
    out.append('    <testcase classname=%s name=%s time="%.3f">' % (_attr(classname), _attr(name), seconds or 0.0))
    out.extend(_properties(properties, '        '))
    failing = [(k, t) for k, t in zip(kinds, texts) if k in FAILURE_KINDS]
    body = _escape(_xml_text('\n'.join('[%s] %s' % (KIND_LABELS[k], t) for k, t in zip(kinds, texts))))
    if failing:
        out.append('      <failure type=%s message=%s>%s</failure>' % (
            _attr(failing[0][0]), _attr('; '.join(t for dummy, t in failing)), body))
    elif texts:
        out.append('      <system-out>%s</system-out>' % body)
    out.append('    </testcase>')
    return bool(failing)


def fleet_report_junit(report, name='snapfleet.dattobd fleet'):
    """The report as JUnit XML: per host a test case ``host`` (classname the host) and one per volume.

    Failed, unreachable, not run, stale, tracker lost, kernel gate (FAILURE_KINDS) fail their test
    case, the reasons in the failure's message; other problems are in ``system-out``. The cycle's
    figures are the properties of each volume's test case; the summary those of the test suite."""
    _check_report(report, 'fleet_report_junit')
    summary = report['summary']
    cases = []
    tests = failures = 0
    total = 0.0
    for host in report['hosts']:
        gate = host.get('kernel_gate') or {}
        tests += 1
        failures += _testcase(cases, host['name'], 'host', host['problem_kinds'], host['problems'], [
            ('status', host['status']), ('driver_loaded', host.get('driver_loaded')),
            ('driver_version', host.get('driver_version')), ('kernel_running', gate.get('running')),
            ('kernel_next_boot', gate.get('next_boot')), ('kernel_next_boot_ok', gate.get('next_boot_ok'))])
        for vol in host.get('volumes') or []:
            tests += 1
            total += vol.get('cycle_seconds') or 0.0
            failures += _testcase(cases, host['name'], vol['name'], vol['problem_kinds'], vol['problems'],
                                  [(k, vol.get(k)) for k in _PROPERTY_KEYS], vol.get('cycle_seconds'))
    counts = 'tests="%d" failures="%d" errors="0" skipped="0" time="%.3f"' % (tests, failures, total)
    head = ['<?xml version="1.0" encoding="UTF-8"?>',
            '<testsuites name=%s %s>' % (_attr(name), counts),
            '  <testsuite name=%s timestamp=%s %s>' % (_attr(name), _attr(report.get('generated')), counts)]
    head.extend(_properties([
        ('schema', report.get('schema')), ('generated', report.get('generated')),
        ('stale_hours', report.get('stale_hours')), ('hosts', summary.get('hosts')),
        ('reached', summary.get('reached')), ('volumes', summary.get('volumes')),
        ('problems', summary.get('problems')), ('outcome', summary.get('outcome'))], '      '))
    # control characters other than tab and newlines cannot be in XML 1.0, escaped or not
    return _XML_BAD.sub('', '\n'.join(head + cases + ['  </testsuite>', '</testsuites>', '']))


# --- Markdown --------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r'([\\`*_\[\]|#!~])')


def _md(value):
    """Text for a Markdown table cell: no line breaks, no markup, no HTML."""
    text = _escape(_text(value) if value is not None else u'\u2014')
    return _MD_SPECIAL.sub(r'\\\1', ' '.join(text.split()))


def fleet_report_markdown(report, title='snapfleet.dattobd fleet report', max_problems=30):
    """A short Markdown summary of the report (for a CI job page): counts, then the first problems."""
    _check_report(report, 'fleet_report_markdown')
    summary = report['summary']
    hosts = summary['hosts']
    bad = sum(1 for h in report['hosts'] if h['status'] != 'ok')
    headline = {'all_good': 'all %d hosts good' % hosts,
                'none_reached': 'no host reached (%d hosts)' % hosts}.get(
        summary['outcome'], '%d of %d hosts need attention' % (bad, hosts))
    lines = ['## %s: %s' % (_md(title), headline), '']
    oldest = summary.get('oldest_recovery_point_hours')
    lines.append('Generated %s; %d hosts (%d reached), %d volumes; stale after %g h; oldest recovery point: %s.' % (
        _md(report.get('generated')), hosts, summary['reached'], summary['volumes'], report.get('stale_hours', 0),
        _md(_age_text(oldest)) if oldest is not None else 'none'))
    lines.append('')
    by_status = summary['by_status']
    lines.append('| ' + ' | '.join(s for s in STATUS_RANK if by_status.get(s)) + ' |')
    lines.append('|' + '---:|' * len([s for s in STATUS_RANK if by_status.get(s)]))
    lines.append('| ' + ' | '.join(str(by_status[s]) for s in STATUS_RANK if by_status.get(s)) + ' |')
    problems = report.get('problems') or []
    if problems:
        lines += ['', '### Needs attention (%d problem%s: %s)' % (len(problems), '' if len(problems) == 1 else 's', ', '.join(
            '%d %s' % (summary['by_kind'][k], KIND_LABELS[k]) for k in KINDS if summary['by_kind'].get(k))), '',
            '| host | volume | kind | problem |', '|---|---|---|---|']
        for problem in problems[:max_problems]:
            cells = (problem['host'], problem['volume'], KIND_LABELS[problem['kind']], problem['text'])
            lines.append('| %s | %s | %s | %s |' % tuple(_md(cell) for cell in cells))
        if len(problems) > max_problems:
            lines += ['', '... and %d more: see the HTML or JSON report.' % (len(problems) - max_problems)]
    return '\n'.join(lines) + '\n'


class FilterModule(object):
    def filters(self):
        return {
            'fleet_report': fleet_report,
            'fleet_report_html': fleet_report_html,
            'fleet_report_junit': fleet_report_junit,
            'fleet_report_markdown': fleet_report_markdown,
        }
