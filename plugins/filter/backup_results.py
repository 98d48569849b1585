# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side filters: the backup module's result -> the role's registered cycles -> one summary per volume."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

KEYS = ('mode', 'reason', 'reason_detail', 'next_full_reason', 'blocks', 'bytes', 'seconds', 'mb_per_s', 'next_run',
        'image_state', 'seq_id', 'minor', 'step', 'record', 'actions', 'removed_cow_files', 'leftover_cow_files',
        'driver_wedged', 'rebooted_during_run', 'rebaseline', 'restore_point')
# What the summary keeps of the module's ``verification`` (the rest, block lists included, is in the record).
SAMPLE_KEYS = ('planned', 'seed', 'sample_size', 'blocks_compared', 'mismatches', 'result')
FULL_KEYS = ('planned', 'trigger', 'result', 'mismatches')


def _verification(value):
    """The module's ``verification`` cut to the sample's seed, size and mismatches and the full
    verification's trigger, result and mismatches; None when the module reported none."""
    if not isinstance(value, dict):
        return None
    out = {}
    for part, keys in (('sample', SAMPLE_KEYS), ('full', FULL_KEYS)):
        got = value.get(part)
        out[part] = dict((k, got[k]) for k in keys if k in got) if isinstance(got, dict) else None
    return out


def backup_cycles(registered, volumes=None):
    """The result of one ``backup`` call with ``volumes`` -> the shape of the former looped task's registered result.

    ``results`` holds one entry per volume the call reports (its ``volumes``), with ``item`` the declared volume
    of the same position; ``changed``, ``failed``, ``unreachable`` and ``msg`` of the call are kept, so a call that
    failed or did not answer before reporting any volume (``results`` empty) is told by them."""
    if not isinstance(registered, dict):
        raise TypeError('backup_cycles expects the registered result of the backup task')
    declared = volumes if isinstance(volumes, list) else []
    reported = registered.get('volumes') if isinstance(registered.get('volumes'), list) else []
    results = []
    for index, res in enumerate(reported):
        if not isinstance(res, dict):
            continue
        position = res.get('volume') if isinstance(res.get('volume'), int) else index
        item = declared[position] if 0 <= position < len(declared) and isinstance(declared[position], dict) else \
            dict((k, res.get(k)) for k in ('name', 'device', 'image'))
        results.append(dict(res, item=item, failed=bool(res.get('failed'))))
    out = dict((k, registered[k]) for k in ('changed', 'unreachable', 'msg', 'skipped') if k in registered)
    # a call that failed as a whole (no volume reported) keeps its failure; per volume, the entries say it
    out['failed'] = any(r['failed'] for r in results) or (not results and bool(registered.get('failed')))
    out['results'] = results
    return out


def backup_results(registered, volumes=None, check_mode=False):
    """Summaries (name, device, image, figures, failed, unreachable, msg) of a looped ``backup`` task.

    ``check_mode``: the task ran with --check; each entry says so (``check_mode``) and carries the
    planned ``actions`` instead of figures."""
    if not isinstance(registered, dict):
        raise TypeError('backup_results expects the registered result of the looped backup task')
    results = registered.get('results')
    if not isinstance(results, list):
        results = []
    by_image = {}
    out = []
    for res in results:
        if not isinstance(res, dict):
            continue
        item = res.get('item') if isinstance(res.get('item'), dict) else {}
        entry = {
            'name': item.get('name') or (item.get('image') or '').rsplit('/', 1)[-1] or item.get('device'),
            'device': item.get('device'),
            'image': item.get('image'),
            'failed': bool(res.get('failed') or res.get('unreachable')),
            # the host stopped answering while this volume was backed up (its VM powered off, say)
            'unreachable': bool(res.get('unreachable')),
            'skipped': bool(res.get('skipped')),
            'msg': res.get('msg') if res.get('failed') or res.get('unreachable') else None,
            'check_mode': bool(check_mode),
        }
        for key in KEYS:
            entry[key] = res.get(key)
        entry['verification'] = _verification(res.get('verification'))
        by_image[entry['image']] = entry
        out.append(entry)
    # Volumes the loop never reached (the task failed before the loop, say) count as failed.
    for vol in volumes or []:
        if isinstance(vol, dict) and vol.get('image') not in by_image:
            entry = dict((k, None) for k in KEYS + ('verification',))
            entry.update(name=vol.get('name') or (vol.get('image') or '').rsplit('/', 1)[-1] or vol.get('device'),
                         device=vol.get('device'), image=vol.get('image'), failed=True, skipped=False,
                         unreachable=bool(registered.get('unreachable')), check_mode=bool(check_mode),
                         msg=registered.get('msg') or 'the backup task did not run for this volume')
            out.append(entry)
    return out


def _v(value):
    """A figure for a summary line: '?' when the module did not report it (never 'None')."""
    return '?' if value is None else value


def _verify_text(vol):
    """', verified a sample of N block(s) ... (seed S): M mismatches' or ', full verification (why): ...'; '' when none ran."""
    ver = vol.get('verification') if isinstance(vol.get('verification'), dict) else {}
    full = ver.get('full') if isinstance(ver.get('full'), dict) else None
    sample = ver.get('sample') if isinstance(ver.get('sample'), dict) else None
    done = full or sample
    if not done or done.get('planned'):
        return ''
    outcome = ('%s mismatches' % done['mismatches'] if done.get('mismatches') is not None
               else _v(done.get('result')))
    if full:
        return ', full verification (%s): %s' % (_v(full.get('trigger')), outcome)
    blocks = sample.get('blocks_compared') if sample.get('blocks_compared') is not None else sample.get('sample_size')
    if vol.get('failed'):
        return ', sample of %s block(s) (seed %s): %s' % (_v(blocks), _v(sample.get('seed')), outcome)
    return ', verified a sample of %s block(s) outside the change list (seed %s): %s' % (
        _v(blocks), _v(sample.get('seed')), outcome)


def _next_text(vol, default='?'):
    """'full (why)' when the next run is full and the module said why, else the next run (or ``default``)."""
    nxt = vol.get('next_run') or default
    if nxt == 'full' and vol.get('next_full_reason'):
        return 'full (%s)' % vol['next_full_reason']
    return nxt


def _mode_text(vol):
    """The mode, with its reason when it is a full backup ('full (first backup)')."""
    if vol.get('mode') == 'full' and vol.get('reason'):
        return 'full (%s)' % vol['reason']
    return _v(vol.get('mode'))


def _leftover_text(vol):
    found = vol.get('leftover_cow_files') if isinstance(vol.get('leftover_cow_files'), list) else []
    if not found:
        return ''
    return ', removed %d COW file(s) left by earlier trackers (%s)' % (len(found), ', '.join(str(f) for f in found))


def _line(volumes):
    parts = []
    for vol in volumes:
        if not isinstance(vol, dict):
            continue
        if vol.get('unreachable'):
            parts.append('%s: UNREACHABLE during the backup (%s); image %s, next run %s' % (
                vol.get('name'), _v(vol.get('msg')), vol.get('image_state') or 'unknown', _next_text(vol, 'unknown')))
        elif vol.get('failed'):
            parts.append('%s: FAILED at %s (%s); image %s, next run %s%s' % (
                vol.get('name'), vol.get('step') or '?', _v(vol.get('msg')), vol.get('image_state') or '?',
                _next_text(vol), _verify_text(vol)))
        elif vol.get('check_mode'):
            actions = vol.get('actions') if isinstance(vol.get('actions'), list) else []
            parts.append('%s: would run a %s backup (%s): %s' % (
                vol.get('name'), _v(vol.get('mode')), _v(vol.get('reason')),
                '; '.join(str(a) for a in actions) or 'no action planned'))
        elif vol.get('skipped'):
            parts.append('%s: skipped' % vol.get('name'))
        else:
            # blocks: read from the snapshot (the changed ones, or the volume's allocated ones for a full
            # copy); bytes: written into the image; the module's rate is in MiB/s (2**20 bytes).
            parts.append('%s: %s, %s blocks read, %s bytes written in %s s (%s MiB/s)%s%s' % (
                vol.get('name'), _mode_text(vol), _v(vol.get('blocks')), _v(vol.get('bytes')),
                _v(vol.get('seconds')), _v(vol.get('mb_per_s')), _verify_text(vol), _leftover_text(vol)))
    rebooted = [v.get('name') for v in volumes if isinstance(v, dict) and v.get('rebooted_during_run')]
    if rebooted:
        parts.append('the host rebooted during this run (noticed at %s: minors, COW files and reload scripts derived '
                     'again from the live state)' % ', '.join(str(n) for n in rebooted))
    return '; '.join(parts) or 'no volume declared'


# What the backup playbook did about a wedged driver (playbooks/tasks/recover-wedged.yml) -> where the host is listed.
RECOVERY_LIST = {'none': None, 'would_reset': None, 'reset': 'failed', 'not_back': 'unreachable', 'failed': 'failed'}


def _recovered(out, host, recovery):
    """Add the recovery of a wedged driver to the line of ``host``; a reset host took no backup (failed), one
    that did not come back is unreachable."""
    if not isinstance(recovery, dict) or recovery.get('action') not in RECOVERY_LIST:
        return
    action = recovery['action']
    after = '; no backup this run: the next run re-baselines each volume' if action == 'reset' else ''
    out['lines'][host] = '%s; %s%s' % (out['lines'][host], _v(recovery.get('msg')), after)
    moved = RECOVERY_LIST[action]
    if moved and host not in out[moved]:
        for name in ('ok', 'failed', 'unreachable', 'no_result'):
            if host in out[name]:
                out[name].remove(host)
        out[moved].append(host)
        out[moved].sort()


def backup_fleet_summary(per_host, unreachable=None, check_mode=False, failed=None, recovery=None):
    """``{host: dattobd_backup_results or None}`` (+ ``{host: unreachable message or None}``)
    -> ``dict(ok, failed, unreachable, no_result, lines, check_mode)``.

    A host is unreachable when its ping said so or when a volume's backup task result was
    unreachable (the host stopped answering during the cycle). ``failed``: ``{host: message or
    None}`` of hosts that failed before their backup ran (their ping failed, say): failed, not
    "not run". ``check_mode``: nothing was backed up; ``ok`` lists the hosts whose cycles would run.
    ``recovery``: ``{host: what was done about its wedged driver or None}`` (``action``, ``msg``): its
    line says it; a reset host took no backup (failed), one that did not come back is unreachable."""
    if not isinstance(per_host, dict):
        raise TypeError('backup_fleet_summary expects a dict of host -> dattobd_backup_results')
    unreachable = unreachable if isinstance(unreachable, dict) else {}
    failed = failed if isinstance(failed, dict) else {}
    recovery = recovery if isinstance(recovery, dict) else {}
    out = {'ok': [], 'failed': [], 'unreachable': [], 'no_result': [], 'lines': {}, 'check_mode': bool(check_mode)}
    for host in sorted(per_host):
        volumes = per_host[host]
        if unreachable.get(host):
            out['unreachable'].append(host)
            out['lines'][host] = 'UNREACHABLE: %s' % unreachable[host]
            continue
        if not isinstance(volumes, list) and failed.get(host):
            out['failed'].append(host)
            out['lines'][host] = 'FAILED before the backup ran: %s' % failed[host]
            continue
        if not isinstance(volumes, list):
            out['no_result'].append(host)
            out['lines'][host] = ('not backed up: the play stopped before this host (max fail percentage), '
                                  'or it failed before the backup ran (see the play recap)')
            continue
        if any(isinstance(v, dict) and v.get('unreachable') for v in volumes):
            out['unreachable'].append(host)
        elif any(isinstance(v, dict) and v.get('failed') for v in volumes):
            out['failed'].append(host)
        else:
            out['ok'].append(host)
        out['lines'][host] = ('check mode, nothing written: ' if check_mode else '') + _line(volumes)
        _recovered(out, host, recovery.get(host))
    return out


def backup_host_results(registered, volumes=None, check_mode=False):
    """The registered backup call with ``volumes`` -> ``dattobd_backup_results``: :func:`backup_cycles`, then
    :func:`backup_results` (the role publishes this; the backup playbook computes it from the call)."""
    return backup_results(backup_cycles(registered, volumes), volumes, check_mode=check_mode)


def backup_fleet_results(calls, volumes=None, check_mode=False):
    """``{host: registered backup call or None}`` (+ ``{host: declared volumes}``) -> ``{host: dattobd_backup_results
    or None}``: None for a host whose call did not run (never reached, refused before it)."""
    if not isinstance(calls, dict):
        raise TypeError('backup_fleet_results expects a dict of host -> registered backup call')
    volumes = volumes if isinstance(volumes, dict) else {}
    return dict((host, backup_host_results(call, volumes.get(host), check_mode) if isinstance(call, dict) else None)
                for host, call in calls.items())


def backup_host_status(registered):
    """The registered backup call with ``status`` -> what the fleet report reads of the host (``unreachable``,
    ``failed``, ``wedged``, ``msg``, ``info``, ``kernel_gate``, ``records``), as the status playbook collects it;
    None for no call (skipped, or not a task result)."""
    if not isinstance(registered, dict) or registered.get('skipped'):
        return None
    out = dict(unreachable=False, failed=False, wedged=False, msg='', info={}, kernel_gate=None, records=[])
    if registered.get('unreachable'):
        out.update(unreachable=True, msg=registered.get('msg') or 'unreachable')
        return out
    status = registered.get('status')
    if not isinstance(status, dict):
        out.update(failed=True, msg='the host status was not read: %s' % (registered.get('msg') or 'the backup call '
                                                                          'returned none'))
        return out
    info = status.get('info') if isinstance(status.get('info'), dict) else {}
    out.update(failed=bool(status.get('failed')), wedged=bool(status.get('wedged')), msg=status.get('msg') or '',
               info=info, kernel_gate=info.get('kernel_gate'),
               records=[r for r in status.get('records') or [] if isinstance(r, dict)])
    return out


class FilterModule(object):
    def filters(self):
        return {'backup_results': backup_results, 'backup_fleet_summary': backup_fleet_summary,
                'backup_cycles': backup_cycles, 'backup_host_results': backup_host_results,
                'backup_fleet_results': backup_fleet_results, 'backup_host_status': backup_host_status}
