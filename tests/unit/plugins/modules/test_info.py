# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""info module: golden /proc/datto-info samples, driver not loaded, wedged driver, DKMS, reload drift."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible.module_utils import basic

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import kernels, procinfo, reload as reload_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import host_status, wedge
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout
from ansible_collections.snapfleet.dattobd.plugins.modules import info

from ...conftest import GOLDEN
from .utils import patch_exit_fail, run_patched
from ..module_utils.fakehost import VDB, FakeHost as StrayFake, FakeStat

INFO_DIR = os.path.join(GOLDEN, 'datto-info')


def sample(name):
    with open(os.path.join(INFO_DIR, 'datto-info.%s.json' % name)) as f:
        return f.read()


@pytest.fixture(autouse=True)
def patch_exit(monkeypatch):
    patch_exit_fail(monkeypatch)


class FakeHost(host_status.InfoHost):
    def __init__(self, module, proc=None, bins=None, runs=None, params=None, version='0.12.1'):
        super(FakeHost, self).__init__()
        self.proc = proc
        self.bins = bins or {}
        self.runs = runs or {}
        self.params = params if params is not None else {'max_snap_devices': '24', 'debug': '0'}
        self.version = version
        self.ran = []

    def procinfo(self, timeout):
        if isinstance(self.proc, Exception):
            raise self.proc
        return procinfo.parse(self.proc) if self.proc is not None else procinfo.ProcInfo(False)

    def driver_version(self):
        return self.version

    def module_parameters(self):
        return dict(self.params)

    def max_snap_devices(self):
        return 24

    def tools_record(self):
        return self.record

    record = None  # the engine role's record of tools built from source

    def bin(self, name, path=None):
        return path or self.bins.get(name)

    def run(self, argv, timeout):
        self.ran.append(argv)
        result = self.runs[argv[0]]
        if isinstance(result, Exception):
            raise result
        return result

    def kernel(self):
        return '6.1.0-56-amd64'

    def kernel_host(self, timeout):
        # no kernel tree and no tools: the gate and the conflict scan find nothing (tested below)
        return kernels.Host(self.run, lambda name: None, root=self.kernel_root, timeout=timeout)

    kernel_root = '/nonexistent-kernel-root'

    def devices_host(self):
        return self.devices if self.devices is not None else StrayFake()

    devices = None


def run(args, **host_kw):
    made = {}

    def make(module):
        made['host'] = FakeHost(module, **host_kw)
        return made['host']

    saved = info.make_host
    info.make_host = make
    try:
        return run_patched(info.main, args), made.get('host')
    finally:
        info.make_host = saved


BINS = {'dbdctl': '/usr/bin/dbdctl', 'update-img': '/usr/bin/update-img', 'dkms': '/usr/sbin/dkms',
        'dpkg-query': '/usr/bin/dpkg-query'}
RUNS = {'/usr/sbin/dkms': (0, 'dattobd/0.12.1, 6.1.0-56-amd64, x86_64: installed\n'
                              'dattobd/0.12.1, 6.1.0-50-amd64, x86_64: built\n', ''),
        '/usr/bin/dpkg-query': (0, '0.12.1-1', '')}


@pytest.mark.parametrize('name, states', [
    ('empty', []),
    ('state-0', [(0, 'dormant incremental')]),
    ('state-3', [(3, 'active snapshot')]),
    ('state-3-error', [(3, 'failed active snapshot (EFBIG)')]),
    ('state-5-error', [(5, 'failed unverified snapshot (ENOENT)')]),
])
def test_loaded(name, states, tmp_path):
    result, host = run({'reload_dir': str(tmp_path)}, proc=sample(name), bins=BINS, runs=RUNS)
    assert result['changed'] is False and not result.get('failed')
    assert result['loaded'] is True
    assert result['driver_version'] == '0.12.1'
    assert [(t['state'], t['state_name']) for t in result['trackers']] == states
    assert len(result['free_minors']) == 24 - len(states)
    assert result['tools'] == {'dbdctl': '/usr/bin/dbdctl', 'update_img': '/usr/bin/update-img',
                               'version': '0.12.1-1'}
    assert result['dkms']['state'] == 'installed'
    assert result['dkms']['kernel'] == '6.1.0-56-amd64'
    assert result['actions'] == ["/usr/bin/dpkg-query -W '-f=${Version}' dattobd-utils",
                                 '/usr/sbin/dkms status']
    assert result['summary'].startswith('dattobd 0.12.1 loaded, %d tracker' % len(states))
    # no scripts: in sync only when there is no tracker
    assert result['reload']['in_sync'] is (not states)


def test_one_dkms_status_serves_dattobd_and_the_conflict_scan(tmp_path):
    """dkms is slow (a shell script): one `dkms status` gives dattobd's entries and the other drivers'."""
    runs = dict(RUNS, **{'/usr/sbin/dkms': (0, 'dattobd/0.12.1, 6.1.0-56-amd64, x86_64: installed\n'
                                               'elastio-snap/0.12.0, 6.1.0-56-amd64, x86_64: installed\n', '')})
    result, host = run({'reload_dir': str(tmp_path)}, proc=sample('empty'), bins=BINS, runs=runs)
    assert [argv for argv in host.ran if argv[0] == '/usr/sbin/dkms'] == [['/usr/sbin/dkms', 'status']]
    assert [(e['version'], e['state']) for e in result['dkms']['entries']] == [('0.12.1', 'installed')]
    assert [(c['driver'], c['dkms']) for c in result['conflicts']] == [
        ('elastio_snap', ['elastio-snap/0.12.0, 6.1.0-56-amd64, x86_64: installed'])]
    # a failed `dkms status` is an error of the DKMS view and no conflict is made up from it
    runs['/usr/sbin/dkms'] = (3, 'elastio-snap/0.12.0: added\n', 'dkms: broken\n')
    result, host = run({'reload_dir': str(tmp_path)}, proc=sample('empty'), bins=BINS, runs=runs)
    assert result['dkms']['error'] == 'dkms: broken' and result['conflicts'] == []


def test_not_loaded_says_so(tmp_path):
    result, host = run({'reload_dir': str(tmp_path)}, proc=None, bins={}, runs={}, params={})
    assert result['loaded'] is False
    assert result['driver_version'] is None
    assert result['trackers'] == [] and result['free_minors'] == []
    assert 'not loaded' in result['summary']
    assert result['tools'] == {'dbdctl': None, 'update_img': None, 'version': None}
    assert result['dkms']['available'] is False
    assert result['actions'] == []


def test_not_loaded_with_scripts_and_dkms(tmp_path):
    reload_lib.ensure(0, '/dev/disk/by-uuid/x', '/.datto_0_1', 'incremental', directory=str(tmp_path))
    runs = {'/usr/sbin/dkms': (0, 'dattobd/0.12.1: added\n', '')}
    result, host = run({'reload_dir': str(tmp_path)}, proc=None, bins={'dkms': '/usr/sbin/dkms'}, runs=runs)
    assert result['dkms']['state'] == 'added'
    assert '1 reload script(s) are waiting' in result['summary']
    assert 'DKMS has it added' in result['summary']


def test_drift_between_scripts_and_trackers(tmp_path):
    reload_lib.ensure(0, '/dev/vdb', '/.old', 'snapshot', directory=str(tmp_path))
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False}, proc=sample('state-2'), bins={}, runs={})
    assert result['reload']['in_sync'] is False
    problems = set(d['problem'] for d in result['reload']['drift'])
    assert 'mode_mismatch' in problems
    assert 'drift' in result['summary']
    assert len(result['reload']['scripts']) == 1


def test_in_sync(tmp_path):
    reload_lib.ensure(0, '/dev/vdb', '/.datto0', 'incremental', directory=str(tmp_path))
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False}, proc=sample('state-2'), bins={}, runs={})
    assert result['reload']['in_sync'] is True, result['reload']['drift']
    assert 'reload scripts in sync' in result['summary']


def test_wedged_driver_is_reported_and_marked(tmp_path, monkeypatch):
    patch_exit_fail(monkeypatch, collect_warnings=True)
    reload_lib.ensure(0, '/dev/vdb', '/.datto_0_1', 'incremental', directory=str(tmp_path))
    timeout = DriverTimeout('Reading /proc/datto-info did not finish within 60 seconds.', hint='Reboot.', timeout=60)
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False}, proc=timeout)
    assert not result.get('failed'), result
    wedged = result['driver_wedged']
    assert wedged['reason'] == 'reading /proc/datto-info did not finish within 60 seconds'
    assert 'hard reset' in wedged['clears']
    assert result['trackers'] == [] and result['stray_cow_files'] == []
    assert result['reload']['in_sync'] is None and len(result['reload']['scripts']) == 1
    assert 'is wedged since' in result['summary'] and 'hard reset' in result['summary']
    warning = ' '.join(result['warnings'])
    # "wedged" once, besides the recovery advice (which names dattobd_recover_wedged)
    assert warning.count('wedged') == 1 + wedge.RECOVERY.count('wedged') and 'echo b > /proc/sysrq-trigger' in warning
    # marked for the rest of the boot: the next call does not read the driver at all
    wedge.reset()
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False}, proc=AssertionError('read a wedged driver'))
    assert result['driver_wedged']['reason'] == wedged['reason'] and result['driver_wedged']['since'] == wedged['since']


def test_wedge_marker_of_an_earlier_boot_is_ignored(tmp_path):
    wedge.mark(DriverTimeout('x', timeout=60), 'reading /proc/datto-info', boot_id='an-earlier-boot')
    wedge.reset()
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False}, proc=sample('state-2'))
    assert result['driver_wedged'] is None and len(result['trackers']) == 1


def test_parse_error_fails_clearly(tmp_path):
    result, host = run({'reload_dir': str(tmp_path)}, proc='{"x": 1}')
    assert result['failed'] is True
    assert 'devices' in result['msg']


def test_dkms_and_package_errors_are_best_effort(tmp_path):
    runs = {'/usr/sbin/dkms': DriverTimeout('dkms status did not finish within 60 seconds.'),
            '/usr/bin/dpkg-query': (1, '', 'no packages found'),
            '/usr/bin/rpm': DattobdError('Cannot run rpm')}
    bins = dict(BINS, rpm='/usr/bin/rpm')
    result, host = run({'reload_dir': str(tmp_path)}, proc=sample('empty'), bins=bins, runs=runs)
    assert not result.get('failed')
    assert 'did not finish' in result['dkms']['error']
    assert result['tools']['version'] is None
    runs['/usr/sbin/dkms'] = (3, '', 'dkms: broken\n')
    result, host = run({'reload_dir': str(tmp_path)}, proc=sample('empty'), bins=bins, runs=runs)
    assert result['dkms']['error'] == 'dkms: broken'


def test_bad_timeout(tmp_path):
    result, host = run({'reload_dir': str(tmp_path), 'timeout': 0}, proc=sample('empty'))
    assert result['failed'] is True and 'timeout' in result['msg']


def test_real_host_helpers(tmp_path, monkeypatch):
    """InfoHost is the module's only way to the host: each helper reads the right source and can fail."""
    host = host_status.InfoHost()
    assert host.bin('x', path=str(tmp_path / 'missing')) is None
    tool = tmp_path / 'tool'
    tool.write_text('#!/bin/sh\n')
    assert host.bin('x', path=str(tool)) is None          # not executable
    tool.chmod(0o755)
    assert host.bin('x', path=str(tool)) == str(tool)
    params = tmp_path / 'parameters'
    params.mkdir()
    (params / 'debug').write_text('1\n')
    (params / 'max_snap_devices').write_text('24\n')
    (params / 'unreadable').mkdir()
    monkeypatch.setattr(host_status, 'PARAMS_DIR', str(params))
    assert host.module_parameters() == {'debug': '1', 'max_snap_devices': '24', 'unreadable': None}
    monkeypatch.setattr(host_status, 'PARAMS_DIR', str(tmp_path / 'not-loaded'))
    assert host.module_parameters() == {}
    assert host.kernel() == os.uname().release
    assert host.run(['sh', '-c', 'echo out; echo err >&2; exit 3'], 5) == (3, 'out\n', 'err\n')
    assert host.path_kind(str(params)) == 'directory'
    assert host.path_kind(str(tool)) == 'other'
    assert host.path_kind(str(tmp_path / 'gone')) == 'missing'
    assert host.reload_scan(str(tmp_path)) == []
    reload_lib.ensure(3, '/dev/vdb', '/.datto3', 'incremental', directory=str(tmp_path))
    scans = host.reload_scan(str(tmp_path))
    assert [(e['minor'], e['block_device']) for e in scans] == [(3, '/dev/vdb')]
    assert host.reload_compare([], procinfo.ProcInfo(True)) == []
    assert [p['problem'] for p in host.reload_compare(scans, procinfo.ProcInfo(True))] == ['script_without_tracker']
    monkeypatch.setattr(host_status.procinfo, 'max_snap_devices', lambda: 24)
    monkeypatch.setattr(host_status.dbdctl, 'read_driver_version', lambda: '0.12.1')
    monkeypatch.setattr(host_status.procinfo, 'read', lambda timeout: ('read', timeout))
    assert host.max_snap_devices() == 24
    assert host.driver_version() == '0.12.1'
    assert host.procinfo(5) == ('read', 5)


# --- reload_dir and dbdctl_path are checked, never silently trusted ---------------------------

@pytest.fixture
def warned(monkeypatch):
    seen = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, msg: seen.append(msg))
    return seen


def test_relative_reload_dir_is_refused(warned):
    result, host = run({'reload_dir': 'etc/datto/dla', 'dkms': False}, proc=sample('empty'))
    assert result['failed'] is True
    assert 'reload_dir must be an absolute path' in result['msg'] and "'etc/datto/dla'" in result['msg']


@pytest.mark.parametrize('kind', ['missing', 'file'])
def test_reload_dir_missing_or_a_file_warns_and_is_not_in_sync(kind, tmp_path, warned):
    path = tmp_path / 'dla'
    if kind == 'file':
        path.write_text('not a directory\n')
    result, host = run({'reload_dir': str(path), 'dkms': False}, proc=sample('empty'))
    assert not result.get('failed')
    assert result['reload']['in_sync'] is None and result['reload']['scripts'] == []
    assert 'reload scripts in sync' not in result['summary']
    what = 'does not exist' if kind == 'missing' else 'is not a directory'
    assert any(str(path) in w and what in w for w in warned), warned


def real_bin_for_paths(self, name, path=None):
    """The real check of an explicit path; no tool found by name."""
    return host_status.InfoHost.bin(self, name, path) if path else None


@pytest.mark.parametrize('kind', ['missing', 'not-executable', 'directory'])
def test_dbdctl_path_that_is_not_an_executable_warns(kind, tmp_path, warned, monkeypatch):
    path = tmp_path / 'dbdctl'
    if kind == 'not-executable':
        path.write_text('#!/bin/sh\n')
        path.chmod(0o644)
    elif kind == 'directory':
        path.mkdir()
    monkeypatch.setattr(FakeHost, 'bin', real_bin_for_paths)
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False, 'dbdctl_path': str(path)}, proc=sample('empty'))
    assert not result.get('failed')
    assert result['tools']['dbdctl'] is None
    assert any('dbdctl_path' in w and str(path) in w and 'not an executable' in w for w in warned), warned


def test_executable_dbdctl_path_is_used_without_warning(tmp_path, warned, monkeypatch):
    path = tmp_path / 'dbdctl'
    path.write_text('#!/bin/sh\n')
    path.chmod(0o755)
    monkeypatch.setattr(FakeHost, 'bin', real_bin_for_paths)
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False, 'dbdctl_path': str(path)}, proc=sample('empty'))
    assert result['tools']['dbdctl'] == str(path) and warned == []


def test_kernel_gate_and_conflicts_reach_the_result(tmp_path, monkeypatch, warned):
    """info reports every installed kernel, the next boot and other snapshot drivers (issue 19)."""
    root = tmp_path / 'root'
    for k in ('6.1.0-56-amd64', '6.12.57+deb12-amd64'):
        (root / 'lib' / 'modules' / k).mkdir(parents=True)
        (root / 'boot').mkdir(exist_ok=True)
        (root / 'boot' / ('vmlinuz-' + k)).write_text('x')
    (root / 'proc').mkdir()
    (root / 'proc' / 'modules').write_text('blksnap 200704 0 - Live 0x0 (OE)\n')
    modinfo = {'6.1.0-56-amd64': (0, 'filename: /lib/modules/6.1.0-56-amd64/updates/dkms/dattobd.ko\n'
                                     'version: 0.12.1\nvermagic: 6.1.0-56-amd64 SMP preempt mod_unload\n', ''),
               '6.12.57+deb12-amd64': (1, '', 'modinfo: ERROR: Module dattobd not found.\n')}

    def kernel_host(self, timeout):
        def run(argv, t):
            self.ran.append(argv)
            return modinfo[argv[2]]
        return kernels.Host(run, lambda name: name if name == 'modinfo' else None, root=str(root))

    monkeypatch.setattr(FakeHost, 'kernel_host', kernel_host)
    result, host = run({'reload_dir': str(tmp_path)}, proc=sample('empty'), bins=BINS, runs=RUNS)
    gate = result['kernel_gate']
    assert gate['running'] == '6.1.0-56-amd64'
    assert gate['next_boot'] == '6.12.57+deb12-amd64' and gate['next_boot_ok'] is False
    assert [(k['release'], k['build'], k['loads']) for k in gate['kernels']] == [
        ('6.1.0-56-amd64', True, True), ('6.12.57+deb12-amd64', False, False)]
    assert 'modinfo -k 6.12.57+deb12-amd64 dattobd' in result['actions']
    assert [c['driver'] for c in result['conflicts']] == ['blksnap'] and result['conflicts'][0]['loaded'] is True
    assert any('blksnap' in w for w in warned)


def test_stray_cow_files_are_listed(tmp_path, warned):
    """A COW-named file on a tracked filesystem that no tracker, reload script or backup record names."""
    rdir = tmp_path / 'dla'
    rdir.mkdir()
    (rdir / 'reload_snapfleet_3').write_text('#!/bin/sh\n/usr/bin/dbdctl reload-incremental /dev/vdb /.datto_3_4 3\n')
    records = tmp_path / 'records'
    records.mkdir()
    (records / 'x.json').write_text('{"pending_cow_files": [{"path": "/data/.datto_0_5"}]}')
    devices_host = StrayFake(extra=dict(('/data/' + n, FakeStat('file', dev=VDB))
                                        for n in ('.datto_3_4', '.datto_0_5', '.datto_0_6', 'other')))
    FakeHost.devices = devices_host
    try:
        result, host = run({'reload_dir': str(rdir), 'backup_state_dir': str(records)}, proc=sample('empty'),
                           bins=BINS, runs=RUNS)
    finally:
        FakeHost.devices = None
    assert result['stray_cow_files'] == [{'path': '/data/.datto_0_6', 'mount_point': '/data', 'block_device': '/dev/vdb'}]
    assert any('/data/.datto_0_6' in w and 'cleanup=true' in w for w in warned)


def test_bad_cow_name_is_refused(tmp_path):
    result, host = run({'reload_dir': str(tmp_path), 'cow_name': 'no_seq_{minor}'}, proc=sample('empty'))
    assert result['failed'] is True and 'lacks {seq}' in result['msg']


def test_wedged_driver_in_check_mode_writes_no_marker(tmp_path, monkeypatch):
    """info is read-only: in check mode a read that times out is reported, the marker file is not written."""
    patch_exit_fail(monkeypatch, collect_warnings=True)
    timeout = DriverTimeout('Reading /proc/datto-info did not finish within 60 seconds.', hint='Reboot.', timeout=60)
    result, host = run({'reload_dir': str(tmp_path), 'dkms': False, '_ansible_check_mode': True}, proc=timeout)
    assert not result.get('failed'), result
    assert result['driver_wedged']['path'] is None
    assert not os.path.lexists(wedge.marker_path())


def test_tools_version_is_the_engine_modules_answer(tmp_path):
    """Issue 17: info and engine answered "which dattobd tools" differently (info ignored the engine role's
    record of tools built from source and asked rpm for VERSION-RELEASE). One function answers for both now."""
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dkms_facts

    class Recorded(FakeHost):
        record = '0.12.1\n'
    made = {}
    saved = info.make_host
    info.make_host = lambda module: made.setdefault('host', Recorded(module, proc=sample('empty'), bins=BINS, runs=RUNS))
    try:
        result = run_patched(info.main, {'reload_dir': str(tmp_path)})
    finally:
        info.make_host = saved
    assert result['tools']['version'] == '0.12.1'  # the record wins over dpkg's 0.12.1-1
    assert not any('dpkg-query' in a for a in result['actions']), result['actions']
    # without a record: the package manager's answer, the same as the engine module's
    ran = []

    def run(argv):
        ran.append(argv)
        return {'/usr/bin/rpm': (0, '0.12.1', '')}.get(argv[0], (1, '', 'no packages found'))
    assert dkms_facts.query_tools_version(run, None, '/usr/bin/dpkg-query', '/usr/bin/rpm') == ('0.12.1', ran)
    assert ran[1] == ['/usr/bin/rpm', '-q', '--qf', '%{VERSION}', 'dattobd-utils']

    class Ctx(object):
        pass
    ctx, facts = Ctx(), Ctx()
    ctx.run, facts.tools_version = run, None
    assert dkms_facts.tools_version(ctx, facts, '/usr/bin/dpkg-query', '/usr/bin/rpm') == '0.12.1'
