# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``snapshot`` module's work: its argument spec and runner (:func:`module_runner`), on top of the
tracker's state machine (``tracker.py``) and the stray COW file cleanup (``hygiene.py``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from . import hygiene, tracker
from .errors import DattobdError, fail_module


ARGUMENT_SPEC = dict(
    device=dict(type='path', required=True),
    state=dict(type='str', default='snapshot', choices=['snapshot', 'incremental', 'absent']),
    minor=dict(type='int'),
    cow_file=dict(type='path'),
    cow_dir=dict(type='path'),
    cow_name=dict(type='str', default='.datto_{minor}_{seq}'),
    cache_size=dict(type='int'),
    fallocate=dict(type='int'),
    auto_expand=dict(type='dict', options=dict(
        step_size=dict(type='int', required=True),
        reserved_space=dict(type='int', default=0),
    )),
    cleanup=dict(type='bool', default=False),
    backup_state_dir=dict(type='path', default='/var/lib/snapfleet/dattobd/backups'),
    persist=dict(type='bool', default=True),
    reload_dir=dict(type='path', default='/etc/datto/dla'),
    recover=dict(type='str', default='fail', choices=['fail', 'rebaseline']),
    release_holders=dict(type='bool', default=False),
    timeout=dict(type='int', default=60),
    dbdctl_path=dict(type='path'),
)
UNEXPECTED = dict(msg='Unexpected error while managing a dattobd tracker: %s', actions=[],
                  hint='Please report this to the snapfleet.dattobd maintainers with the module arguments.')


def make_context(module):
    """The host access of the module (unit tests replace this)."""
    return tracker.Context(module=module)


def _cleanup(module, ctx, result):
    """Remove the stray COW files of the device's filesystem (after the tracker reached its state)."""
    p = module.params
    dev = result.get('device') or {}
    mount_point = dev.get('mount_point')
    result['removed_cow_files'] = []
    if not (p['cleanup'] or p['state'] == 'absent') or not mount_point:
        return
    named = []
    tracker_after = result.get('tracker') or {}
    if tracker_after.get('cow_file'):
        named.append(tracker_after['cow_file'])
    rdev = None
    try:
        rdev = ctx.host.stat(dev.get('path')).st_rdev
    except (OSError, TypeError):
        pass
    scans = ctx.reload.scan(p['reload_dir']) if ctx.reload is not None else []
    for script in scans or []:
        if not script.get('cow_file') or not script.get('block_device'):
            continue
        if p['state'] == 'absent' and script.get('minor') == result.get('minor'):
            continue  # removed with the tracker (planned in check mode)
        try:
            same = ctx.host.stat(script['block_device']).st_rdev == rdev
        except OSError:
            same = False
        if same:
            named.append(script['cow_file'])
    protected = [result.get('previous_cow_file'), result.get('new_cow_file')]
    protected += hygiene.pending_cow_files(p['backup_state_dir'])
    dirs = []
    if p['cow_dir'] and p['cow_dir'].startswith(mount_point.rstrip('/') + '/'):
        dirs.append(p['cow_dir'][len(mount_point.rstrip('/')):])
    strays = hygiene.stray_cow_files(ctx.host, mount_point, named, p['cow_name'], dirs=dirs, protected=protected)
    actions, errors = hygiene.remove_files(strays, check_mode=module.check_mode,
                                           unlink=getattr(ctx.host, 'unlink', None) or os.unlink)
    result['removed_cow_files'] = strays
    if strays:
        result['actions'] = list(result.get('actions') or []) + actions
        result['changed'] = True
    if errors:
        fail_module(module, DattobdError('Could not remove stray COW file(s): %s.' % '; '.join(errors),
                                         hint='A file the driver still has open cannot be removed; check '
                                              '/proc/datto-info and the reload scripts.'),
                    defaults=dict(actions=result.get('actions'), removed_cow_files=strays))


def module_runner(module):
    """The ``snapshot`` module's work on its validated ``module.params``: the tracker as asked (``tracker.ensure``),
    then the stray COW files when ``cleanup``; warnings and diff go through ``moduleapi.run``."""
    p = module.params
    ctx = make_context(module)
    try:  # a DattobdError goes to moduleapi.run's failure path
        result = tracker.ensure(
            ctx, p['device'], p['state'], minor=p['minor'],
            cow_file=p['cow_file'], cow_dir=p['cow_dir'], cache_size=p['cache_size'], fallocate=p['fallocate'],
            persist=p['persist'], recover=p['recover'], check_mode=module.check_mode, timeout=p['timeout'],
            dbdctl_path=p['dbdctl_path'], cow_name=p['cow_name'], auto_expand=p['auto_expand'],
            reload_dir=p['reload_dir'], release_holders=p['release_holders'])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        module.fail_json(msg='Unexpected error while managing the dattobd tracker of %s: %s' % (p['device'], exc),
                         hint='Please report this to the snapfleet.dattobd maintainers with the module arguments.')
    try:
        _cleanup(module, ctx, result)
    except DattobdError as exc:
        fail_module(module, exc, defaults=dict(actions=result.get('actions')))
    return result
