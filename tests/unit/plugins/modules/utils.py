# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running a module's ``main()`` in a unit test (the role of community.general's tests/unit/.../utils.py).

Two ways, one place:

* :func:`run_exiting`: ``main()`` exits for real (``SystemExit``); the result is the JSON the module
  printed, as Ansible reads it (warnings included, in the running ansible-core's format);
* :func:`patch_exit_fail` + :func:`run_patched`: ``exit_json``/``fail_json`` raise
  :class:`AnsibleExitJson`/:class:`AnsibleFailJson` carrying the result dict, so a test sees the
  values before JSON (and a module that never calls either fails the test).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class ModuleResult(Exception):
    """A module called exit_json or fail_json; ``result`` is its keyword arguments."""

    @property
    def result(self):
        return self.args[0]


class AnsibleExitJson(ModuleResult):
    pass


class AnsibleFailJson(ModuleResult):
    pass


def patch_exit_fail(monkeypatch, collect_warnings=False):
    """Make ``exit_json``/``fail_json`` raise instead of exiting; ``fail_json`` results carry ``failed=True``.

    ``collect_warnings``: ``module.warn`` messages are returned in the result's ``warnings`` (as
    Ansible shows them), and a module passing ``warnings=`` to fail_json fails the test (deprecated).
    Returns the list the warnings are collected in.
    """
    warned = []

    def warn(self, msg):
        warned.append(msg)

    def exit_json(self, **kwargs):
        if collect_warnings:
            kwargs.setdefault('changed', False)
            if warned:
                kwargs.setdefault('warnings', list(warned))
        raise AnsibleExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        if collect_warnings:
            assert 'warnings' not in kwargs, 'warnings must go through module.warn (fail_json(warnings=) is deprecated)'
            if warned:
                kwargs['warnings'] = list(warned)
        raise AnsibleFailJson(kwargs)

    if collect_warnings:
        monkeypatch.setattr(basic.AnsibleModule, 'warn', warn)
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    return warned


def run_patched(main, args, **kwargs):
    """The result dict of ``main(**kwargs)`` with module arguments ``args`` (needs :func:`patch_exit_fail`)."""
    with patch_module_args(args):
        try:
            main(**kwargs)
        except ModuleResult as exc:
            return exc.result
    raise AssertionError('the module neither exited nor failed')


def run_exiting(capsys, main, args, **kwargs):
    """``(exit code, result)`` of ``main(**kwargs)`` exiting for real with module arguments ``args``."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            main(**kwargs)
    return info.value.code, json.loads(capsys.readouterr().out)
