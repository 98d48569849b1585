# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapfleet.dattobd.engine: situation -> exact ordered commands -> result, on a fake host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


import os

import pytest


from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dkms as _dkms
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import engine_run
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.plugins.modules import engine
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.dkms_host import (
    FakeHost, KERNEL, OTHER_KERNEL, STATUS_INSTALLED, STATUS_OLD_INSTALLED)
from .utils import patch_exit_fail, run_patched

K = KERNEL
STATUS = 'dkms status'
ADD = 'dkms add -m dattobd -v 0.12.1'
BUILD = 'dkms build -m dattobd -v 0.12.1 -k %s' % K
INSTALL = 'dkms install -m dattobd -v 0.12.1 -k %s' % K
CONF = _dkms.HEADER + 'options dattobd max_snap_devices=64\n'
DEFAULT_CONF = _dkms.HEADER
LOAD_CONF = _dkms.HEADER + 'dattobd\n'


class Failed(Exception):
    pass


class FakeModule(object):
    def __init__(self, params, check_mode=False, diff=False):
        base = dict(state='present', version='0.12.1', source_dir=None, kernels='running', parameters={},
                    load=True, persist=True, reload=True, force=False, build_timeout=3600, timeout=60,
                    dbdctl_path=None, kernel_gate='report', allow_conflicts=False)
        base.update(params)
        self.params = base
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, **kw):
        raise Failed(kw)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return None


@pytest.fixture
def host(tmp_path, monkeypatch):
    h = FakeHost(tmp_path)
    monkeypatch.setattr(_dkms._runner, 'run_timed', h.run_timed)
    h.kernel(K)
    h.source()
    return h


def _ctx(host):
    return _dkms.Context(dkms='dkms', modprobe='modprobe', paths=_dkms.Paths(host.root), kernel=K)


def _installed(host, conf=DEFAULT_CONF, **load):
    host.load(**load)
    host.write(_dkms.MODPROBE_CONF, conf)
    host.write(_dkms.MODULES_LOAD_CONF, LOAD_CONF)


def _setup(host, name):
    """Prepare a situation; return (params, script [(cmd, rc, out, err, effect)])."""
    def loaded(**kw):
        return lambda: host.load(**kw)

    if name == 'fresh':
        return {}, [(STATUS, 0, '', '', None), (ADD, 0, '', '', None), (BUILD, 0, '', '', None),
                    (INSTALL, 0, '', '', None), ('modprobe dattobd', 0, '', '', loaded()),
                    (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'fresh-params':
        return {'parameters': {'max_snap_devices': 64}}, [
            (STATUS, 0, '', '', None), (ADD, 0, '', '', None), (BUILD, 0, '', '', None), (INSTALL, 0, '', '', None),
            ('modprobe dattobd max_snap_devices=64', 0, '', '', loaded(max_snap_devices=64)),
            (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'converged':
        _installed(host)
        return {}, [(STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'converged-trackers':
        _installed(host, trackers=True)
        return {}, [(STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'added-only':
        _installed(host)
        host.unload()
        return {}, [(STATUS, 0, 'dattobd/0.12.1: added\n', '', None), (BUILD, 0, '', '', None),
                    (INSTALL, 0, '', '', None), ('modprobe dattobd', 0, '', '', loaded()),
                    (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'built-only':
        _installed(host)
        host.unload()
        return {}, [(STATUS, 0, 'dattobd/0.12.1, %s, x86_64: built\n' % K, '', None),
                    (INSTALL, 0, '', '', None), ('modprobe dattobd', 0, '', '', loaded()),
                    (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'params-change':
        _installed(host)
        return {'parameters': {'max_snap_devices': 64}}, [
            (STATUS, 0, STATUS_INSTALLED, '', None), ('modprobe -r dattobd', 0, '', '', host.unload),
            ('modprobe dattobd max_snap_devices=64', 0, '', '', loaded(max_snap_devices=64)),
            (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'params-change-trackers':
        _installed(host, trackers=True)
        return {'parameters': {'max_snap_devices': 64}}, [(STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'params-change-trackers-force':
        _installed(host, trackers=True)
        return {'parameters': {'max_snap_devices': 64}, 'force': True}, [
            (STATUS, 0, STATUS_INSTALLED, '', None), ('modprobe -r dattobd', 0, '', '', host.unload),
            ('modprobe dattobd max_snap_devices=64', 0, '', '', loaded(max_snap_devices=64)),
            (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'params-change-no-reload':
        _installed(host, trackers=True)
        return {'parameters': {'max_snap_devices': 64}, 'reload': False}, [
            (STATUS, 0, STATUS_INSTALLED, '', None), (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'hidden-param-change':
        # cow_fallocate_percentage_default is not in sysfs: the persisted file is the evidence.
        _installed(host, conf=_dkms.HEADER + 'options dattobd cow_fallocate_percentage_default=5\n')
        return {}, [(STATUS, 0, STATUS_INSTALLED, '', None), ('modprobe -r dattobd', 0, '', '', host.unload),
                    ('modprobe dattobd', 0, '', '', loaded()), (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'debug-runtime':
        _installed(host, conf=_dkms.HEADER, trackers=True)
        return {'parameters': {'debug': 1}}, [(STATUS, 0, STATUS_INSTALLED, '', None),
                                              (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'upgrade-trackers':
        _installed(host, version='0.12.0', trackers=True)
        return {}, [(STATUS, 0, STATUS_OLD_INSTALLED, '', None)]
    if name == 'upgrade-no-reload':
        _installed(host, version='0.12.0', trackers=True)
        return {'reload': False}, [
            (STATUS, 0, STATUS_OLD_INSTALLED, '', None), (ADD, 0, '', '', None), (BUILD, 0, '', '', None),
            ('dkms remove -m dattobd -v 0.12.0 --all', 0, '', '', None), (INSTALL, 0, '', '', None),
            (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'upgrade':
        _installed(host, version='0.12.0')
        return {}, [
            (STATUS, 0, STATUS_OLD_INSTALLED, '', None), (ADD, 0, '', '', None), (BUILD, 0, '', '', None),
            ('dkms remove -m dattobd -v 0.12.0 --all', 0, '', '', None), (INSTALL, 0, '', '', None),
            ('modprobe -r dattobd', 0, '', '', host.unload), ('modprobe dattobd', 0, '', '', loaded()),
            (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'all-kernels':
        host.kernel(OTHER_KERNEL, headers=True)
        host.kernel('6.1.0-9-amd64', headers=False)
        return {'kernels': 'all', 'load': False, 'persist': False}, [
            (STATUS, 0, '', '', None), (ADD, 0, '', '', None), (BUILD, 0, '', '', None),
            ('dkms build -m dattobd -v 0.12.1 -k %s' % OTHER_KERNEL, 0, '', '', None),
            (INSTALL, 0, '', '', None), ('dkms install -m dattobd -v 0.12.1 -k %s' % OTHER_KERNEL, 0, '', '', None),
            (STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'absent':
        _installed(host)
        return {'state': 'absent', 'version': None}, [
            (STATUS, 0, STATUS_INSTALLED, '', None), ('modprobe -r dattobd', 0, '', '', host.unload),
            ('dkms remove -m dattobd -v 0.12.1 --all', 0, '', '', None), (STATUS, 0, '', '', None)]
    if name == 'absent-trackers':
        _installed(host, trackers=True)
        return {'state': 'absent'}, [(STATUS, 0, STATUS_INSTALLED, '', None)]
    if name == 'absent-running-only':
        _installed(host)
        host.unload()
        return {'state': 'absent'}, [
            (STATUS, 0, STATUS_INSTALLED + 'dattobd/0.12.1, %s, x86_64: installed\n' % OTHER_KERNEL, '', None),
            ('dkms remove -m dattobd -v 0.12.1 -k %s' % K, 0, '', '', None),
            (STATUS, 0, 'dattobd/0.12.1, %s, x86_64: installed\n' % OTHER_KERNEL, '', None)]
    if name == 'absent-nothing':
        return {'state': 'absent'}, [(STATUS, 0, '', '', None)]
    raise KeyError(name)


# situation, check_mode, expected changed, expected actions (exact, ordered), expected files / result
TABLE = [
    ('fresh', False, True, [ADD, BUILD, INSTALL, 'write /etc/modprobe.d/dattobd.conf',
                            'write /etc/modules-load.d/dattobd.conf', 'modprobe dattobd'],
     {'conf': DEFAULT_CONF, 'loaded': '0.12.1'}),
    ('fresh', True, True, [ADD, BUILD, INSTALL, 'write /etc/modprobe.d/dattobd.conf',
                           'write /etc/modules-load.d/dattobd.conf', 'modprobe dattobd'],
     {'conf': None, 'loaded': None}),
    ('fresh-params', False, True, [ADD, BUILD, INSTALL, 'write /etc/modprobe.d/dattobd.conf',
                                   'write /etc/modules-load.d/dattobd.conf', 'modprobe dattobd max_snap_devices=64'],
     {'conf': CONF, 'loaded': '0.12.1'}),
    ('converged', False, False, [], {'conf': DEFAULT_CONF, 'loaded': '0.12.1'}),
    ('converged-trackers', False, False, [], {'trackers': 1}),
    ('added-only', False, True, [BUILD, INSTALL, 'modprobe dattobd'], {'loaded': '0.12.1'}),
    ('built-only', False, True, [INSTALL, 'modprobe dattobd'], {'loaded': '0.12.1'}),
    ('params-change', False, True, ['write /etc/modprobe.d/dattobd.conf', 'modprobe -r dattobd',
                                    'modprobe dattobd max_snap_devices=64'], {'conf': CONF}),
    ('params-change', True, True, ['write /etc/modprobe.d/dattobd.conf', 'modprobe -r dattobd',
                                   'modprobe dattobd max_snap_devices=64'], {'conf': DEFAULT_CONF}),
    ('params-change-trackers-force', False, True, ['write /etc/modprobe.d/dattobd.conf', 'modprobe -r dattobd',
                                                   'modprobe dattobd max_snap_devices=64'], {'conf': CONF}),
    ('params-change-no-reload', False, True, ['write /etc/modprobe.d/dattobd.conf'],
     {'conf': CONF, 'reload_required': True}),
    ('hidden-param-change', False, True, ['write /etc/modprobe.d/dattobd.conf', 'modprobe -r dattobd',
                                          'modprobe dattobd'], {'conf': DEFAULT_CONF}),
    ('debug-runtime', False, True, ['write /etc/modprobe.d/dattobd.conf', 'write 1 to /sys/module/dattobd/parameters/debug'],
     {'debug': '1\n'}),
    ('upgrade', False, True, [ADD, BUILD, 'dkms remove -m dattobd -v 0.12.0 --all', INSTALL, 'modprobe -r dattobd',
                              'modprobe dattobd'], {'loaded': '0.12.1'}),
    ('upgrade-no-reload', False, True, [ADD, BUILD, 'dkms remove -m dattobd -v 0.12.0 --all', INSTALL],
     {'loaded': '0.12.0', 'reload_required': True}),
    ('all-kernels', False, True, [ADD, BUILD, 'dkms build -m dattobd -v 0.12.1 -k %s' % OTHER_KERNEL, INSTALL,
                                  'dkms install -m dattobd -v 0.12.1 -k %s' % OTHER_KERNEL],
     {'conf': None, 'loaded': None, 'warn': 'Kernel headers for 6.1.0-9-amd64 are missing'}),
    ('absent', False, True, ['modprobe -r dattobd', 'dkms remove -m dattobd -v 0.12.1 --all',
                             'remove /etc/modprobe.d/dattobd.conf', 'remove /etc/modules-load.d/dattobd.conf'],
     {'conf': None, 'loaded': None}),
    ('absent-running-only', False, True, ['dkms remove -m dattobd -v 0.12.1 -k %s' % K], {'conf': DEFAULT_CONF}),
    ('absent-nothing', False, False, [], {'conf': None}),
]


@pytest.mark.parametrize('situation, check_mode, changed, actions, expect', TABLE,
                         ids=['%s%s' % (t[0], '-check' if t[1] else '') for t in TABLE])
def test_engine_table(host, situation, check_mode, changed, actions, expect):
    params, script = _setup(host, situation)
    if check_mode:
        # only the read-only status call runs in check mode
        script = script[:1]
    for cmd, rc, out, err, effect in script:
        host.expect(cmd, rc, out, err, effect)
    module = FakeModule(params, check_mode=check_mode, diff=True)
    result = engine_run.module_runner(module, _ctx(host))
    assert result['changed'] is changed
    assert result['actions'] == actions
    assert host.script == [], 'scripted commands not run: %r' % host.script
    # every command that ran is exactly the ordered action list (plus the read-only status calls)
    ran = [c for c in host.commands if c != STATUS]
    if check_mode:
        assert ran == []
    else:
        assert ran == [a for a in actions if not a.startswith(('write', 'remove'))]
    if 'conf' in expect:
        assert host.read(_dkms.MODPROBE_CONF) == expect['conf']
    if 'loaded' in expect:
        assert result['versions']['loaded'] == expect['loaded']
    if 'reload_required' in expect:
        assert result['reload_required'] is expect['reload_required']
        assert any('must be reloaded' in w for w in module.warnings)
    if 'trackers' in expect:
        assert result['trackers'] == expect['trackers']
    if 'debug' in expect:
        assert host.read('/sys/module/dattobd/parameters/debug') == expect['debug']
    if 'warn' in expect:
        assert any(expect['warn'] in w for w in module.warnings)
    assert 'before' in result['diff'] and 'after' in result['diff']
    if not check_mode and situation.startswith(('fresh', 'converged')):
        assert host.read(_dkms.MODULES_LOAD_CONF) == LOAD_CONF


def test_second_run_is_idempotent(host):
    params, script = _setup(host, 'fresh')
    for s in script:
        host.expect(*s)
    assert engine_run.module_runner(FakeModule(params), _ctx(host))['changed'] is True
    host.expect(STATUS, 0, STATUS_INSTALLED)
    result = engine_run.module_runner(FakeModule(params), _ctx(host))
    assert result['changed'] is False
    assert result['actions'] == []


REFUSALS = [
    ('params-change-trackers', 'Refusing to reload dattobd (load-time parameter max_snap_devices is 24, wanted 64)'),
    ('upgrade-trackers', 'Refusing to reload dattobd (loaded version 0.12.0 differs from wanted 0.12.1)'),
    ('absent-trackers', 'Refusing to unload dattobd: 1 dattobd tracker(s) exist: minor 0 on /dev/vdb1'),
]


@pytest.mark.parametrize('situation, message', REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refuses_with_trackers(host, situation, message):
    params, script = _setup(host, situation)
    for s in script:
        host.expect(*s)
    before = host.read(_dkms.MODPROBE_CONF)
    with pytest.raises(_dkms.DattobdError) as exc:
        engine_run.module_runner(FakeModule(params), _ctx(host))
    assert message in exc.value.msg
    assert 'force=true' in exc.value.hint
    assert host.commands == [STATUS]
    assert host.read(_dkms.MODPROBE_CONF) == before


def test_build_failure_reports_make_log_tail(host):
    host.write('/var/lib/dkms/dattobd/0.12.1/build/make.log',
               '\n'.join('line %d' % i for i in range(100)) + '\nsrc/blkdev.c:42: error: implicit declaration\n')
    for cmd, rc, err in ((STATUS, 0, ''), (ADD, 0, ''), (BUILD, 10, 'Error! Bad return status for module build')):
        host.expect(cmd, rc, '', err)
    with pytest.raises(Failed) as exc:
        engine_run.module_runner(FakeModule({}), _ctx(host))
    res = exc.value.args[0]
    assert 'DKMS build of dattobd 0.12.1 for kernel %s failed (rc=10)' % K in res['msg']
    assert res['make_log_tail'][-1] == 'src/blkdev.c:42: error: implicit declaration'
    assert len(res['make_log_tail']) == _dkms.MAKE_LOG_LINES
    assert res['actions'][:3] == [ADD, BUILD, INSTALL]
    assert host.read(_dkms.MODPROBE_CONF) is None  # nothing written after the failure


def test_build_failure_system_map(host):
    for cmd, rc, out in ((STATUS, 0, ''), (ADD, 0, ''),
                         (BUILD, 1, 'System.map file not found for kernel version %s' % K)):
        host.expect(cmd, rc, out)
    with pytest.raises(Failed) as exc:
        engine_run.module_runner(FakeModule({}), _ctx(host))
    assert 'linux-image-%s-dbg' % K in exc.value.args[0]['msg']


@pytest.mark.parametrize('stderr', ['modprobe: ERROR: could not insert \'dattobd\': Required key not available',
                                    'modprobe: ERROR: could not insert \'dattobd\': Key was rejected by service'])
def test_secure_boot_rejection(host, stderr):
    _installed(host)
    host.unload()
    host.expect(STATUS, 0, STATUS_INSTALLED)
    host.expect('modprobe dattobd', 1, '', stderr)
    with pytest.raises(Failed) as exc:
        engine_run.module_runner(FakeModule({}), _ctx(host))
    res = exc.value.args[0]
    assert res['secure_boot'] is True
    assert 'mokutil --import /var/lib/dkms/mok.pub' in res['msg']
    assert 'Secure Boot' in res['msg']


def test_loaded_version_mismatch_after_load(host):
    _installed(host)
    host.unload()
    host.expect(STATUS, 0, STATUS_INSTALLED)
    host.expect('modprobe dattobd', 0, '', '', lambda: host.load(version='0.11.10'))
    with pytest.raises(_dkms.DattobdError) as exc:
        engine_run.module_runner(FakeModule({}), _ctx(host))
    assert 'Loaded dattobd is 0.11.10 but 0.12.1 is installed' in exc.value.msg


def test_missing_headers_names_package(host):
    host.kernel('6.1.0-31-amd64', headers=False)
    host.write('/etc/os-release', 'ID=debian\n')
    host.expect(STATUS, 0, '')
    ctx = _ctx(host)
    ctx.kernel = '6.1.0-31-amd64'
    with pytest.raises(_dkms.DattobdError) as exc:
        engine_run.module_runner(FakeModule({}), ctx)
    assert 'Kernel headers for 6.1.0-31-amd64 are missing' in exc.value.msg
    assert 'linux-headers-6.1.0-31-amd64' in exc.value.hint


BAD_SOURCES = [
    ('missing', 'DKMS source /usr/src/dattobd-0.12.1 is missing'),
    ('no-dkms-conf', 'has no dkms.conf'),
    ('not-dattobd', 'is not a dattobd source tree'),
    ('other-name', 'does not declare PACKAGE_NAME="dattobd"'),
    ('other-version', 'holds dattobd 0.11.10, not 0.12.1'),
]


@pytest.mark.parametrize('kind, message', BAD_SOURCES, ids=[b[0] for b in BAD_SOURCES])
def test_bad_source(tmp_path, monkeypatch, kind, message):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(_dkms._runner, 'run_timed', host.run_timed)
    host.kernel(K)
    if kind == 'no-dkms-conf':
        host.source(dkms_conf=False)
    elif kind == 'not-dattobd':
        host.source(header=False)
    elif kind == 'other-name':
        host.source(name='elastio-snap')
    elif kind == 'other-version':
        host.source(header_version='0.11.10')
    host.expect(STATUS, 0, '')
    with pytest.raises(_dkms.DattobdError) as exc:
        engine_run.module_runner(FakeModule({}), _ctx(host))
    assert message in exc.value.msg
    assert host.commands == [STATUS]


def _main(args, monkeypatch):
    patch_exit_fail(monkeypatch)
    return dict({'failed': False}, **run_patched(engine.main, args))


ARGS = [
    ({}, 'state is present but all of the following are missing: version'),
    ({'version': '0.12.1; rm -rf /'}, "Invalid dattobd version '0.12.1; rm -rf /'"),
    ({'version': '0.12.1', 'parameters': {'max_snap_devices': 300}}, 'max_snap_devices=300 is out of range 1..255'),
    ({'version': '0.12.1', 'parameters': {'cow_fallocate_percentage_default': 0}},
     'cow_fallocate_percentage_default=0 is out of range 1..100'),
    ({'version': '0.12.1', 'parameters': {'debug': 2}}, 'value of debug must be one of: 0, 1'),
    ({'version': '0.12.1', 'parameters': {'bogus': 1}}, 'bogus'),
    ({'version': '0.12.1', 'kernels': 'some'}, 'value of kernels must be one of: running, all'),
    ({'version': '0.12.1', 'build_timeout': 0}, 'timeout and build_timeout must be positive'),
]


@pytest.mark.parametrize('args, message', ARGS)
def test_argument_validation(monkeypatch, args, message):
    res = _main(args, monkeypatch)
    assert res['failed'] is True
    assert message in res['msg']


# --- kernel gate (issue 19) ----------------------------------------------------------------------

class GateModule(FakeModule):
    """A module that finds modinfo and grub-set-default (the gate's commands)."""

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return name if name in ('modinfo', 'grub-set-default') else None


GATE_CFG = '/boot/grub/grub.cfg'


def _gate_host(host, saved=True):
    from ...conftest import FIXTURES
    with open(os.path.join(FIXTURES, 'kernels', 'grub.cfg.debian12-4-kernels' + ('-saved' if saved else ''))) as f:
        cfg = f.read()
    # the fixture's kernels are 6.1.0-57/-58, 6.12.57+deb12, 6.1.0-9: boot K (running) and OTHER_KERNEL
    cfg = cfg.replace('6.1.0-57-amd64', K).replace('6.12.57+deb12-amd64', OTHER_KERNEL)
    host.write(GATE_CFG, cfg)
    host.kernel(OTHER_KERNEL, headers=True)
    for k in (K, OTHER_KERNEL):
        host.write('/boot/vmlinuz-%s' % k, 'x')


def _modinfo_ok(kernel):
    return ('filename:       /lib/modules/%s/updates/dkms/dattobd.ko\nversion:        0.12.1\n'
            'vermagic:       %s SMP preempt mod_unload modversions \n' % (kernel, kernel))


FAILED_BUILD = ('dkms build -m dattobd -v 0.12.1 -k %s' % OTHER_KERNEL, 10, '',
                'Error! Bad return status for module build on kernel: %s (x86_64)' % OTHER_KERNEL, None)


@pytest.mark.parametrize('gate, check_mode', [('report', False), ('default', False), ('default', True)])
def test_gate_other_kernel_build_fails(host, gate, check_mode):
    """kernels=all: the build for the newer, not running kernel fails; the running kernel's module is
    installed, the failure and the make.log tail are in kernel_gate, and 'default' points GRUB back."""
    _gate_host(host)
    host.write('/var/lib/dkms/dattobd/0.12.1/build/make.log', 'line 1\nerror: implicit declaration of bdev_x\n')
    status_after = STATUS_INSTALLED + 'dattobd/0.12.1, %s, x86_64: built\n' % OTHER_KERNEL
    script = [(STATUS, 0, '', '', None)]
    if not check_mode:
        script += [(ADD, 0, '', '', None), (BUILD, 0, '', '', None), FAILED_BUILD, (INSTALL, 0, '', '', None),
                   (STATUS, 0, status_after, '', None)]
    script += [('modinfo -k %s dattobd' % K, 0, _modinfo_ok(K) if not check_mode else '', '', None),
               ('modinfo -k %s dattobd' % OTHER_KERNEL, 1, '', 'modinfo: ERROR: Module dattobd not found.', None)]
    if check_mode:
        script[-2] = ('modinfo -k %s dattobd' % K, 1, '', 'modinfo: ERROR: Module dattobd not found.', None)
    if gate == 'default' and not check_mode:
        script += [("grub-set-default 'gnulinux-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b>gnulinux-%s-advanced-"
                    "1fabafd4-d524-492c-83df-fcc9d7d0539b'" % K, 0, '', '', None)]
    for cmd, rc, out, err, effect in script:
        host.expect(cmd, rc, out, err, effect)
    module = GateModule({'kernels': 'all', 'load': False, 'persist': False, 'kernel_gate': gate},
                        check_mode=check_mode)
    result = engine_run.module_runner(module, _ctx(host))
    assert host.script == [], 'scripted commands not run: %r' % host.script
    g = result['kernel_gate']
    assert g['running'] == K and g['next_boot'] == OTHER_KERNEL and g['next_boot_ok'] is False
    by = dict((e['release'], e) for e in g['kernels'])
    if check_mode:
        assert by[K]['loads'] is False  # nothing built yet: the plan reports what the host has now
        assert g['action'] is None  # no working kernel to go back to yet
        return
    assert by[K] == dict(by[K], build=True, loads=True)
    assert by[OTHER_KERNEL]['build'] is True and by[OTHER_KERNEL]['loads'] is False
    assert by[OTHER_KERNEL]['reason'].startswith('build failed: DKMS build of dattobd 0.12.1 for kernel %s' % OTHER_KERNEL)
    assert by[OTHER_KERNEL]['build_log_tail'][-1] == 'error: implicit declaration of bdev_x'
    assert any('next boot starts kernel %s' % OTHER_KERNEL in w for w in module.warnings)
    if gate == 'default':
        assert g['action'].startswith('grub-set-default ')
        assert result['actions'][-1] == g['action'] and result['changed'] is True
    else:
        assert g['action'] is None and not any(a.startswith('grub') for a in result['actions'])


def test_gate_running_kernel_build_failure_still_fails(host):
    _gate_host(host)
    for cmd, rc, out, err, effect in [(STATUS, 0, '', '', None), (ADD, 0, '', '', None),
                                      (BUILD, 10, '', 'Error! Bad return status', None)]:
        host.expect(cmd, rc, out, err, effect)
    module = GateModule({'kernels': 'all', 'load': False, 'persist': False})
    with pytest.raises(Failed) as exc:
        engine_run.module_runner(module, _ctx(host))
    assert 'for kernel %s failed' % K in exc.value.args[0]['msg']


def test_gate_default_not_saved_uses_grub_reboot(host):
    _gate_host(host, saved=False)
    module = GateModule({'kernel_gate': 'default', 'load': False, 'persist': False})
    module.get_bin_path = lambda name, required=False, opt_dirs=None: (
        name if name in ('modinfo', 'grub-reboot') else None)
    for cmd, rc, out, err, effect in [
            (STATUS, 0, STATUS_INSTALLED, '', None),
            ('modinfo -k %s dattobd' % K, 0, _modinfo_ok(K), '', None),
            ('modinfo -k %s dattobd' % OTHER_KERNEL, 1, '', 'modinfo: ERROR: Module dattobd not found.', None),
            ("grub-reboot 'gnulinux-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b>gnulinux-%s-advanced-"
             "1fabafd4-d524-492c-83df-fcc9d7d0539b'" % K, 0, '', '', None)]:
        host.expect(cmd, rc, out, err, effect)
    result = engine_run.module_runner(module, _ctx(host))
    assert host.script == []
    assert result['kernel_gate']['action'].startswith('grub-reboot ')
    assert any('GRUB_DEFAULT=saved' in w for w in module.warnings)


def test_gate_action_tool_missing_fails_before_running(host):
    _gate_host(host)
    module = GateModule({'kernel_gate': 'default', 'load': False, 'persist': False})
    module.get_bin_path = lambda name, required=False, opt_dirs=None: 'modinfo' if name == 'modinfo' else None
    for cmd, rc, out, err, effect in [
            (STATUS, 0, STATUS_INSTALLED, '', None),
            ('modinfo -k %s dattobd' % K, 0, _modinfo_ok(K), '', None),
            ('modinfo -k %s dattobd' % OTHER_KERNEL, 1, '', 'modinfo: ERROR: Module dattobd not found.', None)]:
        host.expect(cmd, rc, out, err, effect)
    with pytest.raises(Failed) as exc:
        engine_run.module_runner(module, _ctx(host))
    assert 'needs grub-set-default' in exc.value.args[0]['msg']
    assert exc.value.args[0]['kernel_gate']['next_boot_ok'] is False


def test_conflicting_driver_refuses_install_before_any_change(host):
    host.write('/proc/modules', 'veeamsnap 253952 0 - Live 0x0000000000000000 (OE)\next4 1007616 2 - Live 0x0\n')
    host.write('/lib/modules/%s/extra/elastio-snap.ko.xz' % K, 'x')
    host.expect(STATUS)
    module = FakeModule({})
    with pytest.raises(DattobdError) as exc:
        engine_run.module_runner(module, _ctx(host))
    res = exc.value.to_result()
    assert 'Another snapshot driver' in res['msg'] and 'veeamsnap' in res['msg'] and 'elastio-snap' in res['msg']
    assert 'allow_conflicts' in res['hint']
    assert [c[0] for c in host.calls] == [STATUS]  # only the read-only dkms status ran
    assert sorted(c['driver'] for c in res['conflicts']) == ['elastio_snap', 'veeamsnap']
    # told to continue: the normal install runs
    for cmd in (STATUS, ADD, BUILD, INSTALL):
        host.expect(cmd)
    host.expect('modprobe dattobd', effect=host.load)
    host.expect(STATUS, out=STATUS_INSTALLED)
    result = engine_run.module_runner(FakeModule({'allow_conflicts': True}), _ctx(host))
    assert result['changed'] is True and host.script == []


def test_a_driver_installed_only_through_dkms_is_refused_as_info_reports_it(host):
    # no module loaded, no module file: only DKMS knows veeamsnap. The info module lists it as a conflict
    # (one `dkms status` of every module); the engine module reads the same answer and refuses
    status = 'veeamsnap/6.1.2.1781, %s, x86_64: added\nveeamsnap/6.1.2.1781: added\n' % K
    host.expect(STATUS, out=status)
    with pytest.raises(DattobdError) as exc:
        engine_run.module_runner(FakeModule({}), _ctx(host))
    res = exc.value.to_result()
    assert 'Another snapshot driver' in res['msg'] and 'veeamsnap' in res['msg']
    assert [c['driver'] for c in res['conflicts']] == ['veeamsnap']
    assert res['conflicts'][0]['dkms'] and not res['conflicts'][0]['loaded']
    assert [c[0] for c in host.calls] == [STATUS]  # nothing but the read
