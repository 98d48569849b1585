# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Rules for every role's meta/argument_specs.yml."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
SPECS = sorted(glob.glob(os.path.join(ROOT, 'roles', '*', 'meta', 'argument_specs.yml')))


def _options(spec):
    for entry in spec.get('argument_specs', {}).values():
        for name, opt in (entry.get('options') or {}).items():
            yield name, opt
            for sub, subopt in (opt.get('options') or {}).items():
                yield '%s.%s' % (name, sub), subopt


def test_every_role_has_argument_specs():
    roles = sorted(glob.glob(os.path.join(ROOT, 'roles', '*', 'tasks', 'main.yml')))
    assert roles
    assert len(SPECS) == len(roles)


@pytest.mark.parametrize('path', SPECS, ids=lambda p: p.split(os.sep)[-3])
def test_no_templated_defaults(path):
    # ansible-core templates argument_specs defaults while validating, before the role's own tasks
    # run: a default built from facts or other variables fails in a play without gathered facts.
    # Such defaults belong in defaults/main.yml; the description says what they are.
    with open(path) as f:
        spec = yaml.safe_load(f)
    bad = [name for name, opt in _options(spec) if '{{' in str(opt.get('default', ''))]
    assert bad == []
