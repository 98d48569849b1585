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

from . import sync as sync_mod
from . import tracker as tracker_mod
from . import verify as verify_mod
from .backup_hooks import validate_hooks
from .backup_plan import REBASELINE_METHODS
from . import backup_record as records
from . import boot_state
from . import metrics as metrics_mod
from .errors import DattobdError

AFTER_REBOOT = ('metadata', 'full', 'none')
VERIFY = sync_mod.VERIFY

MODES = ('full', 'incremental', 'resume')
SPARSE = ('filesystem', 'zeros')
IMAGE_STATES = ('untouched', 'resumable', 'complete')
PATH_OPTIONS = ('image', 'state_dir', 'boot_check_path', 'cow_dir', 'dbdctl_path')


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
    hooks = (validate_hooks(p.get('pre_hooks'), 'pre_hooks'), validate_hooks(p.get('post_hooks'), 'post_hooks'),
             validate_hooks(p.get('verify_hooks'), 'verify_hooks'))
    if not isinstance(p.get('metrics', True), bool):
        raise DattobdError('metrics must be true or false, got %r.' % (p.get('metrics'),))
    p['metrics_file'] = metrics_mod.target(p)  # the node_exporter file of this image, or None (metrics.py)
    return hooks


# --- the backup module's options ---------------------------------------------------------------

HOOK_SPEC = dict(argv=dict(type='list', elements='str', required=True), timeout=dict(type='int', default=60))


def argument_spec():
    """The ``backup`` module's argument spec (its DOCUMENTATION says the same)."""
    return dict(
        device=dict(type='str', required=True),
        image=dict(type='path', required=True),
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
        check_free_space=dict(type='bool', default=True),
        read_depth=dict(type='int', default=8),
        state_dir=dict(type='path', default=records.DEFAULT_STATE_DIR),
        boot_check_path=dict(type='path', default=boot_state.BOOT_CHECK_PATH),
        run_boot_id=dict(type='str'),
        timeout=dict(type='int', default=60),
        dbdctl_path=dict(type='path'),
        metrics=dict(type='bool', default=True),
        metrics_dir=dict(type='path'),
    )
