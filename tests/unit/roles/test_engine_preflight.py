# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine role's upgrade/uninstall guard: evaluate preflight.yml's expressions with the templar."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

HERE = os.path.dirname(__file__)
ROLE = os.path.join(HERE, '..', '..', '..', 'roles', 'engine')
GOLDEN = os.path.join(HERE, '..', '..', 'fixtures', 'golden', 'datto-info')


def _tasks():
    with open(os.path.join(ROLE, 'tasks', 'preflight.yml')) as fh:
        return {t['name']: t for t in yaml.safe_load(fh)}


def _tracker_count(procinfo_text):
    record = _tasks()['Record what is loaded']['ansible.builtin.set_fact']['__dattobd_engine_trackers']
    t = Templar(loader=DataLoader(), variables={'__dattobd_engine_procinfo': {'stdout': procinfo_text}})
    return int(t.template(trust_as_template(record)))


@pytest.mark.parametrize('fixture, count', [('datto-info.empty.json', 0), ('datto-info.state-2.json', None),
                                            ('datto-info.state-3-error.json', None)])
def test_tracker_count_from_golden(fixture, count):
    import json
    with open(os.path.join(GOLDEN, fixture)) as fh:
        text = fh.read()
    expected = len(json.loads(text)['devices']) if count is None else count
    assert _tracker_count(text) == expected
    assert _tracker_count('') == 0


def _fires(**kw):
    task = _tasks()['Stop when an unload would destroy trackers']
    variables = {'dattobd_engine_state': 'present', 'dattobd_engine_version': '0.12.1',
                 'dattobd_engine_allow_unload': False, '__dattobd_engine_loaded_version': '0.12.0',
                 '__dattobd_engine_trackers': 2}
    variables.update(kw)
    variables['__dattobd_engine_want'] = trust_as_template(task['vars']['__dattobd_engine_want'])
    t = Templar(loader=DataLoader(), variables=variables)
    return all(t.evaluate_conditional(trust_as_template(c)) for c in task['when'])


@pytest.mark.parametrize('kw, fires', [
    ({}, True),                                                   # upgrade with trackers
    ({'dattobd_engine_allow_unload': True}, False),               # allowed
    ({'__dattobd_engine_trackers': 0}, False),                    # nothing to lose
    ({'__dattobd_engine_loaded_version': '0.12.1'}, False),       # same version: no unload
    ({'__dattobd_engine_loaded_version': ''}, False),             # not loaded
    ({'dattobd_engine_state': 'absent', '__dattobd_engine_loaded_version': '0.12.1'}, True),
    ({'dattobd_engine_version': '', '__dattobd_engine_src_version': '0.12.1'}, True),   # source method
    ({'dattobd_engine_version': '', '__dattobd_engine_src_version': '0.12.0'}, False),
])
def test_guard(kw, fires):
    assert _fires(**kw) is fires
