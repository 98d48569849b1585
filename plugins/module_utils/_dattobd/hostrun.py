# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``backup`` module as a whole: one volume (``backup.run_volume``), or a host's whole backup in one call
(``volumes``): every volume's cycle (``backup.run_volumes``, image directories included with ``create_dirs``),
then, with ``runner``, the host-local runner installed with this call's volumes and options (hostapp.py), and
with ``status``, what the fleet report reads of the host (host_status.py). One SSH round trip a host.

Everything is validated before anything acts: the volumes and the runner's configuration alike, so a refused
call leaves the host as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import backup
from . import hostapp
from . import host_status
from .backup_params import OWN_OPTIONS
from .errors import DattobdError

# Options of the host form only, for the call as a whole (the runner's configuration holds none of them).
HOST_ONLY = ('status', 'runner', 'create_dirs')
# Options of a call the runner's configuration leaves out: set by each run, or the call's own.
NOT_CONFIGURED = ('volumes', 'status', 'runner', 'full', 'run_boot_id', 'ping_url')


def argument_spec():
    """The ``backup`` module's argument spec (its DOCUMENTATION says the same): a cycle's options
    (backup_params.py), ``volumes``, and the host form's ``status`` and ``runner``."""
    spec = backup.argument_spec()
    runner = dict((name, dict(opt)) for name, opt in hostapp.argument_spec().items()
                  if name in ('state', 'path', 'config', 'python'))
    spec.update(status=dict(type='bool', default=False), runner=dict(type='dict', options=runner))
    return spec


def runner_params(params):
    """The ``runner`` module's parameters of a host-form call: its ``runner`` option, with this call's volumes
    (less ``full``, each run's own) and its other options as the configuration's defaults."""
    spec = backup.argument_spec()
    defaults = dict((name, value) for name, value in params.items()
                    if name in spec and name not in NOT_CONFIGURED and value is not None
                    and name not in OWN_OPTIONS)
    volumes = [dict((k, v) for k, v in element.items() if v is not None and k != 'full')
               for element in params.get('volumes') or []]
    return dict(params['runner'], volumes=volumes, defaults=defaults, ping_url=params.get('ping_url'))


def module_runner(module, ops_factory=None, status_host=None):
    """The ``backup`` module's work on its validated ``module.params`` (``ops_factory``, ``status_host``: tests).

    With ``status``, the host's status is in the result whatever happened, a refused call's too (it reads only):
    the fleet report still shows the host's volumes from their records."""
    params = dict(module.params)
    if params.get('volumes') is None:
        given = [name for name in HOST_ONLY if params.get(name)]
        if given:
            raise DattobdError('%s: only with volumes (a host\'s whole backup in one call).' % ', '.join(given),
                               step='parameters', image_state='untouched')
        return backup.module_runner(module, ops_factory)
    try:
        out = _host_call(module, params, ops_factory)
    except DattobdError as exc:
        if params['status']:
            exc.details['status'] = _status(module, params, status_host)
        raise
    if params['status']:
        out['status'] = _status(module, params, status_host)
    return out


def _status(module, params, status_host):
    host = status_host or host_status.InfoHost(
        lambda name, opt_dirs: module.get_bin_path(name, required=False, opt_dirs=opt_dirs))
    return host_status.collect(host, params['state_dir'], timeout=params['timeout'],
                               dbdctl_path=params.get('dbdctl_path'), cow_name=params.get('cow_name'),
                               check_mode=module.check_mode, warn=module.warn)


def _host_call(module, params, ops_factory):
    """The volumes' cycles, then the runner; validated before anything acts."""
    runner = runner_params(params) if params.get('runner') else None
    prepared = None
    if runner and runner['state'] == 'present':
        # Before any volume acts: a volume the runner could not run refuses the call (nothing written).
        backup.validate_volumes(backup.volume_params(params))
        try:
            prepared = hostapp.prepare(runner)
        except DattobdError as exc:
            exc.details.update(step='parameters', image_state='untouched')
            raise
    elif runner:
        hostapp.remove(runner, check_mode=True)  # its paths are checked before anything acts
    out = backup.module_runner(module, ops_factory)
    if runner:
        out['runner'] = _runner(runner, prepared, module.check_mode)
        if out['runner'].get('failed'):
            out.update(failed=True, msg='%s The runner was not installed: %s' % (out['msg'], out['runner']['msg']))
        out['changed'] = out['changed'] or out['runner']['changed']
        out.setdefault('diff', []).extend(out['runner'].pop('diff', []))
    return out


def _runner(p, prepared, check_mode):
    """The runner installed (or removed) after the cycles; a failure is reported, not raised: the backups
    stand, and the call fails with it."""
    try:
        if p['state'] == 'absent':
            return hostapp.remove(p, check_mode=check_mode)
        return hostapp.install(p, check_mode=check_mode, prepared=prepared)
    except (DattobdError, OSError) as exc:
        msg = exc.full_msg if isinstance(exc, DattobdError) else 'writing %s: %s' % (
            getattr(exc, 'filename', None) or p['path'], exc.strerror or exc)
        return dict(failed=True, changed=False, msg=msg, path=p['path'], config=p['config'], actions=[], diff=[])
