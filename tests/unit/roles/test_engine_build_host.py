# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine role's build host: its validation, which kernels it builds and who gives the symbols,
and the commands it runs in the build root (argument lists, the root one intact argument)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from .test_template_injection import templar

HERE = os.path.dirname(__file__)
ROLE = os.path.join(HERE, '..', '..', '..', 'roles', 'engine')


def _load(name):
    with open(os.path.join(ROLE, 'tasks', name)) as fh:
        return yaml.safe_load(fh)


def _by_name(tasks):
    out = {}
    for t in tasks:
        out[t['name']] = t
        for sub in t.get('block', []) + t.get('always', []):
            out.update(_by_name([sub]))
    return out


def _check(**kw):
    task = _by_name(_load('validate.yml'))['Check the build host settings']
    variables = {'dattobd_engine_build_host': '', 'dattobd_engine_build_root': '',
                 'dattobd_engine_method': 'source', 'hostvars': {'web1': {}, 'build-deb12': {}}}
    variables.update(kw)
    variables['__dattobd_engine_bh_problems'] = trust_as_template(task['vars']['__dattobd_engine_bh_problems'])
    t = templar(variables)
    return all(t.evaluate_conditional(trust_as_template(c)) for c in task['ansible.builtin.assert']['that'])


@pytest.mark.parametrize('kw', [
    {},
    {'dattobd_engine_build_host': 'localhost'},
    {'dattobd_engine_build_host': 'build-deb12', 'dattobd_engine_build_root': '/srv/build roots/debian 12'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_build_root': '/srv/o\'brien/$(x)'},
])
def test_accepted(kw):
    assert _check(**kw)


@pytest.mark.parametrize('kw', [
    {'dattobd_engine_build_host': 'not-in-inventory'},
    {'dattobd_engine_build_host': 'localhost\nExecStart=/bin/sh'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_method': 'repository'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_build_root': 'srv/relative'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_build_root': '/srv/root\n/x'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_build_root': '/srv/\tx'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_build_root': '/srv/../etc'},
    {'dattobd_engine_build_host': 'localhost', 'dattobd_engine_build_root': '/srv/..'},
])
def test_refused(kw):
    assert not _check(**kw)


def _plan(hosts, me):
    """Evaluate 'List the kernels the build host must build for' for host `me` of a play."""
    task = _by_name(_load('build_host.yml'))['List the kernels the build host must build for']
    facts = task['ansible.builtin.set_fact']
    hostvars = {}
    for name, (kernel, needed) in hosts.items():
        hostvars[name] = {'inventory_hostname': name, 'ansible_facts': {'kernel': kernel}}
        if needed is not None:
            hostvars[name]['__dattobd_engine_bh_kernel'] = kernel if needed else ''
    variables = {'ansible_play_hosts': list(hosts), 'hostvars': hostvars,
                 'ansible_facts': hostvars[me]['ansible_facts'], 'inventory_hostname': me}
    t = Templar(loader=DataLoader(), variables=variables)
    return (t.template(trust_as_template(facts['__dattobd_engine_bh_kernels'])),
            t.template(trust_as_template(facts['__dattobd_engine_bh_provider'])).strip())


def test_one_build_per_kernel_and_one_provider_each():
    hosts = {'a': ('6.1.0-57-amd64', True), 'b': ('6.1.0-57-amd64', True), 'c': ('6.12.1-amd64', True),
             'd': ('6.1.0-40-amd64', False),       # cached: nothing to build
             'e': ('6.1.0-41-amd64', None)}        # did not run the include (complete install)
    kernels, provider_a = _plan(hosts, 'a')
    assert kernels == ['6.1.0-57-amd64', '6.12.1-amd64']
    assert provider_a == 'a'
    assert _plan(hosts, 'b')[1] == 'a'             # b shares a's kernel: a gives the symbols
    assert _plan(hosts, 'c')[1] == 'c'
    assert _plan(hosts, 'd')[1] == ''              # cached kernel: nobody copies its symbols


def test_nothing_to_build_when_all_cached():
    kernels, provider = _plan({'a': ('6.1.0-57-amd64', False), 'b': ('6.1.0-57-amd64', False)}, 'a')
    assert kernels == [] and provider == ''


def _argv_tasks(tasks):
    for t in tasks:
        for sub in ('block', 'always'):
            yield from _argv_tasks(t.get(sub, []))
        cmd = t.get('ansible.builtin.command')
        if cmd is not None:
            yield t['name'], cmd


def test_every_build_root_command_is_an_argument_list():
    hostile = "/srv/b r;touch /tmp/INJ;$(id)`x`"
    seen = 0
    for name, cmd in _argv_tasks(_load('build_host_kernel.yml')):
        assert set(cmd) <= {'argv'}, name          # never a command string (split by the shell rules)
        if 'chroot' not in cmd['argv']:
            continue
        seen += 1
        variables = {'__bh_root': hostile, '__dattobd_engine_bh_k': '6.1.0-57-amd64',
                     '__dattobd_engine_src_version': '0.12.1', '__dattobd_engine_src_stage': '/var/cache/x',
                     '__bh_name': 'k.dkms.tar.gz', 'dattobd_engine_build_timeout': 3600}
        t = Templar(loader=DataLoader(), variables=variables)
        argv = [t.template(trust_as_template(str(a))) for a in cmd['argv']]
        assert argv[argv.index('chroot') + 1] == hostile, name
    assert seen >= 6


def test_mounts_are_undone_in_always():
    tasks = _by_name(_load('build_host_kernel.yml'))
    build = tasks['Build in the build root']
    names = [t['name'] for t in build['always']]
    assert 'Unmount /proc, /sys and /dev from the build root' in names
    assert 'Remove the symbol map placed for the build' in names


@pytest.mark.parametrize('build_host, src, strip, creates', [
    ('', '/cache/sources/dir-x.tar.gz', '1', 'src/dattobd.h'),
    ('localhost', '/cache/tools/t.tar.gz', '0', 'utils/update-img'),
])
def test_targets_unpack_the_prebuilt_tree_with_a_build_host(build_host, src, strip, creates):
    task = _by_name(_load('source.yml'))['Unpack the source on the host']['ansible.builtin.unarchive']
    variables = {'dattobd_engine_build_host': build_host, '__dattobd_engine_tools_tarball': '/cache/tools/t.tar.gz',
                 '__dattobd_engine_src_archive': '/cache/sources/dir-x.tar.gz', '__dattobd_engine_src_strip': 1,
                 '__dattobd_engine_src_stage': '/var/cache/snapfleet/dattobd/src-abc'}
    t = Templar(loader=DataLoader(), variables=variables)
    assert t.template(trust_as_template(task['src'])) == src
    assert t.template(trust_as_template(task['extra_opts'][0])) == '--strip-components=' + strip
    # with prebuilt tools the upstream make step finds update-img and is skipped
    assert t.template(trust_as_template(task['creates'])).endswith('/' + creates)


def test_targets_install_no_compiler_with_a_build_host():
    with open(os.path.join(ROLE, 'vars', 'main.yml')) as fh:
        role_vars = yaml.safe_load(fh)
    for build_host, expected in (('', ["linux-headers-{{ ansible_facts['kernel'] }}", 'dkms', 'gcc', 'make', 'libc6-dev']),
                                 ('localhost', ['dkms'])):
        variables = dict(role_vars)
        variables.update({'ansible_facts': {'os_family': 'Debian', 'kernel': '6.1.0-57-amd64'},
                          'dattobd_engine_install_headers': True, 'dattobd_engine_method': 'source',
                          'dattobd_engine_build_host': build_host})
        t = Templar(loader=DataLoader(), variables=variables)
        assert [str(x) for x in t.template(trust_as_template(role_vars['__dattobd_engine_prereqs']))] == expected, build_host
