# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The parameters of a backup cycle: their allowed values and the one validation of them, run before
anything is read or written (:func:`validate_params`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from . import copy as copy_mod
from . import sync as sync_mod
from . import tracker as tracker_mod
from . import verify as verify_mod
from .backup_hooks import validate_hooks
from .backup_plan import REBASELINE_METHODS
from . import backup_record as records
from . import boot_state
from . import metrics as metrics_mod
from . import ping as ping_mod
from . import restore_points
from .errors import DattobdError

AFTER_REBOOT = ('metadata', 'full', 'none')
VERIFY = sync_mod.VERIFY

MODES = ('full', 'incremental', 'resume')
SPARSE = ('filesystem', 'zeros')
IMAGE_STATES = ('untouched', 'resumable', 'complete')
PATH_OPTIONS = ('image', 'state_dir', 'boot_check_path', 'cow_dir', 'dbdctl_path')
# A consistency group's name (``group`` of an element of ``volumes``): ASCII letters and digits, '.', '_', '-'.
GROUP_NAME = re.compile(r'\A[A-Za-z0-9._-]{1,64}\Z')
# The hooks of a group are the call's own (the top level's): an element of a group sets none of these.
GROUP_HOOKS = ('pre_hooks', 'post_hooks')


def validate_params(p):
    """Check every parameter of a cycle, touching nothing; returns the hooks ``(pre, post, verify)``.

    Defaults are filled in ``p``. Raises :class:`DattobdError` (``step`` ``parameters``).
    """
    try:
        return _validate_params(p)
    except DattobdError as exc:
        exc.details.setdefault('step', 'parameters')
        exc.details.setdefault('image_state', 'untouched')
        raise


def _validate_params(p):
    p.setdefault('state_dir', records.DEFAULT_STATE_DIR)
    p.setdefault('verify', 'none')
    p['after_reboot'] = p.get('after_reboot') or 'metadata'
    device = p.get('device')
    if not isinstance(device, str) or not device.startswith('/'):
        raise DattobdError('device must be an absolute path (a block device or a mount point), got %r.' % (device,))
    for key in PATH_OPTIONS:
        value = p.get(key)
        if value is None and key not in ('image', 'state_dir'):
            continue
        if not isinstance(value, str) or not os.path.isabs(value) or '\0' in value:
            raise DattobdError('%s must be an absolute path, got %r.' % (key, value))
    if p['verify'] not in VERIFY:
        raise DattobdError('verify must be one of %s, got %r.' % (', '.join(VERIFY), p['verify']))
    if (p.get('sparse') or 'filesystem') not in SPARSE:
        raise DattobdError('sparse must be one of %s, got %r.' % (', '.join(SPARSE), p.get('sparse')))
    p['rebaseline'] = p.get('rebaseline') or REBASELINE_METHODS[0]
    if p['rebaseline'] not in REBASELINE_METHODS:
        raise DattobdError('rebaseline must be one of %s, got %r.' % (', '.join(REBASELINE_METHODS), p['rebaseline']))
    if p['after_reboot'] not in AFTER_REBOOT:
        raise DattobdError('after_reboot must be one of %s, got %r.' % (', '.join(AFTER_REBOOT), p['after_reboot']))
    tracker_mod.check_options(p.get('minor'), p.get('cache_size'), p.get('fallocate'), p.get('timeout', 60),
                              p.get('cow_name'))
    verify_mod.validate(p)
    run_boot = p.get('run_boot_id')
    if run_boot is not None and not re.match(r'\A[0-9A-Za-z-]{1,64}\Z', str(run_boot)):
        raise DattobdError('run_boot_id must be a boot id (/proc/sys/kernel/random/boot_id), got %r.' % (run_boot,))
    check_group(p.get('group'))
    hooks = (validate_hooks(p.get('pre_hooks'), 'pre_hooks'), validate_hooks(p.get('post_hooks'), 'post_hooks'),
             validate_hooks(p.get('verify_hooks'), 'verify_hooks'))
    restore_points.validate(p)
    if not isinstance(p.get('metrics', True), bool):
        raise DattobdError('metrics must be true or false, got %r.' % (p.get('metrics'),))
    p['metrics_file'] = metrics_mod.target(p)  # the node_exporter file of this image, or None (metrics.py)
    p['ping_url'] = ping_mod.check_url(p.get('ping_url'))  # the monitor's URL of the run, or None (ping.py)
    if p.get('read_depth') is not None:  # before any cycle, whoever makes its Ops (volume_ops, or a test's)
        copy_mod.check_read_depth(p['read_depth'])
    return hooks


def check_group(name, option='group'):
    """A consistency group's name (None: no group); raises :class:`DattobdError`."""
    if name is not None and (not isinstance(name, str) or not GROUP_NAME.match(name)):
        raise DattobdError('%s must be 1 to 64 characters of A-Z, a-z, 0-9, ".", "_" and "-", got %r.'
                           % (option, name))


def check_group_hooks(label, element, group):
    """Refuse an element of consistency group ``group`` that sets its own pre or post hooks (``label``: how a
    message names it): the group's hooks are the call's top-level ones, run once for the whole group."""
    own = [name for name in GROUP_HOOKS if isinstance(element, dict) and element.get(name) is not None]
    if group is not None and own:
        raise DattobdError('%s: an element of consistency group %s cannot set its own %s: the group runs the '
                           'top-level pre_hooks and post_hooks once, around the snapshots of all its volumes.'
                           % (label, group, ' or '.join(own)), step='parameters', image_state='untouched',
                           hint='Move the hooks to the top level (they then run once for the group), or take the '
                                'volume out of the group.')


# --- the backup module's options ---------------------------------------------------------------

HOOK_SPEC = dict(argv=dict(type='list', elements='str', required=True), timeout=dict(type='int', default=60))


# The options of one volume (in ``volumes``, or at the top level for the single-volume form); the
# other options are the host's, shared by every volume of the call.
VOLUME_OPTIONS = ('device', 'image', 'name', 'cow_dir', 'cow_name', 'minor', 'cache_size', 'fallocate', 'verify',
                  'full', 'verify_sample_budget', 'verify_sample_min', 'verify_sample_max', 'verify_sample_seed',
                  'full_verify_every_cycles', 'full_verify_every_days', 'pre_hooks', 'post_hooks', 'verify_hooks',
                  'persist', 'sparse', 'after_reboot', 'rebaseline', 'retention', 'retention_method',
                  'retention_full_copies', 'retention_timeout')
# AnsibleModule's rules between the options: one volume (device, image) or a list of them (volumes).
# Options naming one volume: in an element only (never inherited from the top level).
OWN_OPTIONS = ('device', 'image', 'name', 'minor', 'cow_dir')
ARGUMENT_RULES = dict(mutually_exclusive=[('volumes', name) for name in OWN_OPTIONS],
                      required_one_of=[('volumes', 'device')], required_together=[('device', 'image')])


def _options():
    return dict(
        device=dict(type='str'),
        image=dict(type='path'),
        name=dict(type='str'),
        cow_dir=dict(type='path'),
        cow_name=dict(type='str'),
        minor=dict(type='int'),
        cache_size=dict(type='int'),
        fallocate=dict(type='int'),
        verify=dict(type='str', default='none', choices=list(VERIFY)),
        full=dict(type='bool', default=False),
        verify_sample_budget=dict(type='float', default=verify_mod.SAMPLE_BUDGET),
        verify_sample_min=dict(type='int', default=verify_mod.SAMPLE_MIN),
        verify_sample_max=dict(type='int', default=verify_mod.SAMPLE_MAX),
        verify_sample_seed=dict(type='int'),
        full_verify_every_cycles=dict(type='int', default=verify_mod.FULL_EVERY_CYCLES),
        full_verify_every_days=dict(type='float', default=verify_mod.FULL_EVERY_DAYS),
        pre_hooks=dict(type='list', elements='dict', default=[], options=HOOK_SPEC),
        post_hooks=dict(type='list', elements='dict', default=[], options=HOOK_SPEC),
        verify_hooks=dict(type='list', elements='dict', default=[], options=HOOK_SPEC),
        persist=dict(type='bool', default=True),
        sparse=dict(type='str', default='filesystem', choices=list(SPARSE)),
        after_reboot=dict(type='str', default='metadata', choices=list(AFTER_REBOOT)),
        rebaseline=dict(type='str', default=REBASELINE_METHODS[0], choices=list(REBASELINE_METHODS)),
        retention=dict(type='int', default=restore_points.OPTIONS['retention'][0]),
        retention_method=dict(type='str', default='auto', choices=list(restore_points.METHODS)),
        retention_full_copies=dict(type='int', default=restore_points.OPTIONS['retention_full_copies'][0]),
        retention_timeout=dict(type='int', default=restore_points.OPTIONS['retention_timeout'][0]),
        check_free_space=dict(type='bool', default=True),
        create_dirs=dict(type='bool', default=False),
        read_depth=dict(type='int', default=8),
        state_dir=dict(type='path', default=records.DEFAULT_STATE_DIR),
        boot_check_path=dict(type='path', default=boot_state.BOOT_CHECK_PATH),
        run_boot_id=dict(type='str'),
        timeout=dict(type='int', default=60),
        dbdctl_path=dict(type='path'),
        metrics=dict(type='bool', default=True),
        metrics_dir=dict(type='path'),
        ping_url=dict(type='str', no_log=True),
    )


def volume_spec():
    """The options of one element of ``volumes``: a volume's options, none with a default (an option an element
    leaves out takes the top-level option's value, except those of :data:`OWN_OPTIONS`); ``device`` and ``image``
    required."""
    options = _options()
    out = {}
    for name in VOLUME_OPTIONS:
        opt = dict(options[name])
        opt.pop('default', None)
        if name in ('device', 'image'):
            opt['required'] = True
        out[name] = opt
    out['group'] = dict(type='str')  # an element's own (no top-level option): see run_volumes
    return out


def argument_spec():
    """The ``backup`` module's argument spec (its DOCUMENTATION says the same); see also :data:`ARGUMENT_RULES`."""
    spec = _options()
    spec['volumes'] = dict(type='list', elements='dict', options=volume_spec())
    return spec


def volume_params(params):
    """``params`` of a call with ``volumes`` -> the parameters of each volume's cycle (a list).

    Each holds the host's options and the volume's, an option the element leaves out (None) taking the
    top-level value of the same name (except :data:`OWN_OPTIONS`); ``group`` (None when the element sets none)
    is the element's own. An element of a group that sets its own hooks raises :class:`DattobdError`
    (:func:`check_group_hooks`)."""
    host = dict((k, v) for k, v in params.items() if k not in VOLUME_OPTIONS and k != 'volumes')
    out = []
    for index, element in enumerate(params.get('volumes') or []):
        p = dict(host)
        for name in VOLUME_OPTIONS:
            value = element.get(name) if isinstance(element, dict) else None
            p[name] = value if value is not None or name in OWN_OPTIONS else params.get(name)
        group = element.get('group') if isinstance(element, dict) else None
        if group is not None:
            p['group'] = group
            try:
                check_group_hooks(volume_label(index, p), element, group)
            except DattobdError as exc:
                exc.details.update(volume=index, name=p.get('name'), device=p.get('device'), image=p.get('image'))
                raise
        out.append(p)
    return out


def volume_label(index, p):
    """``volumes[1] (db)``: how a message names an element."""
    name = p.get('name') or (p.get('image') or '').rsplit('/', 1)[-1] or p.get('device')
    return 'volumes[%d] (%s)' % (index, name)


def validate_volumes(volumes):
    """:func:`validate_params` of every volume before any acts, and no two with the same image or device.

    Raises :class:`DattobdError` (``step`` ``parameters``) naming the element by its index and name."""
    seen = {}
    for index, p in enumerate(volumes):
        label = volume_label(index, p)
        try:
            validate_params(p)
        except DattobdError as exc:
            exc.msg = '%s: %s' % (label, exc.msg)
            exc.details.update(volume=index, name=p.get('name'), device=p.get('device'), image=p.get('image'))
            raise
        for key in ('image', 'device'):
            other = seen.get((key, os.path.normpath(p[key])))
            if other is not None:
                raise DattobdError('%s: %s %s is also the %s of %s; each volume needs its own.'
                                   % (label, key, p[key], key, other), step='parameters', image_state='untouched',
                                   volume=index, name=p.get('name'), device=p.get('device'), image=p.get('image'))
            seen[(key, os.path.normpath(p[key]))] = label
