# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hooks of the backup cycle: argv lists (no shell) with a timeout, validated before anything runs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import time

from .errors import DattobdError, DriverTimeout

HOOK_OUTPUT_MAX = 4096


def _clip(text):
    if text is None:
        return None
    if len(text) > HOOK_OUTPUT_MAX:
        return text[:HOOK_OUTPUT_MAX] + '\n[... %d more characters]' % (len(text) - HOOK_OUTPUT_MAX)
    return text


def validate_hooks(hooks, name):
    out = []
    for i, hook in enumerate(hooks or []):
        if isinstance(hook, (list, tuple)):
            hook = {'argv': list(hook)}
        if not isinstance(hook, dict):
            raise DattobdError('%s[%d] must be a dict with argv (a list), got %r.' % (name, i, hook))
        argv = hook.get('argv')
        if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
            raise DattobdError('%s[%d].argv must be a non-empty list of strings (no shell), got %r.'
                               % (name, i, argv), hint='Example: argv: [fsfreeze, --freeze, /srv/db]')
        if not os.path.isabs(argv[0]):
            raise DattobdError('%s[%d].argv[0] must be an absolute path, got %r.' % (name, i, argv[0]),
                               hint='Hooks run without a shell or PATH lookup: give e.g. /usr/sbin/fsfreeze.')
        timeout = hook.get('timeout', 60)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise DattobdError('%s[%d].timeout must be a positive integer (seconds), got %r.' % (name, i, timeout))
        out.append({'argv': list(argv), 'timeout': timeout})
    return out


def run_hooks(ops, phase, hooks, env, log):
    """Run ``hooks`` (validated) of ``phase`` with ``ops.run_hook``; False when one failed.

    Each command goes to ``log.actions``, its entry (argv, rc, clipped output, seconds) to
    ``log.hooks``. A failing ``pre`` hook stops the others; a failing ``post`` hook is a warning
    (``log.warnings``): post hooks thaw what pre hooks froze, so every one runs.
    """
    ok = True
    for hook in hooks:
        argv = hook['argv']
        log.actions.append(shlex.join(argv))
        entry = {'phase': phase, 'argv': argv, 'rc': None, 'stdout': '', 'stderr': '', 'seconds': 0.0}
        began = time.monotonic()
        try:
            rc, out, err = ops.run_hook(argv, hook['timeout'], env=dict(env))
            entry.update(rc=rc, stdout=_clip(out), stderr=_clip(err))
        except DriverTimeout:
            entry.update(rc=None, stderr='timed out after %d seconds (killed)' % hook['timeout'])
            rc = None
        except DattobdError as exc:
            entry.update(rc=None, stderr=exc.full_msg)
            rc = None
        entry['seconds'] = round(time.monotonic() - began, 3)
        log.hooks.append(entry)
        if rc != 0:
            ok = False
            if phase == 'pre':
                break
            if phase == 'post':
                log.warnings.append('post hook %s failed (rc %s): %s'
                                    % (shlex.join(argv), rc, (entry['stderr'] or '').strip()[:200]))
    return ok
