# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapfleet-dattobd, the host-local runner (cli.py): its configuration is the backup module's options,
checked by the module's spec and validation; a refused start writes nothing and says why in one line;
a cycle through the runner writes the record a cycle through the module writes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_record
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cli
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.plugins.modules import backup as backup_module
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.modules.utils import run_exiting

from .test_backup import FakeOps, IMG, META1, REC_OK


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A root-only configuration directory and state directory; the boot id of FakeOps."""
    etc = tmp_path / 'etc'
    etc.mkdir(mode=0o700)
    monkeypatch.setattr(cli.boot_state, 'read_boot_id', lambda path=None: 'boot-1')
    return tmp_path


def write_config(host, doc, mode=0o600):
    path = host / 'etc' / 'backup.json'
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.chmod(str(path), mode)
    return str(path)


def volume(**extra):
    out = dict(device='/data', image=IMG, metrics=False)
    out.update(extra)
    return out


def config(host, *volumes, **defaults):
    defaults.setdefault('state_dir', str(host / 'state'))
    defaults.setdefault('verify_sample_budget', 0)
    defaults.setdefault('full_verify_every_days', 0)
    return dict(format=1, defaults=defaults, volumes=list(volumes) or [volume()])


class Host(object):
    """ops_factory of the runner: one FakeOps per volume (by name), every one it made kept."""

    def __init__(self, **ops):
        self.ops = ops
        self.made = []

    def __call__(self, params):
        ops = self.ops.get(params['name']) or FakeOps(meta=META1, record=REC_OK)
        self.made.append((params, ops))
        return ops


def run(argv, factory=None):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, ops_factory=factory)
    return code, out.getvalue(), err.getvalue()


def assert_one_line(err):
    assert err.endswith('\n') and err.count('\n') == 1, repr(err)
    assert err.startswith('snapfleet-dattobd: '), err


# --- a refused start: one line, nothing run, nothing written -----------------------------------

BAD = [
    ('not-json', '{"format": 1,', 'not valid JSON'),
    ('not-an-object', '[]', 'must be a JSON object'),
    ('no-format', dict(volumes=[]), 'format'),
    ('unknown-key', dict(format=1, volumes=[], retention=3), 'unknown configuration key retention'),
    ('volumes-not-a-list', dict(format=1, volumes={'device': '/data'}), 'volumes must be a list'),
    ('no-image', dict(format=1, volumes=[{'device': '/data'}]), 'volumes[0].image is required'),
    ('relative-image', dict(format=1, volumes=[{'device': '/data', 'image': 'data.img'}]), 'image must be an absolute'),
    ('bad-choice', dict(format=1, volumes=[volume(verify='all')]), 'volumes[0].verify must be one of'),
    ('unicode-digit', dict(format=1, volumes=[volume(timeout=u'\u0661')]), 'timeout must be an integer'),
    ('unknown-option', dict(format=1, volumes=[volume(retain=3)]), 'Unsupported option volumes[0].retain'),
    ('bad-retention', dict(format=1, volumes=[volume(retention='many')]), 'volumes[0].retention must be an integer'),
    ('host-form', dict(format=1, volumes=[volume(volumes=[])]), 'Unsupported option volumes[0].volumes'),
    ('full-is-per-run', dict(format=1, volumes=[volume(full=True)]), 'Unsupported option volumes[0].full'),
    ('hook-not-argv', dict(format=1, volumes=[volume(pre_hooks=[{'argv': '/bin/sync'}])]),
     'volumes[0].pre_hooks[0].argv must be a list'),
    ('hook-relative', dict(format=1, volumes=[volume(pre_hooks=[{'argv': ['sync']}])]), 'pre_hooks'),
    ('same-image', dict(format=1, volumes=[volume(), volume(device='/home', name='other')]),
     'volumes[0] and volumes[1] have the same image'),
    ('same-name', dict(format=1, volumes=[volume(name='a'), volume(image='/backup/b.img', name='a')]),
     'have the same name'),
    ('bad-default', dict(format=1, defaults={'sparse': 'holes'}, volumes=[volume()]), 'sparse must be one of'),
    ('no-volume', dict(format=1, volumes=[]), 'no volume is configured'),
]


@pytest.mark.parametrize('doc, fragment', [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_configuration_is_refused_in_one_line_and_nothing_runs(host, doc, fragment):
    if isinstance(doc, dict):
        doc.setdefault('defaults', {}).setdefault('state_dir', str(host / 'state'))
    factory = Host()
    code, out, err = run(['backup', '--config', write_config(host, doc)], factory)
    assert code == cli.EXIT_USAGE
    assert_one_line(err)
    assert fragment in err
    assert factory.made == [] and out == ''
    assert not (host / 'state').exists()


def test_a_configuration_others_can_change_is_refused(host):
    path = write_config(host, config(host), mode=0o620)
    code, unused, err = run(['backup', '--config', path], Host())
    assert code == cli.EXIT_USAGE and 'can be changed by others' in err
    os.chmod(path, 0o600)
    os.chmod(str(host / 'etc'), 0o777)
    code, unused, err = run(['backup', '--config', path], Host())
    assert code == cli.EXIT_USAGE and 'can be changed by others' in err


def test_a_missing_configuration_and_bad_arguments_are_one_line(host):
    for argv in (['backup', '--config', str(host / 'none.json')], ['frobnicate'], ['backup', '--bogus'], []):
        code, out, err = run(argv, Host())
        assert code == cli.EXIT_USAGE, argv
        assert_one_line(err)


def test_the_configuration_has_the_modules_defaults(host):
    unused, volumes = cli.open_config(write_config(host, config(host, volume(name=None))))
    spec = backup_module_spec()
    for name, opt in spec.items():
        if name == 'volumes':  # the module's host form: no option of a configured volume
            continue
        if name in ('device', 'image', 'name', 'metrics', 'state_dir', 'verify_sample_budget', 'full_verify_every_days'):
            continue
        assert volumes[0][name] == opt.get('default'), name
    assert volumes[0]['name'] == 'data.img'


def backup_module_spec():
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as backup_lib
    return backup_lib.argument_spec()


# --- locks -------------------------------------------------------------------------------------

def test_refuses_to_start_while_another_cycle_holds_a_lock(host):
    state = str(host / 'state')
    second = volume(device='/home', image='/backup/home.img')
    path = write_config(host, config(host, volume(), second))
    fd = backup_record.lock(state, '/backup/home.img')  # a cycle of the second volume runs (a fleet run)
    try:
        factory = Host()
        code, out, err = run(['backup', '--config', path], factory)
    finally:
        backup_record.unlock(fd)
    assert code == cli.EXIT_BUSY
    assert_one_line(err)
    assert 'home.img: Another backup cycle of /backup/home.img is running' in err and 'Nothing was started' in err
    assert factory.made == [] and out == ''
    assert sorted(os.listdir(state)) == [backup_record.lock_name(backup_record.real_image('/backup/home.img'))]
    code, out, err = run(['backup', '--config', path], factory)
    assert code == cli.EXIT_OK and err == ''
    assert [p['name'] for p, unused in factory.made] == ['data.img', 'home.img']


def test_one_runner_at_a_time(host):
    import fcntl
    path = write_config(host, config(host))
    with open(path) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        factory = Host()
        code, unused, err = run(['backup', '--config', path], factory)
    assert code == cli.EXIT_BUSY and 'another snapfleet-dattobd backup' in err
    assert factory.made == []


def test_check_not_locked_creates_nothing(tmp_path):
    backup_record.check_not_locked(str(tmp_path / 'missing'), IMG)
    backup_record.check_not_locked(str(tmp_path), IMG)
    assert os.listdir(str(tmp_path)) == []


# --- the cycle: the module's ------------------------------------------------------------------

TIMES = ('started', 'finished', 'last_success', 'cycle_seconds', 'last_full_epoch')


def _timeless(value):
    if isinstance(value, dict):
        return dict((k, _timeless(v)) for k, v in value.items() if k not in TIMES)
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _through_module(capsys, ops_kw, **args):
    ops = FakeOps(**ops_kw)
    module_args = dict(device='/data', image=IMG, metrics=False, verify_sample_budget=0, full_verify_every_days=0,
                       run_boot_id='boot-1', **args)
    code, result = run_exiting(capsys, backup_module.main, module_args, ops_factory=lambda module: ops)
    return code, result, ops


@pytest.mark.parametrize('ops_kw', [
    dict(meta=META1, record=REC_OK),
    dict(image_exists=False),
    dict(meta=META1, record=REC_OK, fail={'sync': DattobdError('EIO reading /dev/datto0')}),
], ids=['incremental', 'full', 'copy-fails'])
def test_a_cycle_through_the_runner_writes_the_record_of_the_module(host, capsys, ops_kw):
    state = str(host / 'state')
    code_m, result_m, ops_m = _through_module(capsys, dict(ops_kw), state_dir=state)
    ops_r = FakeOps(**dict(ops_kw, fail=dict(ops_kw.get('fail') or {})))
    path = write_config(host, config(host))
    code, out, err = run(['backup', '--config', path], Host(**{'data.img': ops_r}))
    assert ops_r.calls == ops_m.calls
    assert len(ops_r.saved) == len(ops_m.saved) > 0
    assert _timeless(ops_r.saved) == _timeless(ops_m.saved)
    if code_m == 0:
        assert code == cli.EXIT_OK and err == ''
        assert out.startswith('data.img: ok, %s backup' % result_m['mode'])
    else:
        assert code == cli.EXIT_FAILED
        assert_one_line(err)
        assert 'backup failed for data.img (failed at step copy: Copying the changed blocks failed: EIO reading' in err
        assert result_m['step'] == 'copy'


def test_the_runner_makes_the_restore_points_of_its_configuration(host):
    """retention in the configuration: the runner's cycle copies the image first, as the module's does."""
    from ..modules.test_backup_volumes import VolumeOps
    image = host / 'data.img'
    image.write_bytes(b'\x01' * 8192)
    old = host / 'data.img.restore-20260101T000000Z'
    old.write_bytes(b'old')
    path = write_config(host, config(host, volume(image=str(image), name='data', retention=1, retention_method='copy',
                                                  retention_full_copies=1)))
    ops = VolumeOps(str(image))
    code, out, err = run(['backup', '--config', path], Host(data=ops))
    assert code == cli.EXIT_OK, err
    made = sorted(p.name for p in host.iterdir() if '.restore-' in p.name)
    assert len(made) == 1 and made[0] != old.name  # the new restore point; the old one pruned (retention 1)
    assert (host / made[0]).read_bytes() == b'\x01' * 8192
    assert ops.calls.index('lock') < ops.calls.index('ensure snapshot')


def test_every_volume_runs_and_a_failure_is_one_line(host):
    second = volume(device='/home', image='/backup/home.img', name='home')
    path = write_config(host, config(host, volume(name='data'), second))
    failing = FakeOps(meta=META1, record=REC_OK, fail={'sync': DattobdError('EIO\nreading /dev/datto0')})
    factory = Host(data=failing)
    code, out, err = run(['backup', '--config', path], factory)
    assert code == cli.EXIT_FAILED
    assert [p['name'] for p, unused in factory.made] == ['data', 'home']
    assert_one_line(err)
    assert 'backup failed for data (failed at step copy: Copying the changed blocks failed: EIO reading /dev/datto0' in err
    lines = out.splitlines()
    assert lines[0].startswith('data: failed at step copy: Copying the changed blocks failed: EIO reading') and lines[-1].startswith('home: ok,')


def test_a_consistency_group_runs_its_hooks_once(host):
    """group in the configuration: the volumes snapshotted together, as the module's host form does."""
    second = volume(device='/home', image='/backup/home.img', name='home', group='g')
    path = write_config(host, config(host, volume(name='data', group='g'), second,
                                     pre_hooks=[{'argv': ['/bin/freeze', 'pre1']}]))
    factory = Host()
    code, out, err = run(['backup', '--config', path], factory)
    assert code == cli.EXIT_OK, err
    (unused, first), (unused, other) = factory.made
    assert first.calls.count('hook pre1') == 1 and not [c for c in other.calls if c.startswith('hook')]
    assert first.calls.index('lock') < first.calls.index('hook pre1') < first.calls.index('ensure snapshot')
    assert [line.split(':')[0] for line in out.splitlines()] == ['data', 'home']
    doc = dict(format=1, defaults=config(host)['defaults'], volumes=[
        volume(name='data', group='g'), dict(second, pre_hooks=[{'argv': ['/bin/freeze', 'x']}])])
    code, out, err = run(['backup', '--config', write_config(host, doc)], Host())
    assert code == cli.EXIT_USAGE and out == ''
    assert_one_line(err)
    assert 'volumes[1]: an element of consistency group g cannot set its own pre_hooks' in err


def test_volume_full_check_and_json(host):
    path = write_config(host, config(host, volume(name='data'), volume(image='/backup/b.img', name='b')))
    factory = Host()
    code, out, err = run(['backup', '--config', path, '--volume', 'b', '--full', '--check', '--json'], factory)
    assert code == cli.EXIT_OK, err
    (params, ops), = factory.made
    assert params['name'] == 'b' and params['full'] is True and params['run_boot_id'] == 'boot-1'
    assert 'lock' not in ops.calls and ops.saved == []  # check mode: the plan only
    doc = json.loads(out)
    assert doc['check_mode'] is True and doc['failed'] is False
    assert doc['volumes'][0]['name'] == 'b' and doc['volumes'][0]['mode'] == 'full'
    code, out, err = run(['backup', '--config', path, '--volume', 'nope'], factory)
    assert code == cli.EXIT_USAGE and 'no configured volume is named nope' in err


def test_an_unexpected_error_is_one_line(host, monkeypatch):
    path = write_config(host, config(host))
    monkeypatch.setattr(cli, 'run_backup', lambda *a, **k: {}['boom'])
    code, unused, err = run(['backup', '--config', path], Host())
    assert code == cli.EXIT_FAILED
    assert_one_line(err)
    assert 'unexpected error: KeyError' in err


# --- status ------------------------------------------------------------------------------------

INFO = json.dumps({'version': '0.12.1', 'devices': [
    {'minor': 0, 'cow_file': '/.datto_0_3', 'block_device': '/dev/vdb', 'max_cache': 314572800, 'fallocate': 1,
     'seq_id': 3, 'uuid': 'ab' * 16, 'version': 1, 'nr_changed_blocks': 5, 'state': 2, 'error': 0}]})


def test_status_shows_trackers_and_last_cycles(host, monkeypatch):
    state = host / 'state'
    state.mkdir(mode=0o700)
    ok = dict(name='data', device='/data', image=IMG, last_result='ok', finished='2026-01-01T00:00:00Z',
              last_success='2026-01-01T00:00:00Z', mode='incremental', next_run='incremental')
    bad = dict(name='home', device='/home', image='/backup/home.img', last_result='failed', step='copy',
               msg='EIO\nreading', finished='2026-01-02T00:00:00Z', mode='incremental', next_run='resume')
    (state / backup_record.record_name(IMG)).write_text(json.dumps(ok))
    (state / backup_record.record_name('/backup/home.img')).write_text(json.dumps(bad))
    (state / 'x.json').write_text('[')
    path = write_config(host, config(host, volume(name='data'), volume(image='/backup/new.img', name='new')))
    monkeypatch.setattr(procinfo, 'read', lambda path=None, timeout=10: procinfo.parse(INFO))
    code, out, err = run(['status', '--config', path])
    assert code == cli.EXIT_OK and err == ''
    assert 'driver: loaded, version 0.12.1, 1 tracker' in out
    assert 'datto0  active incremental' in out and '/dev/vdb' in out
    assert 'data  /data -> /backup/data.img  last ok 2026-01-01T00:00:00Z' in out
    assert 'last FAILED 2026-01-02T00:00:00Z (incremental) at step copy: EIO reading; last success never' in out
    assert 'volume new (/data -> /backup/new.img): no backup yet' in out
    code, out, err = run(['status', '--config', path, '--json'])
    doc = json.loads(out)
    assert doc['driver']['trackers'][0]['state_name'] == 'active incremental'
    assert [r['file'] for r in doc['records']] == sorted(r['file'] for r in doc['records'])
    assert {r.get('last_result') for r in doc['records']} == {'ok', 'failed', None}
    assert [v['record'] is not None for v in doc['volumes']] == [True, False]


def test_status_of_a_wedged_driver(host, monkeypatch):
    monkeypatch.setattr(cli.wedge, 'read', lambda: {'since': '2026-01-01T00:00:00Z', 'reason': 'reading /proc'})

    def wedged(path=None, timeout=10):
        raise DattobdError('the driver is wedged')
    monkeypatch.setattr(procinfo, 'read', wedged)
    code, out, err = run(['status', '--state-dir', str(host / 'none')])
    assert code == cli.EXIT_OK
    assert out.startswith('driver: WEDGED since 2026-01-01T00:00:00Z (reading /proc)')


def test_the_runner_pings_its_monitor_once_per_run(host, monkeypatch):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import ping
    sent = []
    monkeypatch.setattr(ping, 'send', lambda url, body: sent.append(url) or 'timed out')
    second = volume(device='/home', image='/backup/home.img', name='home')
    path = write_config(host, config(host, volume(name='data'), second, ping_url='https://hc.example/k'))
    code, out, err = run(['backup', '--config', path], Host())
    assert code == cli.EXIT_OK, err
    assert sent == ['https://hc.example/k/start', 'https://hc.example/k']
    assert out.splitlines()[-1] == 'warning: The success ping to https://hc.example/... failed: timed out.'


def test_the_configuration_leaves_out_the_modules_own_defaults():
    """The backup call's runner option passes every option (converted: 30 days as 30.0), the runner module
    the role's few: both write the same file for the same settings."""
    doc = json.loads(cli.render_config({'full_verify_every_days': 30.0, 'metrics': True, 'retention': 0,
                                        'check_free_space': 1, 'verify': 'changed', 'timeout': None}, []))
    assert doc['defaults'] == {'verify': 'changed', 'check_free_space': 1}  # 1 is no bool: kept as given
    assert json.loads(cli.render_config({'full_verify_every_days': 30}, []))['defaults'] == {}
    assert json.loads(cli.render_config({'metrics': False, 'retention': 2}, []))['defaults'] == {
        'metrics': False, 'retention': 2}
