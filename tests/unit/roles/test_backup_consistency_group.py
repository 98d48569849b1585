# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup role's consistency group: dattobd_backup_consistency_group is the group of every volume without
its own, and ``group`` reaches the module (its volume keys) and the runner's configuration."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

try:
    from ansible.template import trust_as_template  # ansible-core 2.19: only trusted strings are templates
except ImportError:  # older ansible-core: every string is
    def trust_as_template(value):
        return value

from ..conftest import COLLECTION_ROOT

ROLE = os.path.join(COLLECTION_ROOT, 'roles', 'backup')


def _yaml(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


def _grouped(volumes, group):
    expr = _yaml('vars', 'main.yml')['__dattobd_backup_grouped_volumes']
    templar = Templar(loader=DataLoader(), variables=dict(dattobd_backup_volumes=volumes,
                                                          dattobd_backup_consistency_group=group))
    return templar.template(trust_as_template(expr))


@pytest.mark.parametrize('group, want', [
    ('', [None, 'own']),
    ('host', ['host', 'own']),
])
def test_the_host_group_is_the_default_of_every_volume(group, want):
    volumes = [{'device': '/data', 'image': '/b/data.img'}, {'device': '/db', 'image': '/b/db.img', 'group': 'own'}]
    out = _grouped(volumes, group)
    assert [v.get('group') for v in out] == want
    assert [v['image'] for v in out] == ['/b/data.img', '/b/db.img']


def _backup_call():
    """The role's backup task (in a block, with the publishing as its always)."""
    tasks = []
    for task in _yaml('tasks', 'main.yml'):
        tasks.extend(task.get('block', []) + task.get('always', []) if 'block' in task else [task])
    found = [t for t in tasks if 'snapfleet.dattobd.backup' in t]
    assert len(found) == 1, found
    return found[0]


def test_group_is_a_volume_key_of_the_role():
    call = _backup_call()
    assert 'group' in _yaml('vars', 'main.yml')['__dattobd_backup_volume_keys']
    assert '__dattobd_backup_grouped_volumes' in call['snapfleet.dattobd.backup']['volumes']
    spec = _yaml('meta', 'argument_specs.yml')['argument_specs']['main']['options']
    assert spec['dattobd_backup_volumes']['options']['group']['type'] == 'str'
    assert spec['dattobd_backup_consistency_group']['default'] == ''
    assert _yaml('defaults', 'main.yml')['dattobd_backup_consistency_group'] == ''


def test_the_runner_step_configures_what_the_backup_call_does():
    """The role installs the runner in its backup call (the call's own options) or alone (tasks_from: runner,
    the runner module): both configure the same options, so neither rewrites what the other wrote."""
    call = _backup_call()['snapfleet.dattobd.backup']
    alone = _yaml('tasks', 'runner.yml')[0]['snapfleet.dattobd.runner']
    per_run_or_call = {'volumes', 'full', 'runner', 'status', 'ping_url'}
    assert set(alone['defaults']) == set(call) - per_run_or_call
    assert '__dattobd_backup_volume_keys' in alone['volumes'] and '__dattobd_backup_volume_keys' in call['volumes']
    assert (call['runner']['path'], call['runner']['config']) == (alone['path'], alone['config'])


def _host_failed(call):
    """The role's one "did the host fail" expression, rendered with the collection's filter."""
    import jinja2
    from ansible_collections.snapfleet.dattobd.plugins.filter.backup_results import backup_host_results
    env = jinja2.Environment()
    env.filters['snapfleet.dattobd.backup_host_results'] = backup_host_results
    expr = _yaml('vars', 'main.yml')['__dattobd_backup_host_failed']
    volumes = [{'device': '/data', 'image': '/b/data.img'}, {'device': '/db', 'image': '/b/db.img'}]
    return env.from_string(expr).render(__dattobd_backup_call=call, dattobd_backup_volumes=volumes).strip()


@pytest.mark.parametrize('call, want', [
    ({'volumes': [{'mode': 'incremental'}, {'mode': 'full'}], 'runner': {'failed': False}}, 'False'),
    ({'volumes': [{'mode': 'incremental'}, {'failed': True, 'step': 'copy'}]}, 'True'),  # the others still ran
    ({'failed': True, 'msg': 'refused: two volumes named data', 'volumes': []}, 'True'),  # refused call
    ({'volumes': [{'mode': 'incremental'}, {'mode': 'full'}], 'runner': {'failed': True}}, 'True'),
])
def test_the_host_fails_by_one_expression_for_the_call_and_the_published_fact(call, want):
    """The call's failed_when and the published dattobd_backup_failed are one role variable (they were two copies
    of one expression, which could drift apart)."""
    tasks = _yaml('tasks', 'main.yml')[0]
    assert _backup_call()['failed_when'] == '__dattobd_backup_host_failed | bool'
    published = tasks['always'][0]['ansible.builtin.set_fact']['dattobd_backup_failed']
    assert published == '{{ __dattobd_backup_host_failed | bool }}'
    assert _host_failed(call) == want
