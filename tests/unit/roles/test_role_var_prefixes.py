# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role variables carry the collection's namespaced prefix.

ansible-lint's ``var-naming[no-role-prefix]`` wants ``<role>_``; this collection uses the stricter
``dattobd_<role>_`` for public and ``__dattobd_<role>_`` for internal variables (see .ansible-lint).
This test enforces that convention on role defaults, vars, argument specs, facts set and
registered results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import pytest
import yaml

from ..conftest import COLLECTION_ROOT

ROLES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(COLLECTION_ROOT, 'roles', '*'))
               if os.path.isdir(p))

# Variables a role may set without the prefix: Ansible's own magic/connection variables.
ALLOWED = {'ansible_python_interpreter', 'ansible_become', 'ansible_check_mode'}


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _task_names(tasks):
    """Yield (kind, name) of facts set and results registered in a task list, recursively."""
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for key in ('block', 'rescue', 'always'):
            yield from _task_names(task.get(key))
        if 'register' in task:
            yield 'register', task['register']
        for module in ('set_fact', 'ansible.builtin.set_fact'):
            args = task.get(module)
            if isinstance(args, dict):
                for name in args:
                    if name not in ('cacheable',):
                        yield 'set_fact', name


def _role_variables(role):
    base = os.path.join(COLLECTION_ROOT, 'roles', role)
    for sub in ('defaults', 'vars'):
        for path in glob.glob(os.path.join(base, sub, '*.yml')):
            for name in (_load(path) or {}):
                yield os.path.relpath(path, base), name
    spec = os.path.join(base, 'meta', 'argument_specs.yml')
    if os.path.exists(spec):
        for entry, data in (_load(spec).get('argument_specs') or {}).items():
            for name in (data or {}).get('options') or {}:
                yield 'meta/argument_specs.yml:%s' % entry, name
    for path in glob.glob(os.path.join(base, 'tasks', '*.yml')) + glob.glob(os.path.join(base, 'handlers', '*.yml')):
        for kind, name in _task_names(_load(path)):
            yield '%s (%s)' % (os.path.relpath(path, base), kind), name


@pytest.mark.skipif(not ROLES, reason='no roles yet')
@pytest.mark.parametrize('role', ROLES)
def test_role_variables_are_prefixed(role):
    public, internal = 'dattobd_%s_' % role, '__dattobd_%s_' % role
    bad = sorted('%s: %s' % (where, name) for where, name in _role_variables(role)
                 if not (name.startswith(public) or name.startswith(internal) or name in ALLOWED))
    assert bad == [], 'variables of role %s must start with %s or %s:\n%s' % (role, public, internal, '\n'.join(bad))


def test_every_role_has_argument_specs_and_meta():
    missing = [r for r in ROLES for f in ('meta/argument_specs.yml', 'meta/main.yml', 'README.md')
               if not os.path.exists(os.path.join(COLLECTION_ROOT, 'roles', r, f))]
    assert missing == []
