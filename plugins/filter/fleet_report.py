# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side filters that build the fleet status report of the ``status`` playbook.

``fleet_report`` turns what the playbook collected from every host (the ``info`` module result,
the backup records written by the ``backup`` module, reachability) into one JSON-ready report
(schema ``FLEET_REPORT_SCHEMA``); ``fleet_report_html`` renders that report as one
self-contained HTML page (inline CSS, no script, no external asset), problems first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import html

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as verify_mod

SCHEMA_ID = 'snapfleet.dattobd/fleet-report/v1'

# Severity order: problems first.
STATUS_RANK = {'unreachable': 0, 'error': 1, 'warning': 2, 'unknown': 3, 'ok': 4}

DEFAULT_STALE_HOURS = 26

_VOLUME_SCHEMA = {
    'type': 'object',
    'required': ['name', 'status', 'problems'],
    'properties': {
        'name': {'type': 'string'},
        'status': {'enum': ['error', 'warning', 'unknown', 'ok']},
        'problems': {'type': 'array', 'items': {'type': 'string'}},
        'device': {'type': ['string', 'null']},
        'image': {'type': ['string', 'null']},
        'minor': {'type': ['integer', 'null']},
        'tracker_state': {'type': ['string', 'null']},
        'seq_id': {'type': ['integer', 'null']},
        'last_backup': {'type': ['string', 'null']},
        'last_result': {'enum': ['ok', 'failed', None]},
        'mode': {'type': ['string', 'null']},
        'changed_blocks': {'type': ['integer', 'null']},
        'bytes': {'type': ['integer', 'null']},
        'seconds': {'type': ['number', 'null']},
        'mb_per_s': {'type': ['number', 'null']},
        'next_run': {'type': ['string', 'null']},
        'image_state': {'type': ['string', 'null']},
        'last_full_verify': {'type': ['string', 'null']},
        'last_full_verify_result': {'enum': ['ok', 'failed', None]},
        'full_verify_age_days': {'type': ['number', 'null']},
        'full_verify_every_days': {'type': ['number', 'null']},
        'full_verify_every_cycles': {'type': ['integer', 'null']},
        'full_verify_overdue': {'type': ['boolean', 'null']},
        'last_sample_result': {'enum': ['ok', 'failed', None]},
        'last_sample_blocks': {'type': ['integer', 'null']},
    },
}

FLEET_REPORT_SCHEMA = {
    '$schema': 'http://json-schema.org/draft-07/schema#',
    '$id': SCHEMA_ID,
    'type': 'object',
    'required': ['schema', 'generated', 'summary', 'hosts'],
    'properties': {
        'schema': {'const': SCHEMA_ID},
        'generated': {'type': 'string'},
        'summary': {
            'type': 'object',
            'required': ['hosts', 'volumes', 'by_status', 'problems'],
            'properties': {
                'hosts': {'type': 'integer'},
                'volumes': {'type': 'integer'},
                'problems': {'type': 'integer'},
                'by_status': {'type': 'object', 'additionalProperties': {'type': 'integer'}},
            },
        },
        'hosts': {
            'type': 'array',
            'items': {
                'type': 'object',
                'required': ['name', 'status', 'problems', 'volumes'],
                'properties': {
                    'name': {'type': 'string'},
                    'status': {'enum': list(STATUS_RANK)},
                    'problems': {'type': 'array', 'items': {'type': 'string'}},
                    'driver_loaded': {'type': ['boolean', 'null']},
                    'driver_version': {'type': ['string', 'null']},
                    'volumes': {'type': 'array', 'items': _VOLUME_SCHEMA},
                },
            },
        },
    },
}


def _as_int(value):
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value):
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(value):
    if value is None:
        return None
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
    names = {0: 'dormant incremental', 1: 'dormant snapshot', 2: 'active incremental',
             3: 'active snapshot', 4: 'unverified incremental', 5: 'unverified snapshot'}
    return names.get(state, 'state %d' % state)


def _tracker_failed(tracker):
    if tracker.get('failed'):
        return True
    return tracker.get('error') not in (None, 0, '0', '')


def _volume_from(record, tracker, now, stale_hours):
    record = record or {}
    tracker = tracker or {}
    problems = []
    status = 'ok'
    device = _text(record.get('device') or tracker.get('block_device'))
    image = _text(record.get('image'))
    minor = _as_int(record.get('minor') if record.get('minor') is not None else tracker.get('minor'))
    result = record.get('last_result')
    if result not in ('ok', 'failed'):
        result = None
    last_ok = _text(record.get('last_success') or (record.get('finished') if result == 'ok' else None))

    if tracker and _tracker_failed(tracker):
        err = tracker.get('error_name') or tracker.get('error')
        code = _as_int(err)
        if code is not None:
            err = errno.errorcode.get(abs(code), 'E%d' % abs(code))
        problems.append('tracker failed (%s): the next backup is a full one' % err)
        status = 'error'
    if record and not tracker:
        problems.append('no tracker on this volume: the next backup is a full one')
        status = _worst([status, 'warning'])
    if tracker and not record:
        problems.append('tracked but never backed up by snapfleet')
        status = _worst([status, 'warning'])
    if tracker and not _tracker_failed(tracker) and (_tracker_state_name(tracker) or '').startswith('unverified'):
        problems.append('tracker still unverified: its filesystem was not seen mounted read-write since boot')
        status = _worst([status, 'warning'])
    if result == 'failed':
        problems.append('last backup failed: %s' % (_text(record.get('msg')) or 'no message'))
        status = 'error'
    next_run = _text(record.get('next_run'))
    if record and next_run in ('full', 'resume') and result != 'failed':
        problems.append('next backup: %s' % next_run)
        status = _worst([status, 'warning'])
    stamp = _parse_time(last_ok)
    if record and stamp is not None and now is not None:
        age_h = (now - stamp).total_seconds() / 3600.0
        if age_h > stale_hours:
            problems.append('last successful backup is %.0f hours old' % age_h)
            status = _worst([status, 'warning'])
    elif record and result is not None and last_ok is None:
        problems.append('no successful backup yet')
        status = _worst([status, 'warning'])

    verification = _full_verify(record, now, stale_hours)
    if verification['full_verify_overdue']:
        age = verification['full_verify_age_days']
        problems.append('full verification overdue: %s (every %s)' % (
            'the last one failed' if verification['last_full_verify_result'] == 'failed'
            else ('never run' if age is None else 'the last one or the last full copy is %.1f days old' % age),
            _schedule_text(verification)))
        status = _worst([status, 'warning'])
    name = _text(record.get('name')) or device or ('minor %s' % minor if minor is not None else 'volume')
    out = {
        'name': name,
        'status': status,
        'problems': problems,
        'device': device,
        'image': image,
        'minor': minor,
        'tracker_state': _tracker_state_name(tracker) if tracker else None,
        'seq_id': _as_int(tracker.get('seq_id') if tracker.get('seq_id') is not None else record.get('seq_id')),
        'last_backup': last_ok,
        'last_result': result,
        'mode': _text(record.get('mode')),
        'changed_blocks': _as_int(record.get('blocks')),
        'bytes': _as_int(record.get('bytes')),
        'seconds': _as_float(record.get('seconds')),
        'mb_per_s': _as_float(record.get('mb_per_s')),
        'next_run': next_run,
        'image_state': _text(record.get('image_state')),
    }
    out.update(verification)
    return out


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


def _verify_cell(vol):
    """HTML of the full-verification column: age of the last one (or never), overdue flagged."""
    if vol.get('full_verify_overdue') is None and vol.get('last_full_verify') is None:
        return '&#8212;'
    age = vol.get('full_verify_age_days')
    text = 'never' if age is None else '%.1f days ago' % age
    if vol.get('last_full_verify_result') == 'failed':
        text += ' (failed)'
    if vol.get('full_verify_overdue'):
        return '%s <span class="badge s-warning">overdue</span>' % _esc(text)
    return _esc(text)


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


def _host_entry(name, data, now, stale_hours):
    data = data if isinstance(data, dict) else {}
    problems = []
    if data.get('unreachable'):
        return {'name': name, 'status': 'unreachable',
                'problems': ['unreachable: %s' % (_text(data.get('msg')) or 'no answer')],
                'driver_loaded': None, 'driver_version': None, 'volumes': []}
    info = data.get('info') if isinstance(data.get('info'), dict) else {}
    status = 'ok'
    if data.get('failed') or info.get('failed'):
        problems.append('status collection failed: %s' % (_text(data.get('msg') or info.get('msg')) or 'no message'))
        status = 'error'
    loaded = info.get('loaded')
    if loaded is None and isinstance(info.get('driver'), dict):
        loaded = info['driver'].get('loaded')
    version = info.get('version') or info.get('driver_version')
    if version is None and isinstance(info.get('driver'), dict):
        version = info['driver'].get('version')
    if info and loaded is False:
        problems.append('dattobd module not loaded: nothing is tracked')
        status = 'error'
    reload_info = info.get('reload') if isinstance(info.get('reload'), dict) else {}
    drift = [d for d in (reload_info.get('drift') or []) if d]
    for item in drift:
        problems.append('boot reload script drift: %s' % _problem_text(item))
    if drift:
        status = _worst([status, 'warning'])
    for item in info.get('problems') or []:
        problems.append(_problem_text(item))
        status = _worst([status, 'warning'])
    trackers = [t for t in (info.get('trackers') or []) if isinstance(t, dict)]
    records = [r for r in (data.get('records') or []) if isinstance(r, dict)]
    volumes = []
    used = set()
    for record in records:
        idx = _match(record, trackers, used)
        tracker = None
        if idx is not None:
            used.add(idx)
            tracker = trackers[idx]
        volumes.append(_volume_from(record, tracker, now, stale_hours))
    for idx, tracker in enumerate(trackers):
        if idx not in used:
            volumes.append(_volume_from(None, tracker, now, stale_hours))
    volumes.sort(key=lambda v: (STATUS_RANK.get(v['status'], 3), v['name']))
    status = _worst([status] + [v['status'] for v in volumes])
    return {'name': name, 'status': status, 'problems': problems,
            'driver_loaded': loaded if isinstance(loaded, bool) else None,
            'driver_version': _text(version), 'volumes': volumes}


def fleet_report(hosts, generated=None, stale_hours=DEFAULT_STALE_HOURS):
    """Build the fleet report from ``{host: collected}`` (or a list of dicts with ``host``)."""
    if isinstance(hosts, dict):
        items = list(hosts.items())
    elif isinstance(hosts, (list, tuple)):
        items = [((h or {}).get('host') or 'host%d' % i, h) for i, h in enumerate(hosts)]
    else:
        raise TypeError('fleet_report expects a dict of host name -> collected data, got %s' % type(hosts).__name__)
    now = _parse_time(generated) if generated else None
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    entries = [_host_entry(_text(name), data, now, float(stale_hours)) for name, data in items]
    entries.sort(key=lambda h: (STATUS_RANK.get(h['status'], 3), h['name']))
    by_status = {}
    for entry in entries:
        by_status[entry['status']] = by_status.get(entry['status'], 0) + 1
    volumes = sum(len(e['volumes']) for e in entries)
    problems = sum(len(e['problems']) + sum(len(v['problems']) for v in e['volumes']) for e in entries)
    return {
        'schema': SCHEMA_ID,
        'generated': now.isoformat().replace('+00:00', 'Z'),
        'summary': {'hosts': len(entries), 'volumes': volumes, 'by_status': by_status,
                    'problems': problems},
        'hosts': entries,
    }


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1d2733;background:#f6f8fa}
h1{font-size:1.5em;margin:0 0 .2em}
.meta{color:#57606a;margin-bottom:1em}
.summary span{display:inline-block;margin-right:.6em;padding:.25em .7em;border-radius:1em;font-weight:600}
section.host{background:#fff;border:1px solid #d0d7de;border-left:.5em solid #8c959f;border-radius:6px;margin:1em 0;padding:.6em 1em}
section.host h2{font-size:1.15em;margin:.2em 0}
table{border-collapse:collapse;width:100%;margin-top:.5em;font-size:.92em}
th,td{border-bottom:1px solid #eaeef2;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
ul.problems{margin:.3em 0;padding-left:1.2em;color:#82071e}
.badge{padding:.1em .5em;border-radius:.8em;font-size:.85em;font-weight:600;white-space:nowrap}
.s-ok{background:#dafbe1;color:#116329}
.s-warning{background:#fff8c5;color:#7d4e00}
.s-error,.s-unreachable{background:#ffebe9;color:#82071e}
.s-unknown{background:#eaeef2;color:#24292f}
section.st-ok{border-left-color:#2da44e}
section.st-warning{border-left-color:#d4a72c}
section.st-error,section.st-unreachable{border-left-color:#cf222e}
"""


def _esc(value):
    if value is None:
        return '&#8212;'
    return html.escape(_text(value), quote=True)


def _num(value, fmt='%s'):
    if value is None:
        return '&#8212;'
    try:
        return html.escape(fmt % value)
    except (TypeError, ValueError):
        return _esc(value)


def _badge(status):
    status = status if status in STATUS_RANK else 'unknown'
    return '<span class="badge s-%s">%s</span>' % (status, status)


def _bytes_text(value):
    if value is None:
        return None
    units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    size = float(value)
    for unit in units:
        if size < 1024 or unit == units[-1]:
            return ('%d %s' % (size, unit)) if unit == 'B' else ('%.1f %s' % (size, unit))
        size /= 1024.0
    return None  # pragma: no cover


def _volume_cell(vol):
    cell = _esc(vol.get('name'))
    if vol.get('device') and vol.get('device') != vol.get('name'):
        cell += '<br><small>%s</small>' % _esc(vol.get('device'))
    return cell


def fleet_report_html(report, title='snapfleet.dattobd fleet report'):
    """Render a ``fleet_report`` result as one self-contained HTML page (problems first)."""
    if not isinstance(report, dict) or 'hosts' not in report:
        raise TypeError('fleet_report_html expects the result of the fleet_report filter')
    summary = report.get('summary') or {}
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<title>%s</title>' % _esc(title), '<style>%s</style></head><body>' % _CSS,
           '<h1>%s</h1>' % _esc(title),
           '<div class="meta">Generated %s &#183; %s hosts &#183; %s volumes &#183; %s problems</div>' % (
               _esc(report.get('generated')), _num(summary.get('hosts')), _num(summary.get('volumes')),
               _num(summary.get('problems'))),
           '<div class="summary">']
    by_status = summary.get('by_status') or {}
    for status in sorted(by_status, key=lambda s: STATUS_RANK.get(s, 3)):
        out.append('<span class="s-%s">%s: %s</span>' % (
            status if status in STATUS_RANK else 'unknown', _esc(status), _num(by_status[status])))
    out.append('</div>')
    for host in report['hosts']:
        status = host.get('status') if host.get('status') in STATUS_RANK else 'unknown'
        out.append('<section class="host st-%s" data-host="%s">' % (status, _esc(host.get('name'))))
        driver = ''
        if host.get('driver_loaded') is True:
            driver = ' &#183; dattobd %s loaded' % _esc(host.get('driver_version') or '')
        elif host.get('driver_loaded') is False:
            driver = ' &#183; dattobd not loaded'
        out.append('<h2>%s %s<small>%s</small></h2>' % (_badge(status), _esc(host.get('name')), driver))
        if host.get('problems'):
            out.append('<ul class="problems">%s</ul>' % ''.join(
                '<li>%s</li>' % _esc(p) for p in host['problems']))
        volumes = host.get('volumes') or []
        if volumes:
            out.append('<table><thead><tr><th>volume</th><th>state</th><th>tracker</th><th>last backup</th>'
                       '<th>mode</th><th>changed blocks</th><th>copied</th><th>seconds</th><th>MB/s</th>'
                       '<th>next run</th><th>full verification</th><th>image</th><th>problems</th></tr></thead>'
                       '<tbody>')
            for vol in volumes:
                vstatus = vol.get('status') if vol.get('status') in STATUS_RANK else 'unknown'
                tracker = vol.get('tracker_state')
                if vol.get('minor') is not None:
                    tracker = '%s (datto%s)' % (tracker or 'unknown', vol['minor'])
                out.append(
                    '<tr class="vol st-%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>'
                    '<td class="num">%s</td><td class="num">%s</td><td class="num">%s</td><td class="num">%s</td>'
                    '<td>%s</td><td class="verify">%s</td><td>%s</td><td>%s</td></tr>' % (
                        vstatus, _volume_cell(vol), _badge(vstatus), _esc(tracker),
                        _esc(vol.get('last_backup')), _esc(vol.get('mode')), _num(vol.get('changed_blocks')),
                        _esc(_bytes_text(vol.get('bytes'))), _num(vol.get('seconds'), '%.1f'),
                        _num(vol.get('mb_per_s'), '%.1f'), _esc(vol.get('next_run')), _verify_cell(vol),
                        _esc(vol.get('image')),
                        '<br>'.join(_esc(p) for p in vol.get('problems') or []) or ''))
            out.append('</tbody></table>')
        elif status != 'unreachable':
            out.append('<p>No tracked volume.</p>')
        out.append('</section>')
    out.append('</body></html>')
    return '\n'.join(out) + '\n'


class FilterModule(object):
    def filters(self):
        return {
            'fleet_report': fleet_report,
            'fleet_report_html': fleet_report_html,
        }
