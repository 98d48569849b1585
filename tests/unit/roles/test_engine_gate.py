# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine role's version blocklist, conflict stop and kernel gate variable: the role's own
expressions evaluated with the templar on the role's vars (issue 19)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

HERE = os.path.dirname(__file__)
ROLE = os.path.join(HERE, '..', '..', '..', 'roles', 'engine')


def _yaml(*parts):
    with open(os.path.join(ROLE, *parts)) as fh:
        return yaml.safe_load(fh)


def _task(name, path=('tasks', 'preflight.yml')):
    return dict((t['name'], t) for t in _yaml(*path))[name]


def _templar(**kw):
    roles_vars = _yaml('vars', 'main.yml')
    defaults = _yaml('defaults', 'main.yml')
    variables = {'dattobd_engine_version': '0.12.1', 'dattobd_engine_state': 'present',
                 'dattobd_engine_blocklist_extra': [], 'dattobd_engine_allow_conflicts': False,
                 'ansible_facts': {'os_family': 'Debian', 'distribution': 'Debian',
                                   'distribution_major_version': '12', 'kernel': '6.1.0-57-amd64'},
                 'inventory_hostname': 'h1'}
    for name in ('__dattobd_engine_blocklist', '__dattobd_engine_want_version', '__dattobd_engine_blocked'):
        variables[name] = trust_as_template(roles_vars[name]) if isinstance(roles_vars[name], str) else roles_vars[name]
    variables['dattobd_engine_kernel_gate'] = defaults['dattobd_engine_kernel_gate']
    variables.update(kw)
    return Templar(loader=DataLoader(), variables=variables)


def _blocked(**kw):
    t = _templar(**kw)
    task = _task('Refuse a known-bad dattobd release for this platform')
    fires = all(t.evaluate_conditional(trust_as_template(c)) for c in task['when'])
    return fires, (t.template(trust_as_template(task['ansible.builtin.fail']['msg'])) if fires else None)


EL8 = {'os_family': 'RedHat', 'distribution': 'RedHat', 'distribution_major_version': '8', 'kernel': '4.18.0-553.el8_10.x86_64'}
EL9 = dict(EL8, distribution_major_version='9')
DEB11 = {'os_family': 'Debian', 'distribution': 'Debian', 'distribution_major_version': '11', 'kernel': '5.10.0-30-amd64'}


@pytest.mark.parametrize('facts, version, blocked, words', [
    (EL8, '0.11.8', True, ['RHEL 8.10', 'issues/387']),
    (EL9, '0.11.8', False, []),
    (EL8, '0.12.1', False, []),
    (DEB11, '0.12.0', True, ['Debian 11', 'issues/406']),
    (None, '0.12.0', False, []),          # Debian 12
    (EL8, '0.11.3', True, ['issues/403']),
])
def test_blocklist(facts, version, blocked, words):
    kw = {'dattobd_engine_version': version}
    if facts:
        kw['ansible_facts'] = facts
    fires, msg = _blocked(**kw)
    assert fires is blocked
    for w in words:
        assert w in msg
    if blocked:
        assert ('dattobd %s is blocked' % version) in msg


def test_blocklist_source_version_and_extra_entries():
    # method source: the version read from the source is the one checked
    fires, msg = _blocked(ansible_facts=EL8, dattobd_engine_version='', __dattobd_engine_src_version='0.11.8')
    assert fires
    extra = [{'version': '0.12.1', 'os_family': '*', 'distribution': '*', 'major': '*',
              'issue': 'https://example.invalid/x', 'reason': 'site policy: not yet certified'}]
    fires, msg = _blocked(dattobd_engine_blocklist_extra=extra)
    assert fires and 'site policy: not yet certified (https://example.invalid/x)' in msg
    # every shipped entry carries an issue and a reason
    for entry in _yaml('vars', 'main.yml')['__dattobd_engine_blocklist']:
        assert entry['issue'].startswith('https://github.com/datto/dattobd/issues/') and entry['reason'].strip()


def _conflict_stop(conflicts, allow=False):
    t = _templar(dattobd_engine_allow_conflicts=allow, __dattobd_engine_hygiene={'conflicts': conflicts})
    task = _task('Stop beside another snapshot driver')
    fires = all(t.evaluate_conditional(trust_as_template(c)) for c in task['when'])
    return fires, (t.template(trust_as_template(task['ansible.builtin.fail']['msg'])) if fires else None)


def test_conflict_stop():
    veeam = [{'driver': 'veeamsnap', 'product': 'Veeam Agent for Linux (veeamsnap)', 'loaded': True,
              'modules': ['/lib/modules/6.1.0-57-amd64/updates/dkms/veeamsnap.ko'], 'dkms': [], 'packages': ['veeamsnap']}]
    fires, msg = _conflict_stop(veeam)
    assert fires and 'Veeam Agent for Linux (veeamsnap) (loaded, /lib/modules' in msg and 'allow_conflicts' in msg
    assert _conflict_stop(veeam, allow=True)[0] is False
    assert _conflict_stop([])[0] is False


@pytest.mark.parametrize('gate, ok', [('report', True), ('hold', True), ('default', True), ('reboot', False)])
def test_kernel_gate_is_validated(gate, ok):
    t = _templar(dattobd_engine_kernel_gate=gate, dattobd_engine_method='source', dattobd_engine_kernels='all',
                 dattobd_engine_kernel_upgrade='none', __dattobd_engine_package_names={'Debian': {}})
    task = _task('Check the method and the OS family', path=('tasks', 'validate.yml'))
    assert all(t.evaluate_conditional(trust_as_template(c)) for c in task['ansible.builtin.assert']['that']) is ok
    assert _yaml('defaults', 'main.yml')['dattobd_engine_kernel_gate'] == 'report'


def _set_fact(path, name, variables):
    task = dict((t['name'], t) for t in _yaml('tasks', path))[name]
    t = Templar(loader=DataLoader(), variables=variables)
    return dict((k, t.template(trust_as_template(v))) for k, v in task['ansible.builtin.set_fact'].items())


def test_installed_kernels_are_images_with_a_module_tree():
    """/boot/vmlinuz-* (not the EL rescue image) that also have /lib/modules/<release>, plus the running one."""
    boot = [{'path': '/boot/vmlinuz-' + k} for k in ('6.1.0-57-amd64', '6.12.57+deb12-amd64', '0-rescue-abc', '6.1.0-9-amd64')]
    trees = [{'path': '/lib/modules/' + k} for k in ('6.1.0-57-amd64', '6.12.57+deb12-amd64', '6.1.0-1-amd64')]
    got = _set_fact('present.yml', 'Note the installed kernels', {
        'ansible_facts': {'kernel': '6.1.0-57-amd64'}, '__dattobd_engine_boot_images': {'files': boot},
        '__dattobd_engine_module_trees': {'files': trees}})
    assert got['__dattobd_engine_installed_kernels'] == ['6.1.0-57-amd64', '6.12.57+deb12-amd64']
    got = _set_fact('present.yml', 'Note the installed kernels', {
        'ansible_facts': {'kernel': '6.1.0-57-amd64'}, '__dattobd_engine_boot_images': {'skipped': True},
        '__dattobd_engine_module_trees': {'skipped': True}})
    assert got['__dattobd_engine_installed_kernels'] == ['6.1.0-57-amd64']  # kernels=running


def test_build_host_builds_every_installed_kernel_once():
    hostvars = {
        'a': {'__dattobd_engine_bh_kernel': '6.1.0-57-amd64', '__dattobd_engine_bh_more': ['6.12.57+deb12-amd64']},
        'b': {'__dattobd_engine_bh_kernel': '', '__dattobd_engine_bh_more': ['6.12.57+deb12-amd64', '6.1.0-58-amd64']},
        'c': {'__dattobd_engine_bh_kernel': '6.1.0-57-amd64'},
    }
    for name, hv in hostvars.items():
        hv.update(inventory_hostname=name, ansible_facts={'kernel': hv['__dattobd_engine_bh_kernel'] or '6.1.0-40-amd64'})
    got = _set_fact('build_host.yml', 'List the kernels the build host must build for', {
        'ansible_play_hosts': ['a', 'b', 'c'], 'hostvars': hostvars, 'inventory_hostname': 'a',
        'ansible_facts': hostvars['a']['ansible_facts']})
    assert got['__dattobd_engine_bh_kernels'] == ['6.1.0-57-amd64', '6.1.0-58-amd64', '6.12.57+deb12-amd64']
    assert got['__dattobd_engine_bh_running'] == ['6.1.0-57-amd64']
    more = _set_fact('build_host.yml', 'Note the other kernels this host needs builds for (the kernel gate)', {
        '__dattobd_engine_bh_more_cache': {'results': [{'item': 'k1', 'stat': {'exists': True}},
                                                       {'item': 'k2', 'stat': {'exists': False}}]}})
    assert more['__dattobd_engine_bh_more'] == ['k2']


def test_build_failure_of_a_kernel_no_target_runs_is_reported_not_fatal():
    tasks = _yaml('tasks', 'build_host_kernel.yml')[0]['block']
    build = [t for t in tasks if t['name'].startswith('Build for kernel')][0]['block']
    inner = dict((t['name'], t) for t in [t for t in build if t['name'] == 'Build in the build root'][0]['block'])
    base = {'__dattobd_engine_bh_build': {'rc': 10}, '__dattobd_engine_bh_k': '6.12.57+deb12-amd64',
            '__dattobd_engine_bh_running': ['6.1.0-57-amd64']}

    def fires(name, **kw):
        t = Templar(loader=DataLoader(), variables=dict(base, **kw))
        when = inner[name]['when']
        return all(t.evaluate_conditional(trust_as_template(c)) for c in (when if isinstance(when, list) else [when]))

    assert fires('Report a failed build for a kernel no target runs (the kernel gate)')
    assert not fires('Fail on a build failure')
    assert fires('Fail on a build failure', __dattobd_engine_bh_k='6.1.0-57-amd64')   # a running kernel: fatal
    assert not fires('Export the binary module')
    assert fires('Export the binary module', __dattobd_engine_bh_build={'rc': 0})


def test_targets_load_the_other_kernels_builds():
    tasks = dict((t['name'], t) for t in _yaml('tasks', 'fleet_kernels.yml'))
    load = tasks['Load the cached builds of the other kernels into DKMS']
    assert load['ansible.builtin.command']['argv'][:2] == ['dkms', 'ldtarball']
    t = Templar(loader=DataLoader(), variables={
        'item': {'item': '6.12.57+deb12-amd64', 'stat': {'path': '/c/x.dkms.tar.gz'}},
        '__dattobd_engine_other_status': {'stdout': 'dattobd/0.12.1, 6.12.57+deb12-amd64, x86_64: installed\n'}})
    assert not t.evaluate_conditional(trust_as_template(load['when']))   # already there: nothing to load
    t = Templar(loader=DataLoader(), variables={
        'item': {'item': '6.12.57+deb12-amd64', 'stat': {'path': '/c/x.dkms.tar.gz'}},
        '__dattobd_engine_other_status': {'stdout': 'dattobd/0.12.1, 6.12.57-deb12-amd64, x86_64: installed\n'}})
    assert t.evaluate_conditional(trust_as_template(load['when']))       # '+' is not a regex operator here


# Recorded in the lab (Debian 12 guest, dkms 3.0.10, 2026-12-06): loading the build of a second kernel on a
# host where dattobd 0.12.1 is already added loads the binaries, then fails to register the module again.
LDTARBALL_AGAIN = {'rc': 3, 'stdout': '\nLoading tarball for dattobd-0.12.1\n'
                                      'Loading /var/lib/dkms/dattobd/0.12.1/6.12.95+deb12-cloud-amd64/x86_64...',
                   'stderr': 'Error! DKMS tree already contains: dattobd-0.12.1\n'
                             'You cannot add the same module/version combo more than once.'}


@pytest.mark.parametrize('result, failed', [
    (LDTARBALL_AGAIN, False),
    ({'rc': 0, 'stdout': '', 'stderr': ''}, False),
    ({'rc': 4, 'stdout': '', 'stderr': 'Error! Could not find the tarball.'}, True),
])
def test_loading_another_kernels_build_where_the_version_is_already_added(result, failed):
    tasks = dict((t['name'], t) for t in _yaml('tasks', 'fleet_kernels.yml'))
    load = tasks['Load the cached builds of the other kernels into DKMS']
    t = Templar(loader=DataLoader(), variables={'__dattobd_engine_other_loaded': result})
    assert t.evaluate_conditional(trust_as_template(load['failed_when'])) is failed


@pytest.mark.parametrize('status, fails', [
    ('dattobd/0.12.1, 6.1.0-57-amd64, x86_64: installed\ndattobd/0.12.1, 6.12.95+deb12-cloud-amd64, x86_64: built\n',
     False),
    ('dattobd/0.12.1, 6.1.0-57-amd64, x86_64: installed\n', True),
])
def test_a_load_that_dkms_does_not_list_afterwards_fails(status, fails):
    # what counts after the load is that DKMS lists the kernel's build, whatever ldtarball's exit status
    tasks = dict((t['name'], t) for t in _yaml('tasks', 'fleet_kernels.yml'))
    check = tasks['Fail when a loaded build is not in DKMS']
    t = Templar(loader=DataLoader(), variables={
        'item': dict(LDTARBALL_AGAIN, item={'item': '6.12.95+deb12-cloud-amd64'}),
        '__dattobd_engine_other_after': {'stdout': status}})
    assert t.evaluate_conditional(trust_as_template(check['when'])) is fails
