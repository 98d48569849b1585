# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup module, ``volumes``: a host's whole cycle in one call (issue 18, item 1).

Every element is validated before any volume acts; the volumes run one after the other and a failed
one does not stop the next; check mode plans what the run does; restore points are made and pruned
in the call; the single-volume form is unchanged."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import restore_points
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.plugins.modules import backup

from ..module_utils.test_backup import FakeOps, META1, REC_OK
from .utils import run_exiting

TOUCH = '/usr/bin/touch'


class VolumeOps(FakeOps):
    """FakeOps of one volume whose image is ``img`` (the scripted host knows one image)."""

    def __init__(self, img, **kw):
        kw.setdefault('meta', META1)
        kw.setdefault('record', REC_OK)
        super(VolumeOps, self).__init__(**kw)
        self.img = img

    def exists(self, path):
        return self.image_exists if path == self.img else path.endswith('.partial')

    def size_of(self, path):
        return 67108864


def run_module(capsys, args, ops):
    """Run the module; ``ops``: one FakeOps per volume, handed out in order (a list), or one for all."""
    given = []

    def factory(module):
        given.append(ops.pop(0) if isinstance(ops, list) else ops)
        return given[-1]
    code, out = run_exiting(capsys, backup.main, args, ops_factory=factory)
    return code, out, given


def volumes(tmp_path, n=2, **extra):
    return [dict({'device': '/dev/vd%s' % 'bcd'[i], 'image': str(tmp_path / ('vol%d.img' % i)), 'name': 'vol%d' % i},
                 **extra) for i in range(n)]


def args(tmp_path, vols, **kw):
    return dict({'volumes': vols, 'state_dir': '/state'}, **kw)


def test_every_volume_gets_the_single_form_result(capsys, tmp_path):
    vols = volumes(tmp_path)
    ops = [VolumeOps(v['image']) for v in vols]
    code, out, given = run_module(capsys, args(tmp_path, vols, verify='changed'), list(ops))
    assert code == 0, out
    assert out['changed'] is True and 'failed' not in out
    assert out['msg'] == '2 of 2 volume(s) backed up.'
    assert [v['name'] for v in out['volumes']] == ['vol0', 'vol1']
    assert [v['image'] for v in out['volumes']] == [v['image'] for v in vols]
    assert [v['device'] for v in out['volumes']] == ['/dev/vdb', '/dev/vdc']
    for entry, op in zip(out['volumes'], given):
        assert (entry['failed'], entry['changed'], entry['mode'], entry['blocks']) == (False, True, 'incremental', 177)
        assert entry['next_run'] == 'incremental' and entry['restore_point'] is None
        assert 'sync /data/.datto_0_1 changed' in op.calls  # the top-level verify is every volume's default
    assert 'volumes' in out and 'mode' not in out


def test_an_element_overrides_the_top_level_defaults(capsys, tmp_path):
    vols = volumes(tmp_path)
    vols[1]['verify'] = 'none'
    ops = [VolumeOps(v['image']) for v in vols]
    code, out, given = run_module(capsys, args(tmp_path, vols, verify='changed'), list(ops))
    assert code == 0, out
    assert 'sync /data/.datto_0_1 changed' in given[0].calls and 'sync /data/.datto_0_1 none' in given[1].calls


def test_a_rejected_element_stops_everything_before_anything(capsys, tmp_path):
    canary = tmp_path / 'canary'
    vols = volumes(tmp_path, 3, pre_hooks=[{'argv': [TOUCH, str(canary)]}])
    vols[2]['verify_sample_budget'] = -1
    ops = [VolumeOps(v['image']) for v in vols]
    code, out, given = run_module(capsys, args(tmp_path, vols), list(ops))
    assert code == 1 and out['failed'] is True
    assert out['msg'].startswith('volumes[2] (vol2): verify_sample_budget must be '), out['msg']
    assert out['step'] == 'parameters' and out['volume'] == 2 and 'volumes' not in out
    assert given == [] and not canary.exists()  # no volume started: no ops, no hook
    assert all(op.calls == [] and op.saved == [] for op in ops)


def test_two_elements_with_one_image_are_refused(capsys, tmp_path):
    vols = volumes(tmp_path)
    vols[1]['image'] = os.path.join(os.path.dirname(vols[0]['image']), '.', os.path.basename(vols[0]['image']))
    code, out, given = run_module(capsys, args(tmp_path, vols), [VolumeOps(v['image']) for v in vols])
    assert code == 1 and given == []
    assert out['msg'] == 'volumes[1] (vol1): image %s is also the image of volumes[0] (vol0); each volume needs its ' \
        'own.' % vols[1]['image']


def test_the_form_is_one_volume_or_a_list(capsys, tmp_path):
    vols = volumes(tmp_path, 1)
    for extra in ({'device': '/data'}, {'image': '/backup/x.img'}, {'name': 'x'}, {'minor': 3}):
        code, out, given = run_module(capsys, args(tmp_path, vols, **extra), [VolumeOps(vols[0]['image'])])
        assert code == 1 and 'mutually exclusive' in out['msg'] and given == [], (extra, out)
    code, out, given = run_module(capsys, {'state_dir': '/state'}, [])
    assert code == 1 and 'one of the following is required: volumes, device' in out['msg']


def test_a_failed_volume_does_not_stop_the_next(capsys, tmp_path):
    vols = volumes(tmp_path, 3)
    ops = [VolumeOps(vols[0]['image']),
           VolumeOps(vols[1]['image'], fail={'sync': DattobdError('EIO reading /dev/datto0')}),
           VolumeOps(vols[2]['image'])]
    code, out, given = run_module(capsys, args(tmp_path, vols), list(ops))
    assert code == 1 and out['failed'] is True and out['changed'] is True
    first, bad, last = out['volumes']
    assert first['failed'] is False and last['failed'] is False and last['mode'] == 'incremental'
    assert bad['failed'] is True and bad['step'] == 'copy' and bad['image_state'] == 'untouched'
    assert bad['next_run'] == 'resume' and 'EIO reading /dev/datto0' in bad['msg']
    assert bad['name'] == 'vol1' and bad['image'] == vols[1]['image'] and bad['cycle_seconds'] >= 0
    assert 'ensure incremental' in given[1].calls and 'sync /data/.datto_0_1 none' in given[2].calls
    assert out['msg'].startswith('2 of 3 volume(s) backed up; failed: vol1 (at copy): ')


def test_an_unexpected_error_fails_that_volume_only(capsys, tmp_path):
    vols = volumes(tmp_path)
    ops = [VolumeOps(v['image']) for v in vols]

    def boom(*a):
        raise OSError(13, 'Permission denied')
    ops[0].find_record = boom
    code, out, given = run_module(capsys, args(tmp_path, vols), list(ops))
    assert code == 1
    assert out['volumes'][0]['failed'] and 'Backup cycle failed unexpectedly' in out['volumes'][0]['msg']
    assert out['volumes'][1]['failed'] is False and out['volumes'][1]['mode'] == 'incremental'


def test_check_mode_plans_each_volume_as_the_run_takes_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(restore_points, 'clone', lambda dst, src: None)  # a reflink that shares nothing: enough
    vols = volumes(tmp_path)
    for v in vols:
        with open(v['image'], 'wb') as handle:
            handle.write(b'x' * 4096)
        with open(v['image'] + '.restore-20260101T000000Z', 'wb') as handle:
            handle.write(b'old')
    vols[1]['full'] = True
    kw = dict(retention=1)
    code, plan, given = run_module(capsys, args(tmp_path, vols, _ansible_check_mode=True, **kw),
                                   [VolumeOps(v['image']) for v in vols])
    assert code == 0, plan
    assert all(op.saved == [] for op in given) and all('lock' not in op.calls for op in given)
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        [os.path.basename(v['image']) + s for v in vols for s in ('', '.restore-20260101T000000Z')])
    code, run, given = run_module(capsys, args(tmp_path, vols, **kw), [VolumeOps(v['image']) for v in vols])
    assert code == 0, run
    for planned, done in zip(plan['volumes'], run['volumes']):
        assert (planned['mode'], planned['reason']) == (done['mode'], done['reason'])
        assert planned['restore_point']['planned']
        assert planned['restore_point']['pruned'] == done['restore_point']['pruned']
        assert planned['restore_point']['path'][:-3] == done['restore_point']['path'][:-3]  # same name, to the minute
        assert planned['actions'][0].startswith('copy %s to the restore point ' % done['image'])
    assert [v['mode'] for v in run['volumes']] == ['incremental', 'full']
    assert plan['msg'] == 'Check mode: 2 volume(s) planned.'


def test_restore_points_made_and_pruned_in_the_call(capsys, tmp_path, monkeypatch):
    """No reflink here (a fake FICLONE that fails as ext4's does): the fallback copy, up to retention_full_copies."""
    def no_reflink(dst, src):
        raise OSError(95, 'Operation not supported')
    monkeypatch.setattr(restore_points, 'clone', no_reflink)
    vols = volumes(tmp_path)
    vols[1]['retention_full_copies'] = 0
    old = []
    for v in vols:
        with open(v['image'], 'wb') as handle:
            handle.write(b'\x01' * 8192)
        for stamp in ('20260101T000000Z', '20260102T000000Z'):
            old.append(v['image'] + '.restore-' + stamp)
            with open(old[-1], 'wb') as handle:
                handle.write(b'old')
    code, out, given = run_module(capsys, args(tmp_path, vols, retention=2, retention_full_copies=2),
                                  [VolumeOps(v['image']) for v in vols])
    assert code == 0, out
    made, none = out['volumes'][0]['restore_point'], out['volumes'][1]['restore_point']
    assert made['made'] and made['method'] == 'copy' and made['pruned'] == [old[0]]
    with open(made['path'], 'rb') as handle:
        assert handle.read() == b'\x01' * 8192
    assert out['volumes'][0]['actions'][:2] == ['copy %s to the restore point %s by a sparse full copy'
                                                % (vols[0]['image'], made['path']),
                                                'remove %s (restore point beyond retention 2)' % old[0]]
    # the second volume allows no full copy: none made, and every restore point pruned (the role's rule)
    assert none['made'] is False and none['pruned'] == [old[3], old[2]]
    assert 'lock' in given[0].calls and given[0].calls.index('lock') < given[0].calls.index('ensure snapshot')


def test_a_restore_point_that_cannot_be_made_fails_its_volume_before_any_hook(capsys, tmp_path, monkeypatch):
    def no_reflink(dst, src):
        raise OSError(95, 'Operation not supported')
    monkeypatch.setattr(restore_points, 'clone', no_reflink)
    vols = volumes(tmp_path, pre_hooks=[{'argv': ['/bin/freeze', 'pre1']}])
    for v in vols:
        with open(v['image'], 'wb') as handle:
            handle.write(b'\x01' * 4096)
    vols[0]['retention_method'] = 'reflink'
    code, out, given = run_module(capsys, args(tmp_path, vols, retention=3), [VolumeOps(v['image']) for v in vols])
    assert code == 1
    bad, good = out['volumes']
    assert bad['failed'] and bad['step'] == 'restore_point' and bad['image_state'] == 'untouched'
    assert 'cannot make reflink copies' in bad['msg'] and 'the lock was taken, but no hook ran' in bad['msg']
    assert given[0].calls == ['ensure snapshot (check)', 'check_destination full=False', 'lock', 'unlock']
    assert given[0].saved == []
    assert good['failed'] is False and good['restore_point']['made'] is False  # auto, no full copies: none


def test_the_single_form_returns_no_volumes(capsys):
    code, out, given = run_module(capsys, {'device': '/data', 'image': '/backup/data.img', 'state_dir': '/state'},
                                  [FakeOps(meta=META1, record=REC_OK)])
    assert code == 0 and out['mode'] == 'incremental' and 'volumes' not in out and out['restore_point'] is None


# --- consistency groups (issue 18, item 2) ---------------------------------------------------------

FREEZE = [{'argv': ['/bin/freeze', 'pre1']}]
THAW = [{'argv': ['/bin/thaw', 'post1']}]


class SharedLogOps(VolumeOps):
    """VolumeOps whose steps that matter to a group also go to one log shared by every volume, in order."""

    def __init__(self, img, tag, log, **kw):
        super(SharedLogOps, self).__init__(img, **kw)
        self.tag = tag
        self.log = log

    def tracker_ensure(self, device, state, check_mode=False, **kw):
        if not check_mode:
            self.log.append('%s %s' % (self.tag, state))
        return super(SharedLogOps, self).tracker_ensure(device, state, check_mode=check_mode, **kw)

    def sync(self, *a, **kw):
        self.log.append('%s sync' % self.tag)
        return super(SharedLogOps, self).sync(*a, **kw)

    def run_hook(self, argv, timeout, env=None):
        self.log.append('hook %s' % argv[-1])
        return super(SharedLogOps, self).run_hook(argv, timeout, env)

    def lock(self, state_dir, image):
        self.log.append('%s lock' % self.tag)
        return super(SharedLogOps, self).lock(state_dir, image)


def grouped(tmp_path, fails=None):
    """vol0 and vol1 in group db, vol2 alone; their ops (``fails``: the ``fail`` of each by index) and the log."""
    vols = volumes(tmp_path, 3)
    vols[0]['group'] = vols[1]['group'] = 'db'
    log = []
    ops = [SharedLogOps(v['image'], v['name'], log, fail=(fails or {}).get(i)) for i, v in enumerate(vols)]
    return vols, ops, log


def test_a_group_runs_its_hooks_once_around_back_to_back_snapshots(capsys, tmp_path):
    vols, ops, log = grouped(tmp_path)
    code, out, given = run_module(capsys, args(tmp_path, vols, pre_hooks=FREEZE, post_hooks=THAW), list(ops))
    assert code == 0, out
    assert log == ['vol0 lock', 'vol1 lock', 'hook pre1', 'vol0 snapshot', 'vol1 snapshot', 'hook post1',
                   'vol0 sync', 'vol0 incremental', 'vol1 sync', 'vol1 incremental',
                   'vol2 lock', 'hook pre1', 'vol2 snapshot', 'hook post1', 'vol2 sync', 'vol2 incremental']
    first, second, alone = out['volumes']
    assert (first['group'], second['group']) == ('db', 'db') and 'group' not in alone
    assert all(e['failed'] is False and e['mode'] == 'incremental' for e in out['volumes'])
    assert [h['argv'][-1] for h in first['hooks']] == [h['argv'][-1] for h in second['hooks']] == ['pre1', 'post1']
    assert ops[0].hook_env['SNAPFLEET_GROUP'] == 'db'
    assert ops[0].hook_env['SNAPFLEET_DEVICE'] == '/dev/vdb\n/dev/vdc'
    assert ops[1].calls.count('unlock') == 1 and ops[1].calls[-1] == 'unlock'
    (group,) = out['groups']
    assert (group['name'], group['volumes'], group['failed']) == ('db', ['vol0', 'vol1'], False)
    assert isinstance(group['snapshot_window_ms'], float) and group['snapshot_window_ms'] >= 0


def test_a_failed_transition_rolls_the_group_back(capsys, tmp_path):
    vols, ops, log = grouped(tmp_path, {1: {'ensure_snapshot': DattobdError('EBUSY: /dev/datto1 is held')}})
    code, out, given = run_module(capsys, args(tmp_path, vols, pre_hooks=FREEZE, post_hooks=THAW), list(ops))
    assert code == 1
    assert log[:8] == ['vol0 lock', 'vol1 lock', 'hook pre1', 'vol0 snapshot', 'vol1 snapshot', 'hook post1',
                       'vol1 incremental', 'vol0 incremental']
    assert 'vol0 sync' not in log and 'vol1 sync' not in log and 'vol2 sync' in log  # no image of the group touched
    first, bad, alone = out['volumes']
    assert bad['failed'] and bad['step'] == 'snapshot' and 'EBUSY: /dev/datto1 is held' in bad['msg']
    assert first['failed'] and first['step'] == 'group' and first['image_state'] == 'untouched'
    assert first['msg'].startswith('Consistency group db failed: vol1 (at snapshot): Taking the snapshot failed: '
                                   'EBUSY'), first['msg']
    # the COW file the copy would have read is journalled: the next run copies its blocks
    assert first['next_run'] == 'resume' and ops[0].saved[-1]['pending_cow_files'][-1]['path'] == '/data/.datto_0_1'
    assert ops[0].saved[-1]['last_result'] == 'failed' and ops[1].saved[-1]['last_result'] == 'failed'
    assert all(op.calls[-1] == 'unlock' for op in ops)
    assert alone['failed'] is False and alone['mode'] == 'incremental'
    (group,) = out['groups']
    assert group['failed'] is True and group['snapshot_window_ms'] is None and 'vol1 (at snapshot)' in group['msg']


def test_a_readiness_check_fails_the_group_before_any_hook(capsys, tmp_path):
    vols, ops, log = grouped(tmp_path, {1: {'check_destination': DattobdError('No room in /backup.')}})
    code, out, given = run_module(capsys, args(tmp_path, vols, pre_hooks=FREEZE, post_hooks=THAW), list(ops))
    assert code == 1
    assert log[:2] == ['vol0 lock', 'vol2 lock'] and 'vol0 snapshot' not in log and log.count('hook pre1') == 1
    first, bad, alone = out['volumes']
    assert bad['step'] == 'destination' and 'No room in /backup.' in bad['msg'] and ops[1].saved == []
    assert first['step'] == 'group' and first['image_state'] == 'untouched' and first['hooks'] == []
    assert first['msg'].startswith('Consistency group db failed: vol1 (at destination): No room in /backup.')
    assert ops[0].calls[-2:] == ['lock', 'unlock'] and ops[0].saved == []
    assert alone['failed'] is False


def test_an_element_of_a_group_with_its_own_hooks_is_refused_before_anything(capsys, tmp_path):
    canary = tmp_path / 'canary'
    vols, ops, log = grouped(tmp_path)
    vols[1]['post_hooks'] = [{'argv': [TOUCH, str(canary)]}]
    code, out, given = run_module(capsys, args(tmp_path, vols, pre_hooks=FREEZE), list(ops))
    assert code == 1 and given == [] and log == [] and not canary.exists()
    assert out['msg'].startswith('volumes[1] (vol1): an element of consistency group db cannot set its own '
                                 'post_hooks'), out['msg']
    assert out['step'] == 'parameters' and out['volume'] == 1


def test_a_group_name_is_checked(capsys, tmp_path):
    vols, ops, log = grouped(tmp_path)
    vols[1]['group'] = 'db one'
    code, out, given = run_module(capsys, args(tmp_path, vols), list(ops))
    assert code == 1 and given == [] and log == []
    assert out['msg'].startswith('volumes[1] (vol1): group must be 1 to 64 characters'), out['msg']


def test_check_mode_plans_the_group(capsys, tmp_path):
    vols, ops, log = grouped(tmp_path)
    call = args(tmp_path, vols, pre_hooks=FREEZE, post_hooks=THAW, _ansible_check_mode=True)
    code, out, given = run_module(capsys, call, list(ops))
    assert code == 0, out
    assert log == [] and all(op.saved == [] and 'lock' not in op.calls for op in ops)
    (group,) = out['groups']
    assert group['planned'] is True and group['volumes'] == ['vol0', 'vol1'] and group['failed'] is False
    assert group['pre_hooks'] == [['/bin/freeze', 'pre1']] and group['post_hooks'] == [['/bin/thaw', 'post1']]
    assert [e.get('group') for e in out['volumes']] == ['db', 'db', None]


# --- ping_url: one start and one end per call (a healthchecks-style monitor) ---------------------------

class Monitor(object):
    """ping.send of the tests: every request kept; ``down``: each answers with this error."""

    def __init__(self, down=None):
        self.requests = []
        self.down = down

    def __call__(self, url, body):
        self.requests.append((url, body))
        return self.down


def test_a_host_call_pings_start_then_success_once(capsys, tmp_path, monkeypatch):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import ping
    monitor = Monitor()
    monkeypatch.setattr(ping, 'send', monitor)
    vols = volumes(tmp_path)
    code, out, given = run_module(capsys, args(tmp_path, vols, ping_url='https://hc.example/abc-123/'),
                                  [VolumeOps(v['image']) for v in vols])
    assert code == 0, out
    assert monitor.requests == [('https://hc.example/abc-123/start', b''), ('https://hc.example/abc-123', b'')]
    assert out['ping'] == {'urls': ['https://hc.example/...'], 'warnings': [],
                           'sent': ['start https://hc.example/...', 'success https://hc.example/...']}


def test_a_failed_volume_pings_fail_with_its_line_and_a_dead_monitor_is_a_warning(capsys, tmp_path, monkeypatch):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import ping
    monitor = Monitor()
    monkeypatch.setattr(ping, 'send', monitor)
    vols = volumes(tmp_path)
    ops = [VolumeOps(vols[0]['image'], fail={'sync': DattobdError('EIO reading /dev/datto0')}), VolumeOps(vols[1]['image'])]
    code, out, given = run_module(capsys, args(tmp_path, vols, ping_url='http://127.0.0.1:8000/ping/k'), ops)
    assert code == 1 and out['volumes'][1]['failed'] is False
    assert [u for u, b in monitor.requests] == ['http://127.0.0.1:8000/ping/k/start', 'http://127.0.0.1:8000/ping/k/fail']
    body = monitor.requests[1][1].decode('utf-8')
    assert body.startswith('vol0: failed at copy: ') and 'EIO reading /dev/datto0' in body and 'vol1' not in body
    down = Monitor(down='Connection refused')
    monkeypatch.setattr(ping, 'send', down)
    code, out, given = run_module(capsys, args(tmp_path, vols, ping_url='http://127.0.0.1:8000/ping/k'),
                                  [VolumeOps(v['image']) for v in vols])
    assert code == 0 and len(down.requests) == 2  # the backup does not fail for its monitor
    assert out['ping']['sent'] == [] and out['ping']['warnings'][0] == (
        'The start ping to http://127.0.0.1:8000/... failed: Connection refused.')
    assert out['ping']['warnings'][1] == 'The success ping to http://127.0.0.1:8000/... failed: Connection refused.'


def test_check_mode_and_a_refused_call_ping_nothing(capsys, tmp_path, monkeypatch):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import ping
    monitor = Monitor()
    monkeypatch.setattr(ping, 'send', monitor)
    vols = volumes(tmp_path)
    code, out, given = run_module(capsys, args(tmp_path, vols, ping_url='https://hc.example/k', _ansible_check_mode=True),
                                  [VolumeOps(v['image']) for v in vols])
    assert code == 0 and 'ping' not in out
    bad = [dict(vols[0], verify='sometimes'), vols[1]]
    code, out, given = run_module(capsys, args(tmp_path, bad, ping_url='https://hc.example/k'),
                                  [VolumeOps(v['image']) for v in vols])
    assert code == 1
    for url in ('ftp://hc.example/k', 'https://hc.example/k?rid=1', 'https://hc.example/a b', 'hc.example/k'):
        code, out, given = run_module(capsys, args(tmp_path, vols, ping_url=url), [VolumeOps(v['image']) for v in vols])
        assert code == 1 and 'ping_url must be an http:// or https:// URL' in out['msg'], (url, out)
        assert 'hc.example/k' not in out['msg'].replace('hc.example/...', '')  # the secret path is not repeated
    assert monitor.requests == [] and all(op.saved == [] for op in given)


def test_the_single_form_pings_too(capsys, tmp_path, monkeypatch):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import ping
    monitor = Monitor()
    monkeypatch.setattr(ping, 'send', monitor)
    vol = volumes(tmp_path, n=1)[0]
    single = dict(device=vol['device'], image=vol['image'], state_dir='/state', ping_url='https://hc.example/one')
    code, out, given = run_module(capsys, single, VolumeOps(vol['image']))
    assert code == 0, out
    assert [u for u, b in monitor.requests] == ['https://hc.example/one/start', 'https://hc.example/one']
    failing = VolumeOps(vol['image'], fail={'sync': DattobdError('EIO')})
    code, out, given = run_module(capsys, single, failing)
    assert code == 1 and monitor.requests[-1][0] == 'https://hc.example/one/fail'
    assert out['ping']['sent'][-1] == 'fail https://hc.example/...'
