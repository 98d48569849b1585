# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""dbdctl runner: argv building, golden stderr/dmesg -> message table, check mode, refusals."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shlex

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dbdctl
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout

from ...conftest import GOLDEN


class NullWatcher(object):
    """A kernel-log watcher that sees nothing (was dbdctl.NullWatcher; test-only)."""

    def start(self):
        pass

    def collect(self):
        return []


TRANSCRIPT = os.path.join(GOLDEN, 'transcript.jsonl')


def load_transcript():
    with open(TRANSCRIPT) as f:
        return dict((r['seq'], r) for r in (json.loads(line) for line in f if line.strip()))


RECORDS = load_transcript()

# seq of a recorded failing dbdctl call -> (errno name or None, text the message must contain)
GOLDEN_FAILURES = {
    9: (None, 'rejected its arguments'),
    10: (None, 'rejected its arguments'),
    12: (None, 'rejected its arguments'),
    13: (None, 'rejected its arguments'),
    14: (None, 'rejected its arguments'),
    15: (None, 'rejected its arguments'),
    16: (None, 'rejected its arguments'),
    17: (None, 'rejected its arguments'),
    18: (None, 'rejected its arguments'),
    19: ('EINVAL', 'minor 300 is out of range'),
    20: ('ENOENT', 'there is no tracker on minor 7'),
    21: (None, 'rejected its arguments'),
    22: ('ENOENT', 'there is no tracker on minor 7'),
    23: ('ENOENT', 'there is no tracker on minor 7'),
    24: ('ENOENT', 'there is no tracker on minor 7'),
    25: ('ENOENT', 'the block device /dev/nonexistent does not exist'),
    26: ('ENOTBLK', '/etc/hostname is not a block device'),
    27: ('EINVAL', 'the COW file /root/datto-other-fs.cow is not on the filesystem of /dev/vdb'),
    29: ('EBUSY', 'minor 0 is already used by another tracker'),
    31: ('EBUSY', 'minor 0 is already used by another tracker'),
    36: ('ENOENT', 'its directory does not exist'),
    38: ('EINVAL', '/dev/vdb is not mounted read-write'),
    39: (None, 'rejected its arguments'),
    46: ('EBUSY', 'minor 0 is already used by another tracker'),
    47: ('EINVAL', '/dev/vdb is already tracked by another minor'),
    56: ('EBUSY', '/dev/datto0 is busy'),
    58: ('EBUSY', '/dev/datto0 is busy'),
    62: ('EBUSY', '/dev/datto0 is busy'),
    64: ('EBUSY', '/dev/datto0 is busy'),
    66: ('EBUSY', '/dev/datto0 is busy'),
    75: ('EBUSY', '/dev/datto0 is busy'),
    78: ('EBUSY', '/dev/datto0 is busy'),
    81: ('EBUSY', '/dev/datto0 is busy'),
    83: ('EBUSY', '/dev/datto0 is busy'),
    85: ('EBUSY', 'minor 0 is already used by another tracker'),
    87: ('EBUSY', '/dev/datto0 is busy'),
    88: ('ENODEV', 'driver is not loaded'),
    91: ('ENODEV', 'driver is not loaded'),
    93: ('ENODEV', 'driver is not loaded'),
    94: ('ENODEV', 'driver is not loaded'),
    95: ('ENODEV', 'driver is not loaded'),
    109: ('EINVAL', 'in the failed state'),
    117: ('EINVAL', 'in the failed state'),
    123: ('EBUSY', 'minor 0 is already used by another tracker'),
    124: ('EINVAL', '/dev/vdb is already tracked by another minor'),
    137: ('EINVAL', 'is not an active snapshot'),
    141: ('EPERM', 'it is in use'),
    145: ('EINVAL', 'not in active incremental mode'),
    154: ('EINVAL', 'is not an active snapshot'),
    162: ('ENOENT', 'there is no tracker on minor 0'),
    167: (None, 'rejected its arguments'),
    206: ('EINVAL', 'a reload must happen before the read-write mount'),
}


def context_from_argv(argv):
    op = argv[1] if len(argv) > 1 else 'help'
    ctx = {'minor': argv[-1]}
    if op in ('setup-snapshot', 'reload-snapshot', 'reload-incremental') and len(argv) >= 5:
        ctx.update(block_device=argv[-3], cow_file=argv[-2])
    if op == 'transition-to-snapshot' and len(argv) >= 4:
        ctx['cow_file'] = argv[-2]
    return op, ctx


def test_every_recorded_dbdctl_failure_is_in_the_table():
    failing = [seq for seq, r in RECORDS.items()
               if r['cmd'].startswith('dbdctl ') and r['rc'] != 0 and not any(c in r['cmd'] for c in ';&|')]
    failing += [seq for seq, r in RECORDS.items() if r['cmd'] == 'dbdctl' or r['cmd'].startswith('dbdctl --version')]
    assert sorted(failing) == sorted(GOLDEN_FAILURES)


@pytest.mark.parametrize('seq', sorted(GOLDEN_FAILURES))
def test_golden_failure_message(seq):
    record = RECORDS[seq]
    argv = shlex.split(record['cmd'])
    op, ctx = context_from_argv(argv)
    exc = dbdctl.Dbdctl().error(op, argv, record['rc'], record['stdout'], record['stderr'], record['dmesg'], ctx)
    name, text = GOLDEN_FAILURES[seq]
    assert isinstance(exc, dbdctl.DbdctlError)
    assert text in exc.msg, exc.msg
    assert exc.hint
    result = exc.to_result()
    assert result['rc'] == record['rc']
    assert result['dmesg'] == record['dmesg']
    assert result['cmd'] == shlex.join(argv)
    assert result.get('errno_name') == (name or result.get('errno_name'))
    if name is None:
        assert result['errno_name'] == 'EINVAL'


def test_messages_exact():
    r = RECORDS[56]
    exc = dbdctl.Dbdctl().error('transition-to-incremental', ['dbdctl', 'transition-to-incremental', '0'],
                                r['rc'], r['stdout'], r['stderr'], r['dmesg'], {'minor': 0})
    assert exc.full_msg == (
        'dbdctl transition-to-incremental failed (EBUSY): /dev/datto0 is busy: the snapshot device is mounted or '
        'held open (a dd, a backup, a udev probe). Unmount /dev/datto0 and stop every process that has it open '
        '(fuser -v /dev/datto0), then retry.')
    assert exc.details['errno'] == 16


def test_errno_from_dmesg_when_stderr_text_unknown():
    err = 'driver returned an error performing specified action. check dmesg for more info: Weird\n'
    exc = dbdctl.Dbdctl().error('destroy', ['dbdctl', 'destroy', '1'], 255, '', err,
                                ['[ 1.0] datto: device specified does not exist: -2'], {'minor': 1})
    assert exc.details['errno_name'] == 'ENOENT'
    assert 'no tracker on minor 1' in exc.msg


def test_unknown_errno_and_unknown_output():
    err = 'driver returned an error performing specified action. check dmesg for more info: Input/output error\n'
    exc = dbdctl.Dbdctl().error('reconfigure', ['dbdctl', 'reconfigure', '1'], 255, '', err, [], {'minor': 1})
    assert 'EIO' in exc.msg
    assert 'dmesg' in exc.hint
    exc = dbdctl.Dbdctl().error('destroy', ['dbdctl', 'destroy', '1'], 3, '', 'strange\n', [], {'minor': 1})
    assert 'exit code 3: strange' in exc.msg
    err = 'driver returned an error performing specified action. check dmesg for more info: ???\n'
    exc = dbdctl.Dbdctl().error('destroy', ['dbdctl', 'destroy', '1'], 255, '', err, [], {'minor': 1})
    assert 'unknown' in exc.msg


@pytest.mark.parametrize('errno_num, op, text', [
    (28, 'setup-snapshot', 'not enough free space'),
    (27, 'transition-to-incremental', 'too big'),
    (12, 'setup-snapshot', 'memory'),
    (1, 'destroy', 'not permitted'),
    (13, 'destroy', 'permission denied'),
    (21, 'setup-snapshot', 'is a directory'),
])
def test_explain_other_errnos(errno_num, op, text):
    msg, hint = dbdctl.explain(op, errno_num, [], {'minor': 1, 'cow_file': '/x'})
    assert text in msg
    assert hint


def test_errno_from_text():
    assert dbdctl.errno_from_text('Invalid argument') == 22
    assert dbdctl.errno_from_text('Block device required') == 15
    assert dbdctl.errno_from_text('nope') is None
    assert dbdctl.errno_from_text(None) is None


# --- argv -------------------------------------------------------------------------------------

@pytest.mark.parametrize('op, kwargs, argv', [
    ('setup-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='/data/.datto0'),
     ['setup-snapshot', '/dev/vdb', '/data/.datto0', '0']),
    ('setup-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='/data/.dattocf', cache_size=50, fallocate=20),
     ['setup-snapshot', '-c', '50', '-f', '20', '/dev/vdb', '/data/.dattocf', '0']),
    ('setup-snapshot', dict(minor='007', block_device='/dev/vdb', cow_file='/d/x', cache_size='0300'),
     ['setup-snapshot', '-c', '300', '/dev/vdb', '/d/x', '7']),
    ('reload-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='/.dattoBOOT'),
     ['reload-snapshot', '/dev/vdb', '/.dattoBOOT', '0']),
    ('reload-incremental', dict(minor=2, block_device='/dev/vdb', cow_file='/.x', cache_size=10),
     ['reload-incremental', '-c', '10', '/dev/vdb', '/.x', '2']),
    ('destroy', dict(minor=3), ['destroy', '3']),
    ('transition-to-incremental', dict(minor=1), ['transition-to-incremental', '1']),
    ('transition-to-snapshot', dict(minor=1, cow_file='/fix/.cow-seq2', fallocate=25),
     ['transition-to-snapshot', '-f', '25', '/fix/.cow-seq2', '1']),
    ('reconfigure', dict(minor=0, cache_size=100), ['reconfigure', '-c', '100', '0']),
    ('reconfigure', dict(minor=0), ['reconfigure', '0']),
    ('expand-cow-file', dict(minor=0, size=10), ['expand-cow-file', '10', '0']),
    ('reconfigure-auto-expand', dict(minor=0, step=5, reserved=100),
     ['reconfigure-auto-expand', '-r', '100', '5', '0']),
    ('reconfigure-auto-expand', dict(minor=0, step=5), ['reconfigure-auto-expand', '5', '0']),
])
def test_argv(op, kwargs, argv):
    assert dbdctl.Dbdctl('/usr/bin/dbdctl').argv(op, **kwargs) == ['/usr/bin/dbdctl'] + argv


@pytest.mark.parametrize('op, kwargs, message', [
    ('setup-snapshot', dict(minor=-1, block_device='/dev/vdb', cow_file='/x'), 'between'),
    ('setup-snapshot', dict(minor=256, block_device='/dev/vdb', cow_file='/x'), 'between'),
    ('setup-snapshot', dict(minor=True, block_device='/dev/vdb', cow_file='/x'), 'integer'),
    ('setup-snapshot', dict(minor=1.5, block_device='/dev/vdb', cow_file='/x'), 'integer'),
    ('setup-snapshot', dict(minor='0x1', block_device='/dev/vdb', cow_file='/x'), 'decimal'),
    ('setup-snapshot', dict(minor='-1', block_device='/dev/vdb', cow_file='/x'), 'decimal'),
    ('setup-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='relative.cow'), 'absolute'),
    ('setup-snapshot', dict(minor=0, block_device='', cow_file='/x'), 'non-empty'),
    ('setup-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='/x\0y'), 'NUL'),
    ('setup-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='/x', cache_size=-5), 'between'),
    ('setup-snapshot', dict(minor=0, block_device='/dev/vdb', cow_file='/x', fallocate=2 ** 64), 'between'),
    ('transition-to-snapshot', dict(minor=0, cow_file='/x'), 'explicit fallocate'),
    ('transition-to-snapshot', dict(minor=0, cow_file='/x', fallocate=0), 'between'),
    ('expand-cow-file', dict(minor=0, size=0), 'between'),
    ('frobnicate', dict(minor=0), 'Unknown dbdctl operation'),
])
def test_argv_refused(op, kwargs, message):
    with pytest.raises(dbdctl.DbdctlError, match=message):
        dbdctl.Dbdctl().argv(op, **kwargs)


def test_no_leading_zero_ever():
    for value in (0, 1, 8, 10, 300, '0', '00', '0300', '000012'):
        out = dbdctl.number(value, 'x')
        assert out == '0' or not out.startswith('0')


# --- calls ------------------------------------------------------------------------------------

class FakeRunner(object):
    def __init__(self, results):
        self.results = list(results)
        self.calls = []

    def __call__(self, argv, timeout=None):
        self.calls.append((list(argv), timeout))
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


class FakeWatcher(object):
    lines = []

    def start(self):
        self.started = True

    def collect(self):
        return list(self.lines)


def test_call_success_and_actions():
    runner = FakeRunner([(0, '', ''), (0, '', '')])
    d = dbdctl.Dbdctl('/usr/bin/dbdctl', timeout=7, runner=runner, watcher_factory=FakeWatcher)
    d.call('setup-snapshot', minor=0, block_device='/dev/vdb', cow_file='/data/my cow')
    d.call('destroy', minor=0)
    assert d.actions == ["/usr/bin/dbdctl setup-snapshot /dev/vdb '/data/my cow' 0", '/usr/bin/dbdctl destroy 0']
    assert runner.calls[0] == (['/usr/bin/dbdctl', 'setup-snapshot', '/dev/vdb', '/data/my cow', '0'], 7)
    assert d.calls[1]['rc'] == 0


def test_call_failure_replays_golden_dmesg():
    record = RECORDS[27]

    class W(FakeWatcher):
        lines = record['dmesg']

    d = dbdctl.Dbdctl('dbdctl', runner=FakeRunner([(record['rc'], record['stdout'], record['stderr'])]),
                      watcher_factory=W)
    with pytest.raises(dbdctl.DbdctlError) as exc:
        d.call('setup-snapshot', minor=0, block_device='/dev/vdb', cow_file='/root/datto-other-fs.cow')
    assert 'is not on the filesystem' in exc.value.msg
    assert exc.value.details['dmesg'] == record['dmesg']
    assert d.actions == ['dbdctl setup-snapshot /dev/vdb /root/datto-other-fs.cow 0']


def test_check_mode_runs_nothing():
    runner = FakeRunner([])
    d = dbdctl.Dbdctl('dbdctl', check_mode=True, runner=runner, watcher_factory=FakeWatcher)
    d.call('transition-to-snapshot', minor=1, cow_file='/fix/.cow-seq2', fallocate=6)
    assert d.actions == ['dbdctl transition-to-snapshot -f 6 /fix/.cow-seq2 1']
    assert runner.calls == []


def test_timeout_is_reported_with_cmd():
    runner = FakeRunner([DriverTimeout('dbdctl destroy 0 did not finish within 1 seconds.')])
    d = dbdctl.Dbdctl('dbdctl', timeout=1, runner=runner, watcher_factory=FakeWatcher)
    with pytest.raises(DriverTimeout) as exc:
        d.call('destroy', minor=0)
    assert exc.value.details['cmd'] == 'dbdctl destroy 0'
    assert exc.value.details['dmesg'] == []


@pytest.mark.parametrize('version', ['0.12.1', '0.12.0', None, 'garbage'])
def test_refuses_wedging_operations_on_0_12(version):
    runner = FakeRunner([])
    d = dbdctl.Dbdctl('dbdctl', runner=runner, watcher_factory=FakeWatcher, driver_version=version)
    for op, kw in (('expand-cow-file', dict(minor=0, size=10)), ('reconfigure-auto-expand', dict(minor=0, step=5))):
        with pytest.raises(dbdctl.DbdctlError, match='global lock') as exc:
            d.call(op, **kw)
        assert exc.value.hint
    assert runner.calls == [] and d.actions == []


def test_allows_expand_on_other_versions():
    runner = FakeRunner([(0, '', '')])
    d = dbdctl.Dbdctl('dbdctl', runner=runner, watcher_factory=FakeWatcher, driver_version='0.13.0')
    d.call('expand-cow-file', minor=0, size=10)
    assert d.actions == ['dbdctl expand-cow-file 10 0']


def test_parse_version():
    assert dbdctl.parse_version('0.12.1') == (0, 12, 1)
    assert dbdctl.parse_version('0.11') == (0, 11, 0)
    assert dbdctl.parse_version('x') is None
    assert dbdctl.parse_version(None) is None


def test_read_driver_version(tmp_path):
    p = tmp_path / 'version'
    p.write_text('0.12.1\n')
    assert dbdctl.read_driver_version(str(p)) == '0.12.1'
    assert dbdctl.read_driver_version(str(tmp_path / 'missing')) is None


def test_kmsg_watcher_on_a_file(tmp_path):
    p = tmp_path / 'kmsg'
    p.write_bytes(b'6,1,1000,-;old line\n')
    w = dbdctl.KmsgWatcher(str(p))
    w.start()
    with open(str(p), 'ab') as f:
        f.write(b'3,2,1665130159,-;datto: minor number specified is out of range: -22\n')
    assert w.collect() == ['[ 1665.130159] datto: minor number specified is out of range: -22']
    assert w.fd is None
    missing = dbdctl.KmsgWatcher(str(tmp_path / 'none'), dmesg=None)
    missing.start()
    assert missing.collect() == []
    assert NullWatcher().collect() == []
    NullWatcher().start()


class FakeDmesg(object):
    """A runner that answers successive ``dmesg`` calls from a list of (rc, stdout) or exceptions."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, argv, timeout=None):
        self.calls.append((list(argv), timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer[0], answer[1], ''


def test_kmsg_watcher_falls_back_to_dmesg(tmp_path):
    before = '[  10.000001] boot line\n[  12.500000] datto: old failure\n'
    after = before + ('[  12.500000] datto: old failure\n'
                      '[  13.000000] datto: error opening cow file: -2\n'
                      'continuation without a stamp\n'
                      '[  14.250000] datto: second line\n')
    fake = FakeDmesg([(0, before), (0, after)])
    w = dbdctl.KmsgWatcher(str(tmp_path / 'no-kmsg'), runner=fake)
    w.start()
    assert w.fd is None
    assert w.collect() == ['[  13.000000] datto: error opening cow file: -2', '[  14.250000] datto: second line']
    assert [c[0] for c in fake.calls] == [['dmesg'], ['dmesg']]
    assert all(c[1] and c[1] <= 10 for c in fake.calls)
    # Collected once: a second collect does not run dmesg again.
    assert w.collect() == []
    assert len(fake.calls) == 2


def test_kmsg_watcher_dmesg_empty_buffer_then_lines(tmp_path):
    fake = FakeDmesg([(0, ''), (0, '[   1.000000] datto: first\n')])
    w = dbdctl.KmsgWatcher(str(tmp_path / 'no-kmsg'), runner=fake)
    w.start()
    assert w.collect() == ['[   1.000000] datto: first']


@pytest.mark.parametrize('first', [(1, ''), DattobdError('Cannot run dmesg: not found.')])
def test_kmsg_watcher_without_kmsg_or_dmesg(tmp_path, first):
    fake = FakeDmesg([first])
    w = dbdctl.KmsgWatcher(str(tmp_path / 'no-kmsg'), runner=fake)
    w.start()
    assert w.collect() == []
    assert len(fake.calls) == 1


def test_kmsg_watcher_dmesg_failing_at_collect(tmp_path):
    fake = FakeDmesg([(0, '[   1.000000] old\n'), (1, 'dmesg: read kernel buffer failed')])
    w = dbdctl.KmsgWatcher(str(tmp_path / 'no-kmsg'), runner=fake)
    w.start()
    assert w.collect() == []


def test_dmesg_stamp():
    assert dbdctl.dmesg_stamp('[ 1665.130159] datto: x') == 1665.130159
    assert dbdctl.dmesg_stamp('[12.5] y') == 12.5
    assert dbdctl.dmesg_stamp('datto: no stamp') is None


def test_format_kmsg_record():
    assert dbdctl.format_kmsg_record(b'no separator') is None
    assert dbdctl.format_kmsg_record(b'6,1,x,-;text\n continuation') == 'text'


def test_find(tmp_path):
    exe = tmp_path / 'dbdctl'
    exe.write_text('#!/bin/sh\n')
    os.chmod(str(exe), 0o755)
    assert dbdctl.find(path=str(exe)) == str(exe)
    with pytest.raises(dbdctl.DbdctlError, match='not an executable'):
        dbdctl.find(path=str(tmp_path / 'nope'))

    class M(object):
        def get_bin_path(self, name, required=False, opt_dirs=None):
            return '/opt/bin/' + name

    assert dbdctl.find(M()) == '/opt/bin/dbdctl'

    class N(object):
        def get_bin_path(self, name, required=False, opt_dirs=None):
            return None

    old = dbdctl.DEFAULT_PATHS
    try:
        dbdctl.DEFAULT_PATHS = (str(tmp_path / 'nope'),)
        with pytest.raises(dbdctl.DbdctlError, match='not found'):
            dbdctl.find(N())
        dbdctl.DEFAULT_PATHS = (str(exe),)
        assert dbdctl.find(N()) == str(exe)
    finally:
        dbdctl.DEFAULT_PATHS = old
    assert issubclass(dbdctl.DbdctlError, DattobdError)


BUSY = (255, '', 'driver returned an error performing specified action. check dmesg for more info: '
                 'Device or resource busy\n')


def _busy_dbdctl(results, mounted=False):
    d = dbdctl.Dbdctl('dbdctl', runner=FakeRunner(results), watcher_factory=FakeWatcher)
    d.slept, d.settled = [], []
    d.sleep = d.slept.append
    d.settle = lambda: d.settled.append(True)
    d.is_mounted = lambda minor: mounted
    return d


def test_ebusy_from_a_udev_probe_is_retried():
    d = _busy_dbdctl([BUSY, BUSY, (0, '', '')])
    d.call('transition-to-incremental', minor=0)
    assert d.slept == [0.5, 1.0] and len(d.settled) == 2
    assert d.actions == ['dbdctl transition-to-incremental 0',
                         '(EBUSY, /dev/datto0 not mounted: udevadm settle, retry in 0.5 s)',
                         'dbdctl transition-to-incremental 0',
                         '(EBUSY, /dev/datto0 not mounted: udevadm settle, retry in 1.0 s)',
                         'dbdctl transition-to-incremental 0']


def test_ebusy_gives_up_after_the_retries_and_when_mounted():
    d = _busy_dbdctl([BUSY] * 4)
    with pytest.raises(dbdctl.DbdctlError) as exc:
        d.call('destroy', minor=2)
    assert exc.value.details['errno_name'] == 'EBUSY' and d.slept == [0.5, 1.0, 2.0]
    d = _busy_dbdctl([BUSY], mounted=True)          # a mounted snapshot stays busy: no retry
    with pytest.raises(dbdctl.DbdctlError):
        d.call('transition-to-snapshot', minor=1, cow_file='/data/.cow2')
    assert d.slept == [] and d.settled == []
    d = _busy_dbdctl([BUSY])                        # setup is not retried (EBUSY there: already traced)
    with pytest.raises(dbdctl.DbdctlError):
        d.call('setup-snapshot', minor=0, block_device='/dev/vdb', cow_file='/data/.cow')
    assert d.slept == []


def test_snapshot_mounted():
    from .fakehost import DATTO0, MOUNTINFO, FakeHost, FakeStat
    node = {'/dev/datto0': FakeStat('blk', rdev=DATTO0, dev=1)}
    mounted = FakeHost(mountinfo=MOUNTINFO + '60 21 252:0 / /mnt/snap ro - ext4 /dev/datto0 ro\n', extra=node)
    assert dbdctl.snapshot_mounted(0, mounted) is True
    assert dbdctl.snapshot_mounted(0, FakeHost(extra=node)) is False      # the node exists, not mounted
    assert dbdctl.snapshot_mounted(3, mounted) is False                   # no /dev/datto3
    unreadable = FakeHost(extra=node)
    del unreadable.files['/proc/self/mountinfo']
    assert dbdctl.snapshot_mounted(0, unreadable) is False
