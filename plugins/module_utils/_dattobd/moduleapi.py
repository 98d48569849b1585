# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way a module of this collection runs: thin modules hand their library area's argument
spec and runner to :func:`run`, which owns the failure path and the result."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from . import validation
from .errors import DattobdError, fail_module


def run(module_class, argument_spec, runner, unexpected, defaults=None, warn=False, **module_kwargs):
    """Build the module (``validation.make_module``), run ``runner(module) -> result`` and exit with it.

    The failure path of every module: a :class:`DattobdError` goes through ``fail_module``
    (``defaults`` fill result keys it does not set); an ``OSError``/``ValueError`` nobody diagnosed
    fails with ``unexpected`` (``msg`` holds one ``%s`` for the exception). ``warn``: the result's
    ``warnings`` go through ``module.warn``. ``diff`` is left out unless the task runs with --diff. A result
    with ``failed`` true (the backup module when a volume failed) goes through ``module.fail_json``.
    """
    # a copy: ansible-core fills the sub-option defaults into an option's default dict (``default={}``) in place
    module = validation.make_module(module_class, copy.deepcopy(argument_spec), **module_kwargs)
    try:
        result = runner(module)
    except DattobdError as exc:
        fail_module(module, exc, defaults=defaults)
    except (OSError, IOError, ValueError, TypeError, KeyError) as exc:
        failure = dict(unexpected)
        failure['msg'] = failure['msg'] % exc
        module.fail_json(**failure)
    if warn:
        for warning in result.pop('warnings', None) or []:
            module.warn(warning)
    if not module._diff:  # pylint: disable=protected-access
        result.pop('diff', None)
    if result.get('failed'):  # a result that fails with what it holds (the backup module's volumes)
        module.fail_json(**result)
    module.exit_json(**result)
