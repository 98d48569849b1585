# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The parameters of a backup cycle: their allowed values and the one validation of them, run before
anything is read or written (:func:`validate_params`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from . import sync as sync_mod
from . import tracker as tracker_mod
from . import verify as verify_mod
from .backup_hooks import validate_hooks
from .backup_record import DEFAULT_STATE_DIR
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
    p.setdefault('state_dir', DEFAULT_STATE_DIR)
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
    if p['after_reboot'] not in AFTER_REBOOT:
        raise DattobdError('after_reboot must be one of %s, got %r.' % (', '.join(AFTER_REBOOT), p['after_reboot']))
    tracker_mod.check_options(p.get('minor'), p.get('cache_size'), p.get('fallocate'), p.get('timeout', 60),
                              p.get('cow_name'))
    verify_mod.validate(p)
    return (validate_hooks(p.get('pre_hooks'), 'pre_hooks'), validate_hooks(p.get('post_hooks'), 'post_hooks'),
            validate_hooks(p.get('verify_hooks'), 'verify_hooks'))
