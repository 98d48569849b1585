# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Library tests of module_utils/_dattobd/dkms.py (parsers, validation, diagnosis, apply)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dkms
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dkms_facts
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.dkms_host import FakeHost, KERNEL

STATUS_TABLE = [
    ('', []),
    ('dattobd/0.12.1, 6.1.0-28-amd64, x86_64: installed\n',
     [{'version': '0.12.1', 'kernel': '6.1.0-28-amd64', 'arch': 'x86_64', 'state': 'installed'}]),
    # dkms 2.x layout
    ('dattobd, 0.11.10, 5.10.0-30-amd64, x86_64: installed\n',
     [{'version': '0.11.10', 'kernel': '5.10.0-30-amd64', 'arch': 'x86_64', 'state': 'installed'}]),
    ('dattobd/0.12.1: added\n', [{'version': '0.12.1', 'kernel': None, 'arch': None, 'state': 'added'}]),
    ('dattobd/0.12.1, 6.1.0-28-amd64, x86_64: built\nzfs/2.1.11, 6.1.0-28-amd64, x86_64: installed\n',
     [{'version': '0.12.1', 'kernel': '6.1.0-28-amd64', 'arch': 'x86_64', 'state': 'built'}]),
    ('dattobd/0.12.1, 6.1.0-28-amd64, x86_64: installed (WARNING! Diff between built and installed module!)\n',
     [{'version': '0.12.1', 'kernel': '6.1.0-28-amd64', 'arch': 'x86_64', 'state': 'installed'}]),
    ('Error! Could not locate dkms.conf file.\n', []),
]


@pytest.mark.parametrize('text, expected', STATUS_TABLE)
def test_parse_dkms_status(text, expected):
    assert dkms.parse_dkms_status(text) == expected


STATE_TABLE = [
    ('', '0.12.1', KERNEL, None),
    ('dattobd/0.12.1: added\n', '0.12.1', KERNEL, 'added'),
    ('dattobd/0.12.1, %s, x86_64: built\n' % KERNEL, '0.12.1', KERNEL, 'built'),
    ('dattobd/0.12.1, %s, x86_64: installed-weak\n' % KERNEL, '0.12.1', KERNEL, 'installed'),
    ('dattobd/0.12.1, 6.1.0-1-amd64, x86_64: installed\n', '0.12.1', KERNEL, 'added'),
    ('dattobd/0.12.0, %s, x86_64: installed\n' % KERNEL, '0.12.1', KERNEL, None),
]


@pytest.mark.parametrize('text, version, kernel, expected', STATE_TABLE)
def test_dkms_state(text, version, kernel, expected):
    assert dkms.dkms_state(dkms.parse_dkms_status(text), version, kernel) == expected


@pytest.mark.parametrize('version, ok', [('0.12.1', True), ('0.11.8.1', True), ('1.0', True), ('0.12.1-2', True),
                                         ('0.12.1~rc1', True), ('', False), ('latest', False), ('0.12.1/..', False),
                                         ('../../etc', False), ('0.12 1', False)])
def test_validate_version(version, ok):
    if ok:
        assert dkms.validate_version(version) == version
    else:
        with pytest.raises(DattobdError, match='Invalid dattobd version'):
            dkms.validate_version(version)
    assert dkms.validate_version(None) is None


@pytest.mark.parametrize('kernel, ok', [('6.1.0-28-amd64', True), ('5.14.0-427.el9.x86_64', True),
                                        ('../x', False), ('a b', False), ('', False)])
def test_validate_kernel(kernel, ok):
    if ok:
        assert dkms.validate_kernel(kernel) == kernel
    else:
        with pytest.raises(DattobdError, match='Invalid kernel release'):
            dkms.validate_kernel(kernel)


PARAM_TABLE = [
    ({}, {}),
    ({'max_snap_devices': 64, 'debug': None}, {'max_snap_devices': 64}),
    ({'debug': True}, {'debug': 1}),
    ({'cow_max_memory_default': '1048576'}, {'cow_max_memory_default': 1048576}),
    ({'max_snap_devices': 0}, 'out of range 1..255'),
    ({'max_snap_devices': 256}, 'out of range 1..255'),
    ({'cow_fallocate_percentage_default': 101}, 'out of range 1..100'),
    ({'cow_max_memory_default': -1}, 'out of range'),
    ({'max_snap_devices': 'many'}, 'is not an integer'),
    ({'may_hook_syscalls': 1}, 'Unknown dattobd module parameter'),
]


@pytest.mark.parametrize('params, expected', PARAM_TABLE)
def test_validate_parameters(params, expected):
    if isinstance(expected, dict):
        assert dkms.validate_parameters(params) == expected
    else:
        with pytest.raises(DattobdError, match=expected):
            dkms.validate_parameters(params)


def test_render_and_parse_modprobe_conf():
    text = dkms.render_modprobe_conf({'max_snap_devices': 64, 'cow_fallocate_percentage_default': 5})
    assert text == dkms.HEADER + 'options dattobd cow_fallocate_percentage_default=5 max_snap_devices=64\n'
    assert dkms.parse_modprobe_conf(text) == {'max_snap_devices': 64, 'cow_fallocate_percentage_default': 5}
    assert dkms.render_modprobe_conf({}) == dkms.HEADER
    assert dkms.parse_modprobe_conf(None) == {}
    assert dkms.parse_modprobe_conf('options dattobd debug=1 # c\noptions other x=1\noptions dattobd debug=0 '
                                    'odd=x flag\n') == {'debug': 0, 'odd': 'x'}
    assert dkms.render_modules_load_conf().endswith('\ndattobd\n')


@pytest.mark.parametrize('os_release, family', [
    ('ID=debian\n', 'debian'), ('ID=ubuntu\nID_LIKE=debian\n', 'debian'),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', 'redhat'), ('ID=fedora\n', 'redhat'),
    ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', 'suse'), ('ID="sles"\n', 'suse'),
    ('ID=alpine\n', 'unknown'), (None, 'unknown')])
def test_os_family(tmp_path, os_release, family):
    host = FakeHost(tmp_path)
    if os_release is not None:
        host.write('/etc/os-release', os_release)
    fam = dkms.os_family(dkms.Paths(host.root))
    assert fam == family
    assert dkms.headers_package(fam, KERNEL)


def test_installed_kernels_and_loaded(tmp_path):
    host = FakeHost(tmp_path)
    paths = dkms.Paths(host.root)
    assert dkms.installed_kernels(paths) == []
    assert dkms.loaded_module(paths) is None
    host.kernel('6.1.0-30-amd64')
    host.kernel(KERNEL, headers=False)
    host.write('/lib/modules/modules.conf', '')
    assert dkms.installed_kernels(paths) == [KERNEL, '6.1.0-30-amd64']
    host.load(max_snap_devices=32)
    host.write('/sys/module/dattobd/parameters/debug', 'garbage\n')
    assert dkms.loaded_module(paths) == {'version': '0.12.1', 'parameters': {'max_snap_devices': 32}}


def test_gather_dkms_status_failure(tmp_path, monkeypatch):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    host.expect('dkms status', 3, '', 'dkms: broken')
    ctx = dkms.Context(paths=dkms.Paths(host.root), kernel=KERNEL)
    with pytest.raises(DattobdError, match='dkms: broken'):
        dkms.gather(ctx)


def test_gather_uses_running_kernel_and_tools_version(tmp_path, monkeypatch):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    monkeypatch.setattr(dkms_facts, 'running_kernel', lambda: KERNEL)
    host.write(dkms.TOOLS_VERSION_FILE, '0.12.1\n')
    ctx = dkms.Context(dkms=None, paths=dkms.Paths(host.root))
    facts = dkms.gather(ctx)
    assert facts.kernel == KERNEL
    assert facts.tools_version == '0.12.1'
    assert dkms.tools_version(ctx, facts) == '0.12.1'
    assert host.commands == []


@pytest.mark.parametrize('dpkg_rc, dpkg_out, rpm_out, expected', [
    (0, '0.12.1-1', None, '0.12.1-1'),
    (1, '', '0.12.0', '0.12.0'),
    (1, '', 'package dattobd-utils is not installed', None),
])
def test_tools_version_package_managers(tmp_path, monkeypatch, dpkg_rc, dpkg_out, rpm_out, expected):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    host.expect('dpkg-query -W \'-f=${Version}\' dattobd-utils', dpkg_rc, dpkg_out)
    if rpm_out is not None:
        host.expect("rpm -q --qf '%{VERSION}' dattobd-utils", 0 if expected else 1, rpm_out)
    ctx = dkms.Context(paths=dkms.Paths(host.root))
    facts = dkms.Facts()
    assert dkms.tools_version(ctx, facts, dpkg_query='dpkg-query', rpm='rpm' if rpm_out is not None else None) == expected


def _fresh_install_plan(tmp_path, monkeypatch, build_timeout):
    """A host with headers and the source but nothing in DKMS: gather and plan a fresh install."""
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    host.kernel(KERNEL)
    host.source()
    host.expect('dkms status')
    ctx = dkms.Context(paths=dkms.Paths(host.root), kernel=KERNEL, timeout=7, build_timeout=build_timeout)
    facts = dkms.gather(ctx, version='0.12.1')
    steps, info = dkms.plan(ctx, facts, version='0.12.1', load=False, persist=False)
    return host, ctx, facts, steps


def test_build_steps_get_long_timeout(tmp_path, monkeypatch):
    host, ctx, facts, steps = _fresh_install_plan(tmp_path, monkeypatch, 5400)
    for s in steps:
        host.expect(s.describe())
    dkms.apply(ctx, facts, steps, version='0.12.1')
    assert host.calls == [('dkms status', 7), ('dkms add -m dattobd -v 0.12.1', 7),
                          ('dkms build -m dattobd -v 0.12.1 -k %s' % KERNEL, 5400),
                          ('dkms install -m dattobd -v 0.12.1 -k %s' % KERNEL, 5400)]


def _raise_timeout(argv, timeout):
    def effect():
        raise DriverTimeout('%s did not finish within %s seconds.' % (' '.join(argv), timeout), hint='wedged driver?')
    return effect


@pytest.mark.parametrize('stuck', ['build', 'install'])
def test_build_timeout_names_the_option_to_raise(tmp_path, monkeypatch, stuck):
    host, ctx, facts, steps = _fresh_install_plan(tmp_path, monkeypatch, 900)
    for s in steps:
        host.expect(s.describe(), effect=_raise_timeout(s.argv, 900) if s.argv[1] == stuck else None)
    with pytest.raises(DattobdError) as err:
        dkms.apply(ctx, facts, steps, version='0.12.1')
    res = err.value.to_result()
    assert 'dkms %s -m dattobd -v 0.12.1 -k %s did not finish within 900 seconds' % (stuck, KERNEL) in res['msg']
    assert 'dattobd_engine_build_timeout' in res['msg'] and 'wedged' not in res['msg']
    assert '/var/lib/dkms/dattobd/0.12.1/build/make.log' in res['msg']
    assert res['timeout'] == 900 and res['kernel'] == KERNEL
    # nothing after the stuck step ran
    assert host.commands[-1].startswith('dkms %s ' % stuck)


def test_driver_timeout_elsewhere_keeps_its_own_diagnosis(tmp_path, monkeypatch):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    ctx = dkms.Context(paths=dkms.Paths(host.root), kernel=KERNEL, modprobe='modprobe')
    step = dkms.Step('cmd', ['modprobe', 'dattobd'])
    host.expect('modprobe dattobd', effect=_raise_timeout(step.argv, 60))
    with pytest.raises(DriverTimeout) as err:
        dkms.apply(ctx, dkms.Facts(), [step])
    assert err.value.hint == 'wedged driver?'


def test_plan_custom_source_dir_and_absent_version_filter(tmp_path, monkeypatch):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    host.kernel(KERNEL)
    host.source()
    host.mkdir('/opt')
    os.rename(host.path('/usr/src/dattobd-0.12.1'), host.path('/opt/dattobd'))
    host.expect('dkms status')
    ctx = dkms.Context(paths=dkms.Paths(host.root), kernel=KERNEL)
    facts = dkms.gather(ctx, version='0.12.1', source_dir='/opt/dattobd')
    steps, info = dkms.plan(ctx, facts, version='0.12.1', load=False, persist=False, source_dir='/opt/dattobd')
    assert steps[0].describe() == 'dkms add /opt/dattobd'
    with pytest.raises(DattobdError, match='needs a version'):
        dkms.plan(ctx, facts, version=None)
    # absent of one version keeps the others
    facts.dkms = dkms.parse_dkms_status('dattobd/0.12.0, %s, x86_64: installed\ndattobd/0.12.1, %s, x86_64: '
                                        'installed\n' % (KERNEL, KERNEL))
    facts.modprobe_conf = 'x'
    steps, info = dkms.plan(ctx, facts, state='absent', version='0.12.0')
    assert [s.describe() for s in steps] == ['dkms remove -m dattobd -v 0.12.0 --all']


@pytest.mark.parametrize('argv, text, expected', [
    (['modprobe', '-r', 'dattobd'], 'modprobe: FATAL: Module dattobd is in use.', 'Unloading dattobd failed'),
    (['modprobe', 'dattobd'], "could not insert 'dattobd': Exec format error", 'does not match the running kernel'),
    (['modprobe', 'dattobd'], 'modprobe: FATAL: Module dattobd not found in directory /lib/modules/x',
     'modprobe cannot find the dattobd module'),
    (['modprobe', 'dattobd'], "could not insert 'dattobd': Unknown symbol in module", 'Loading dattobd failed'),
])
def test_diagnose_modprobe(argv, text, expected):
    facts = dkms.Facts()
    facts.kernel = KERNEL
    exc = dkms.diagnose_modprobe(dkms.Step('cmd', argv), 1, '', text, '0.12.1', facts)
    assert expected in exc.msg
    assert exc.hint


def test_diagnose_build_headers(tmp_path):
    ctx = dkms.Context(paths=dkms.Paths(str(tmp_path)))
    step = dkms.Step('cmd', ['dkms', 'build', '-m', 'dattobd', '-v', '0.12.1', '-k', KERNEL], kernel=KERNEL)
    exc = dkms.diagnose_build(ctx, step, 1, 'Error! Your kernel headers for kernel %s cannot be found.' % KERNEL, '',
                              '0.12.1', 'redhat')
    assert 'cannot find the kernel headers' in exc.msg
    assert 'kernel-devel-%s' % KERNEL in exc.hint
    assert exc.details['make_log_tail'] == []


def test_apply_other_command_failure_and_file_errors(tmp_path, monkeypatch):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(dkms._runner, 'run_timed', host.run_timed)
    ctx = dkms.Context(paths=dkms.Paths(host.root))
    facts = dkms.Facts()
    host.expect('dkms add -m dattobd -v 0.12.1', 3, '', 'Error! DKMS tree already contains: dattobd-0.12.1')
    with pytest.raises(DattobdError, match='already contains'):
        dkms.apply(ctx, facts, [dkms.Step('cmd', ['dkms', 'add', '-m', 'dattobd', '-v', '0.12.1'])])
    host.write('/etc/modprobe.d', 'a file, not a directory')
    with pytest.raises(DattobdError, match='Cannot write /etc/modprobe.d/dattobd.conf'):
        dkms.apply(ctx, facts, [dkms.Step('write', path=dkms.MODPROBE_CONF, content='x')])
    # remove of a missing file is a no-op; write creates parents; mode 0644
    acts = dkms.apply(ctx, facts, [dkms.Step('remove', path='/etc/modules-load.d/dattobd.conf'),
                                   dkms.Step('write', path='/etc/modules-load.d/dattobd.conf', content='dattobd\n')])
    assert acts == ['remove /etc/modules-load.d/dattobd.conf', 'write /etc/modules-load.d/dattobd.conf']
    assert oct(os.stat(host.path('/etc/modules-load.d/dattobd.conf')).st_mode & 0o777) == '0o644'
    assert [n for n in os.listdir(host.path('/etc/modules-load.d')) if n.startswith('.')] == []


def test_verify_failures(tmp_path):
    host = FakeHost(tmp_path)
    ctx = dkms.Context(paths=dkms.Paths(host.root))
    with pytest.raises(DattobdError, match='not loaded after modprobe'):
        dkms.verify(ctx, '0.12.1')
    host.load()
    os.unlink(host.path('/proc/datto-info'))
    with pytest.raises(DattobdError, match='/proc/datto-info is missing'):
        dkms.verify(ctx, '0.12.1')
    host.load()
    assert dkms.verify(ctx, '0.12.1')['version'] == '0.12.1'


def test_step_repr():
    assert repr(dkms.Step('remove', path='/x')) == '<Step remove /x>'


def test_apply_write_is_durable_directory_synced_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A written config file survives a crash: file and directory are fsynced (fileutil.atomic_write)."""
    host = FakeHost(tmp_path)
    ctx = dkms.Context(paths=dkms.Paths(host.root))
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink('/proc/self/fd/%d' % fd))
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', spy)
    dkms.apply(ctx, dkms.Facts(), [dkms.Step('write', path=dkms.MODPROBE_CONF, content='options dattobd x=1\n')])
    directory = os.path.dirname(host.path(dkms.MODPROBE_CONF))
    assert open(host.path(dkms.MODPROBE_CONF)).read() == 'options dattobd x=1\n'
    assert directory in synced
    assert oct(os.stat(directory).st_mode & 0o777) == '0o755'
    assert sorted(os.listdir(directory)) == ['dattobd.conf']
