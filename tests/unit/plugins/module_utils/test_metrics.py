# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""node_exporter textfile metrics of the backup cycle (metrics.py, Cycle._publish).

The files are parsed back with a strict parser of the text exposition format (below), the way
node_exporter's textfile collector reads them: every sample after its HELP and TYPE, label values
unescaped, the same label names for every series of a metric.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat
import time

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_record
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import metrics
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from .test_backup import FakeOps, IMG, META1, P1, REC_OK, params

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
UNESCAPE = {'\\\\': '\\', '\\"': '"', '\\n': '\n'}


def parse(text):
    """``{name: (help, type, [(labels, value)])}`` of an exposition text; AssertionError on anything malformed."""
    assert text.endswith('\n')
    out = {}
    for line in text[:-1].split('\n'):
        if line.startswith('# HELP '):
            name, dummy, text_ = line[7:].partition(' ')
            assert NAME.fullmatch(name) and name not in out, line
            out[name] = [text_, None, []]
            continue
        if line.startswith('# TYPE '):
            name, dummy, kind = line[7:].partition(' ')
            assert out[name][1] is None and kind in ('gauge', 'counter', 'untyped'), line
            out[name][1] = kind
            continue
        name = NAME.match(line).group(0)
        assert out[name][1] is not None, 'sample before its TYPE: %s' % line
        rest = line[len(name):]
        labels = {}
        assert rest.startswith('{'), line
        pos = 1
        while rest[pos] != '}':
            m = LABEL.match(rest, pos)
            assert m, line
            labels[m.group(1)] = re.sub(r'\\[\\"n]', lambda e: UNESCAPE[e.group(0)], m.group(2))
            pos = m.end()
            if rest[pos] == ',':
                pos += 1
        value = rest[pos + 1:]
        assert value.startswith(' ') and ' ' not in value[1:], 'one value, no timestamp: %s' % line
        out[name][2].append((labels, float(value)))
    return dict((k, tuple(v)) for k, v in out.items())


def sample(parsed, name):
    """``(labels, value)`` of the one series of ``snapfleet_dattobd_<name>``."""
    series = parsed[metrics.PREFIX + name][2]
    assert len(series) == 1
    return series[0]


def value(parsed, name):
    return sample(parsed, name)[1]


@pytest.fixture
def mdir(tmp_path):
    path = tmp_path / 'node-exporter'
    path.mkdir()
    return str(path)


def read(path):
    with open(path) as handle:
        return parse(handle.read())


def cycle(ops, mdir, **extra):
    return bk.run_cycle(params(metrics_dir=mdir, **extra), ops=ops)


def test_full_cycle_exposition(mdir):
    ops = FakeOps(image_exists=False)
    ops.cow = (28 << 20, 64 << 20)
    before = time.time()
    res = cycle(ops, mdir)
    path = os.path.join(mdir, 'snapfleet_dattobd_' + backup_record.record_name(IMG)[:-len('.json')] + '.prom')
    assert res['metrics_file'] == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    got = read(path)
    labels, ok = sample(got, 'last_run_success')
    assert (labels, ok) == ({'volume': '/data', 'image': IMG, 'minor': '0'}, 1)
    last = value(got, 'last_success_timestamp_seconds')
    assert before - 0.001 <= last == value(got, 'last_run_timestamp_seconds') <= time.time()
    assert sample(got, 'mode_info') == (dict(labels, mode='full', reason='first backup', after_reboot='false'), 1)
    info = dict(labels, result='ok', step='', next_run='incremental', image_state='complete')
    assert sample(got, 'last_run_info') == (info, 1)
    assert value(got, 'blocks_read') == 16384
    assert value(got, 'bytes_written') == 5000000
    assert (value(got, 'cow_bytes_used'), value(got, 'cow_bytes_size')) == (28 << 20, 64 << 20)
    assert 0 <= value(got, 'duration_seconds') < 60
    # nothing verified (verify=none), no tracker state known (the fake tracker has none): no series, no HELP
    assert metrics.PREFIX + 'verification_ok' not in got and metrics.PREFIX + 'tracker_state' not in got
    assert all(kind == 'gauge' and help_ for help_, kind, dummy in got.values())


def test_incremental_cycle_exposition(mdir):
    ops = FakeOps(meta=META1, record=REC_OK, snap={'tracker': {'minor': 3, 'seq_id': 2, 'uuid': 'ab' * 16}})
    res = cycle(ops, mdir, verify='changed')
    got = read(res['metrics_file'])
    labels = {'volume': '/data', 'image': IMG, 'minor': '3'}
    assert sample(got, 'mode_info') == (dict(labels, mode='incremental', reason='tracker and image are in step',
                                             after_reboot='false'), 1)
    assert value(got, 'blocks_read') == 177
    assert value(got, 'bytes_written') == 724992
    assert value(got, 'verification_ok') == 1  # verify=changed compared the copied blocks
    assert metrics.PREFIX + 'bytes_read' not in got  # the incremental copy did not report it


def test_tracker_state_of_a_successful_cycle(mdir):
    ops = FakeOps(meta=META1, record=REC_OK)
    real = ops.tracker_ensure

    def ensure(device, state, check_mode=False, **kw):
        out = real(device, state, check_mode=check_mode, **kw)
        if state == 'incremental':
            out['tracker'] = {'minor': 0, 'state': 2, 'state_name': 'active incremental'}
        return out
    ops.tracker_ensure = ensure
    got = read(cycle(ops, mdir)['metrics_file'])
    assert value(got, 'tracker_state') == 2
    assert sample(got, 'tracker_state_info')[0]['state'] == 'active incremental'


def test_hostile_image_path_is_escaped():
    image = '/backup/a"b\nc\\d.img'
    text = metrics.render({'volume': '/dev/vdb', 'image': image, 'minor': 0},
                          metrics.cycle_values(dict(success=False, finished=1e9, mode='incremental',
                                                    reason='he said "no"\\', step='copy')))
    # one sample per line: the newline of the path is escaped, not written
    assert text.count('\n') == len([line for line in text.split('\n') if line])
    assert 'a\\"b\\nc\\\\d.img' in text
    got = parse(text)
    labels, one = sample(got, 'mode_info')
    assert labels['image'] == image and labels['reason'] == 'he said "no"\\' and one == 1
    # the file name of such an image has none of those characters, and differs from its look-alikes'
    names = set(metrics.file_name(i) for i in (image, '/backup/a_b_c_d.img', '/backup/a"b c\\d.img'))
    assert len(names) == 3
    assert all(re.fullmatch(r'snapfleet_dattobd_[A-Za-z0-9_.-]+-[0-9a-f]{64}\.prom', n) for n in names)


def test_undecodable_bytes_stay_valid_utf8():
    image = b'/backup/\xff.img'.decode('utf-8', 'surrogateescape')
    text = metrics.render({'volume': '/dev/vdb', 'image': image, 'minor': 1},
                          metrics.cycle_values(dict(success=True, finished=1e9)))
    text.encode('utf-8')  # no surrogate left
    assert sample(parse(text), 'last_run_success')[0]['image'] == '/backup/\\xff.img'


def test_file_replaced_atomically_not_appended(mdir):
    ops = FakeOps(meta=META1, record=REC_OK)
    path = cycle(ops, mdir)['metrics_file']
    first = os.stat(path).st_ino
    with open(path) as handle:
        size = len(handle.read())
    path2 = cycle(FakeOps(meta=META1, record=REC_OK), mdir)['metrics_file']
    assert path2 == path
    assert os.stat(path).st_ino != first  # a new file renamed over the old one, never rewritten in place
    with open(path) as handle:
        text = handle.read()
    assert abs(len(text) - size) < 40 and text.count('# TYPE snapfleet_dattobd_last_run_success ') == 1
    assert sorted(os.listdir(mdir)) == [os.path.basename(path)]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_warns(mdir, monkeypatch):
    path = cycle(FakeOps(meta=META1, record=REC_OK), mdir)['metrics_file']
    with open(path) as handle:
        old = handle.read()

    def broken(*a, **kw):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(metrics, 'atomic_write', broken)
    res = cycle(FakeOps(meta=META1, record=REC_OK), mdir)
    assert res['image_state'] == 'complete' and res['metrics_file'] is None
    assert any('Cannot write the metrics file %s: No space left on device' % path in w for w in res['warnings'])
    with open(path) as handle:
        assert handle.read() == old


def test_failure_keeps_last_success_of_the_previous_file(mdir):
    path = cycle(FakeOps(meta=META1, record=REC_OK), mdir)['metrics_file']
    good = value(read(path), 'last_success_timestamp_seconds')
    time.sleep(0.01)
    ops = FakeOps(meta=META1, record=REC_OK, fail={'sync': DattobdError('EIO reading /dev/datto0')})
    with pytest.raises(bk.BackupError) as info:
        cycle(ops, mdir)
    assert info.value.details['metrics_file'] == path
    got = read(path)
    assert value(got, 'last_run_success') == 0
    assert value(got, 'last_success_timestamp_seconds') == good
    assert value(got, 'last_run_timestamp_seconds') > good
    assert sample(got, 'last_run_info')[0]['step'] == 'copy'
    assert sample(got, 'last_run_info')[0]['next_run'] == 'resume'
    assert metrics.PREFIX + 'blocks_read' not in got  # the figures of a failed cycle are not published


def test_failure_keeps_last_success_of_the_record(mdir):
    record = dict(REC_OK, last_success='2026-01-31T12:00:00Z', minor=4)
    ops = FakeOps(meta=META1, record=record, fail={'sync': DattobdError('EIO')})
    with pytest.raises(bk.BackupError) as info:
        cycle(ops, mdir)
    got = read(info.value.details['metrics_file'])
    assert value(got, 'last_success_timestamp_seconds') == 1769860800
    assert value(got, 'last_run_success') == 0


def test_failure_without_any_success_says_zero(mdir):
    ops = FakeOps(image_exists=False, fail={'full_copy': DattobdError('read error')})
    with pytest.raises(bk.BackupError) as info:
        cycle(ops, mdir)
    got = read(info.value.details['metrics_file'])
    assert value(got, 'last_success_timestamp_seconds') == 0
    assert sample(got, 'mode_info')[0]['mode'] == 'full'


def test_verification_failure_is_published(mdir):
    ops = FakeOps(meta=META1, record=REC_OK)
    ops.sample_bad = [7]
    with pytest.raises(bk.BackupError) as info:
        cycle(ops, mdir, verify_sample_budget=0.1)
    assert info.value.details['step'] == 'verify'
    got = read(info.value.details['metrics_file'])
    assert value(got, 'verification_ok') == 0
    assert sample(got, 'last_run_info')[0]['next_run'] == 'full'


def test_same_label_names_in_every_file_of_every_outcome(mdir, tmp_path):
    """node_exporter refuses a metric whose series have different label names, even across files."""
    cycle(FakeOps(meta=META1, record=REC_OK), mdir, image='/backup/ok.img')
    with pytest.raises(bk.BackupError):
        cycle(FakeOps(fail={'full_copy': DattobdError('EIO')}), mdir, image='/backup/bad.img')
    with pytest.raises(bk.BackupError):
        cycle(FakeOps(meta=META1, record=REC_OK, fail={'device_facts': DattobdError('gone')}), mdir,
              image='/backup/refused.img')
    seen = {}
    files = sorted(os.listdir(mdir))
    assert len(files) == 3
    for name in files:
        with open(os.path.join(mdir, name)) as handle:
            for metric, (help_, kind, series) in parse(handle.read()).items():
                for labels, dummy in series:
                    assert seen.setdefault(metric, (help_, kind, sorted(labels))) == (help_, kind, sorted(labels))


def test_refused_run_publishes_a_failed_run(mdir):
    ops = FakeOps(meta=META1, record=REC_OK, fail={'device_facts': DattobdError('/dev/vdb is gone')})
    with pytest.raises(bk.BackupError) as info:
        cycle(ops, mdir)
    assert info.value.details['step'] == 'destination' and 'lock' not in ops.calls and ops.saved == []
    got = read(info.value.details['metrics_file'])
    assert value(got, 'last_run_success') == 0
    assert sample(got, 'last_run_info')[0]['step'] == 'destination'


def test_run_refused_by_the_lock_publishes_nothing(mdir):
    ops = FakeOps(meta=META1, record=REC_OK)

    def held(state_dir, image):
        raise DattobdError('Another backup cycle is running', step='lock')
    ops.lock = held
    with pytest.raises(DattobdError):
        cycle(ops, mdir)
    assert os.listdir(mdir) == []


def test_check_mode_writes_nothing_and_names_the_file(mdir):
    ops = FakeOps(meta=META1, record=REC_OK)
    res = bk.run_cycle(params(metrics_dir=mdir), ops=ops, check_mode=True)
    assert res['metrics_file'] == os.path.join(mdir, metrics.file_name(IMG))
    assert os.listdir(mdir) == []
    ops = FakeOps(meta=META1, record=REC_OK, fail={'device_facts': DattobdError('gone')})
    with pytest.raises(bk.BackupError):
        bk.run_cycle(params(metrics_dir=mdir), ops=ops, check_mode=True)
    assert os.listdir(mdir) == []


@pytest.mark.parametrize('check_mode', [False, True])
@pytest.mark.parametrize('bad', ['missing', 'file', 'relative'])
def test_explicit_metrics_dir_must_exist_refused_before_anything(tmp_path, check_mode, bad):
    path = {'missing': str(tmp_path / 'nope'), 'file': str(tmp_path / 'f'), 'relative': 'node-exporter'}[bad]
    (tmp_path / 'f').write_text(u'x')
    ops = FakeOps(meta=META1, record=REC_OK)
    with pytest.raises(DattobdError) as info:
        bk.run_cycle(params(metrics_dir=path, **HOOKS_PRE), ops=ops, check_mode=check_mode)
    assert info.value.details['step'] == 'parameters'
    assert 'metrics' in info.value.msg
    assert ops.calls == [] and ops.saved == []  # no readiness check, no hook, no lock, no record
    assert sorted(os.listdir(str(tmp_path))) == ['f']


HOOKS_PRE = {'pre_hooks': [{'argv': ['/bin/freeze', 'pre1']}]}


def test_default_dir_missing_writes_nothing(tmp_path):
    assert not os.path.exists(metrics.DEFAULT_DIR)  # tests/unit/conftest.py points it at no directory
    res = bk.run_cycle(params(), ops=FakeOps(meta=META1, record=REC_OK))
    assert res['mode'] == 'incremental' and res['metrics_file'] is None


def test_default_dir_present_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, 'DEFAULT_DIR', str(tmp_path))
    res = bk.run_cycle(params(), ops=FakeOps(meta=META1, record=REC_OK))
    assert res['metrics_file'] == os.path.join(str(tmp_path), metrics.file_name(IMG))
    assert value(read(res['metrics_file']), 'last_run_success') == 1


def test_metrics_false_writes_nothing(mdir):
    res = cycle(FakeOps(meta=META1, record=REC_OK), mdir, metrics=False)
    assert res['metrics_file'] is None and os.listdir(mdir) == []
    with pytest.raises(DattobdError) as info:
        cycle(FakeOps(meta=META1, record=REC_OK), mdir, metrics='yes')
    assert info.value.details['step'] == 'parameters'


def test_incremental_removes_only_its_cow_file(mdir):
    """The metrics never change the cycle's own work (same calls as without them)."""
    ops = FakeOps(meta=META1, record=REC_OK)
    cycle(ops, mdir)
    assert ops.calls[-2:] == ['unlink %s' % P1, 'unlock']


def test_cow_usage_from_proc(monkeypatch):
    class Tracker(object):
        cow_size_current = 64 << 20
        nr_changed_blocks = 10
    ops = bk.Ops()
    monkeypatch.setattr(ops, 'read_tracker', lambda minor: Tracker())
    monkeypatch.setattr(bk.copy_mod, 'size_of', lambda path: 10 << 30)
    # a 10 GiB volume: 640 index sections of 32 KiB after the 4 KiB header (reference/dattobd.md 2.3)
    assert ops.cow_usage(0) == (4096 + 640 * 32768 + 10 * 4096, 64 << 20)
    Tracker.nr_changed_blocks = None
    assert ops.cow_usage(0) is None


def test_epoch_of():
    assert metrics.epoch_of('1970-01-02T00:00:00Z') == 86400
    assert metrics.epoch_of('yesterday') is None and metrics.epoch_of(None) is None
