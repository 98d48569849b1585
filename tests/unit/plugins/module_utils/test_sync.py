# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of module_utils/_dattobd/sync.py: the real fixture byte for byte, random change sets,
kill -9 at random points, every refusal, the upstream engine's strict checks.

The "snapshot device" is a regular file (``sync.SNAPSHOT_DEVICE`` is replaced) and
/proc/datto-info is a ProcInfo built in the test (``procinfo_reader``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import lzma
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as im
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.cowfile import write_cow

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..'))
GOLDEN = os.path.join(ROOT, 'tests', 'fixtures', 'golden')
B = 4096
UUID = '3eb8aa94e0b440389b06f7a10a5f3cc1'
OTHER = 'ff' * 16


def info_for(minor=1, seq_id=2, uuid=UUID, state=3, error=None, loaded=True):
    if not loaded:
        return procinfo.ProcInfo(loaded=False)
    t = procinfo.Tracker(minor=minor, cow_file='/.cow-seq2', block_device='/dev/vdc1', state=state,
                         seq_id=seq_id, uuid=uuid, error=error)
    return procinfo.ProcInfo(loaded=True, version='0.12.1', devices=[t])


def reader_for(**kw):
    return lambda timeout=10: info_for(**kw)


def blocks_file(path, nblocks, seed):
    with open(path, 'wb') as f:
        for i in range(nblocks):
            f.write(hashlib.sha256(b'%d/%d' % (seed, i)).digest() * (B // 32))
    os.chmod(path, 0o600)


def sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


class Env(object):
    """A synthetic world: snapshot file (minor 1), image at seq 1, COW file seq 1 -> 2."""

    def __init__(self, tmp_path, monkeypatch, nblocks=256, changed=(3, 4, 5, 100, 255)):
        self.dir = tmp_path / 'backups'
        self.dir.mkdir(mode=0o700)
        self.snap = str(tmp_path / 'datto1')
        blocks_file(self.snap, nblocks, 1)
        self.image = str(self.dir / 'disk.img')
        blocks_file(self.image, nblocks, 2)
        self.base = str(tmp_path / 'base.img')
        shutil.copy(self.image, self.base)
        self.cow = str(tmp_path / 'cow1')
        self.changed = sorted(set(changed))
        write_cow(self.cow, nblocks * B, self.changed, seq_id=1, uuid=UUID)
        im.init(self.image, UUID, 1, nblocks * B)
        self.nblocks = nblocks
        monkeypatch.setattr(sync, 'SNAPSHOT_DEVICE', str(tmp_path / 'datto%d'))

    def expected(self):
        with open(self.base, 'rb') as f:
            data = bytearray(f.read())
        with open(self.snap, 'rb') as f:
            s = f.read()
        for b in self.changed:
            data[b * B:(b + 1) * B] = s[b * B:(b + 1) * B]
        return bytes(data)

    def image_bytes(self):
        with open(self.image, 'rb') as f:
            return f.read()

    def run(self, **kw):
        kw.setdefault('procinfo_reader', reader_for())
        return sync.run(kw.pop('snapshot', 1), kw.pop('cow_file', self.cow), kw.pop('image', self.image), **kw)


@pytest.fixture
def env(tmp_path, monkeypatch):
    return Env(tmp_path, monkeypatch)


# --- the real fixture -------------------------------------------------------------------------

def rebuild_golden_images(out):
    """base.img and expected.img of the real fixture, rebuilt from tests/fixtures (stdlib lzma)."""
    fx = os.path.join(GOLDEN, 'update-img-fixture')
    with lzma.open(os.path.join(fx, 'base.img.xz')) as f:
        base = f.read()
    with open(os.path.join(fx, 'expected-delta.json')) as f:
        delta = json.load(f)
    with lzma.open(os.path.join(fx, 'expected-delta.bin.xz')) as f:
        blob = f.read()
    bs = delta['block_size']
    assert len(blob) == bs * len(delta['blocks']) and len(base) == delta['size']
    expected = bytearray(base)
    for i, block in enumerate(delta['blocks']):
        expected[block * bs:(block + 1) * bs] = blob[i * bs:(i + 1) * bs]
    for name, data in (('base', base), ('expected', expected)):
        with open(str(out / (name + '.img')), 'wb') as f:
            f.write(data)


@pytest.fixture(scope='module')
def golden_images(tmp_path_factory):
    out = tmp_path_factory.mktemp('golden')
    rebuild_golden_images(out)
    sums = {}
    with open(os.path.join(GOLDEN, 'SHA256SUMS.uncompressed')) as f:
        for line in f:
            digest, name = line.split()
            sums[name] = digest
    assert sha(str(out / 'base.img')) == sums['base.img']
    assert sha(str(out / 'expected.img')) == sums['expected.img']
    return out, sums


@pytest.mark.parametrize('verify', ['none', 'changed'])
def test_golden_fixture_reproduces_updated_img(golden_images, tmp_path, monkeypatch, verify):
    out, sums = golden_images
    monkeypatch.setattr(sync, 'SNAPSHOT_DEVICE', str(out / 'expected%d.img'))
    os.link(str(out / 'expected.img'), str(out / 'expected1.img')) if not os.path.exists(
        str(out / 'expected1.img')) else None
    d = tmp_path / 'b'
    d.mkdir(mode=0o700)
    image = str(d / 'vdc1.img')
    shutil.copy(str(out / 'base.img'), image)
    os.chmod(image, 0o600)
    res = sync.run('/dev/datto1', os.path.join(GOLDEN, 'cow-seq1.cow'), image, adopt=True, verify=verify,
                   procinfo_reader=reader_for(seq_id=2))
    assert sha(image) == sums['updated.img']
    assert (res['blocks'], res['bytes'], res['runs'], res['seq_id_from'], res['seq_id_to']) == (177, 177 * B, 11, 1, 2)
    assert res['verified'] is (verify == 'changed') and res['changed'] and not res['resumed']
    meta = im.load(image)
    assert meta['seq_id'] == 2 and meta['pending'] is None and meta['adopted']
    # Run again: the sync is complete, nothing to do (finding 5 of issue 15 refused it as "applied twice").
    again = sync.run(1, os.path.join(GOLDEN, 'cow-seq1.cow'), image, procinfo_reader=reader_for(seq_id=2))
    assert not again['changed'] and again['blocks'] == 0 and sha(image) == sums['updated.img']


def test_golden_verify_full_reports_the_live_cow_blocks(golden_images, tmp_path, monkeypatch):
    """updated.img differs from expected.img in blocks 3636-3639 (live COW file of seq 2):
    a full verify against a snapshot that reads the same twice calls that a real mismatch."""
    out, sums = golden_images
    monkeypatch.setattr(sync, 'SNAPSHOT_DEVICE', str(out / 'expected.img%d'))
    if not os.path.exists(str(out / 'expected.img1')):
        os.link(str(out / 'expected.img'), str(out / 'expected.img1'))
    d = tmp_path / 'b'
    d.mkdir(mode=0o700)
    image = str(d / 'vdc1.img')
    shutil.copy(str(out / 'base.img'), image)
    os.chmod(image, 0o600)
    with pytest.raises(DattobdError, match=r'Verification \(full\) failed: 4 block\(s\).*first: 3636, 3637, 3638, 3639'):
        sync.run(1, os.path.join(GOLDEN, 'cow-seq1.cow'), image, adopt=True, verify='full',
                 procinfo_reader=reader_for(seq_id=2))
    assert sha(image) == sums['updated.img']
    assert im.load(image)['pending']['seq_id_to'] == 2  # left journalled, not recorded as done


# --- synthetic worlds ----------------------------------------------------------------------------

def test_sync_copies_exactly_the_changed_blocks_and_records(env):
    res = env.run(verify='changed')
    assert env.image_bytes() == env.expected()
    assert (res['blocks'], res['runs'], res['bytes'], res['method']) == (5, 3, 5 * B, 'auto')
    assert res['mb_per_s'] is None or res['mb_per_s'] > 0
    assert res['actions'] == [
        'journal sync 1 -> 2 in %s.snapfleet.json' % env.image,
        'copy 5 changed blocks (3 runs, 20.0 KiB) from %s into %s' % (sync.SNAPSHOT_DEVICE % 1, env.image),
        'fsync %s' % env.image,
        'verify the copied blocks against %s' % (sync.SNAPSHOT_DEVICE % 1),
        'record seq_id 2 in %s.snapfleet.json' % env.image,
    ]
    assert res['diff'] == {'before': {'seq_id': 1, 'pending': None}, 'after': {'seq_id': 2, 'pending': None}}
    meta = im.load(env.image)
    assert meta['seq_id'] == 2 and meta['history'][-1]['verified'] is True


def test_check_mode_writes_nothing(env):
    before_img, before_meta = env.image_bytes(), im.load(env.image)
    res = env.run(check_mode=True, verify='full')
    assert (res['blocks'], res['runs'], res['changed'], res['seconds']) == (5, 3, True, 0.0)
    assert res['actions'][1].startswith('copy 5 changed blocks (3 runs')
    assert res['actions'][3] == 'verify the whole image against %s' % (sync.SNAPSHOT_DEVICE % 1)
    assert env.image_bytes() == before_img and im.load(env.image) == before_meta


def test_verify_full_passes_on_identical_snapshot(env):
    shutil.copy(env.snap, env.base)  # the image will equal the snapshot everywhere
    shutil.copy(env.snap, env.image)
    res = env.run(verify='full')
    assert res['verified'] and res['verify_unstable_blocks'] == []


def test_verify_full_treats_changing_blocks_as_unstable(env, monkeypatch):
    real = os.pread
    flips = {'n': 0}

    def pread(fd, n, off):
        data = real(fd, n, off)
        if os.readlink('/proc/self/fd/%d' % fd) == env.snap and off <= 200 * B < off + n:
            flips['n'] += 1  # block 200 of the snapshot changes on every read
            i = 200 * B - off
            data = data[:i] + bytes([flips['n'] % 256]) + data[i + 1:]
        return data
    monkeypatch.setattr(os, 'pread', pread)
    shutil.copy(env.snap, env.image)
    res = env.run(verify='full')
    assert res['verify_unstable_blocks'] == [200] and res['verified']


def test_verify_changed_detects_a_bad_write(env, monkeypatch):
    monkeypatch.setattr(sync.verify_mod, 'compare_runs', lambda *a, **k: [4])
    with pytest.raises(DattobdError, match=r'Verification \(changed\) failed: 1 block'):
        env.run(verify='changed')
    assert im.load(env.image)['pending'] is not None


def test_empty_change_set(tmp_path, monkeypatch):
    e = Env(tmp_path, monkeypatch, changed=())
    res = e.run()
    assert res['blocks'] == 0 and res['runs'] == 0 and e.image_bytes() == e.expected()
    assert im.load(e.image)['seq_id'] == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changed=st.sets(st.integers(min_value=0, max_value=4095), max_size=600), seed=st.integers(0, 3))
def test_property_random_change_sets(tmp_path_factory, changed, seed):
    tmp = tmp_path_factory.mktemp('prop')
    mp = pytest.MonkeyPatch()
    try:
        e = Env(tmp, mp, nblocks=4096, changed=changed)
        res = e.run(buffer_size=(1 + seed) * 4 * B)
        assert e.image_bytes() == e.expected()
        assert res['blocks'] == len(changed)
    finally:
        mp.undo()


# --- refusals: nothing is written ----------------------------------------------------------------

def _untouched(env, before_img, before_meta):
    assert env.image_bytes() == before_img
    assert im.load(env.image) == before_meta


REFUSALS = [
    # (name, setup(env) -> kwargs for run, expected message)
    ('not-loaded', lambda e: dict(procinfo_reader=reader_for(loaded=False)), 'not loaded'),
    ('no-tracker', lambda e: dict(snapshot=7), 'No dattobd tracker uses minor 7'),
    ('failed', lambda e: dict(procinfo_reader=reader_for(error=-27)), 'has failed'),
    ('incremental', lambda e: dict(procinfo_reader=reader_for(state=2)), 'needs an active snapshot'),
    ('dormant', lambda e: dict(procinfo_reader=reader_for(state=1)), 'needs an active snapshot'),
    ('no-seq', lambda e: dict(procinfo_reader=reader_for(seq_id=None)), 'no seq_id'),
    ('bad-snapshot-name', lambda e: dict(snapshot='/dev/sda'), 'minor number or /dev/datto'),
    ('bool-snapshot', lambda e: dict(snapshot=True), 'minor number or /dev/datto'),
    ('minor-range', lambda e: dict(snapshot='300'), 'out of range'),
    ('engine', lambda e: dict(engine='rsync'), 'engine must be one of'),
    ('verify', lambda e: dict(verify='some'), 'verify must be one of'),
    ('relative-image', lambda e: dict(image='disk.img'), 'image must be an absolute path'),
    ('relative-cow', lambda e: dict(cow_file='cow'), 'cow_file must be an absolute path'),
    ('uuid', lambda e: dict(procinfo_reader=reader_for(uuid=OTHER)), 'belongs to snapshot series'),
    ('seq-gap', lambda e: dict(procinfo_reader=reader_for(seq_id=3)), 'does not immediately follow'),
    ('seq-same', lambda e: dict(procinfo_reader=reader_for(seq_id=1)), 'is the live COW file of tracker'),
    # The tracker's live COW file passed by mistake: dirty, same seq_id; named as such, not as "not clean".
    ('live-cow', lambda e: write_cow(e.cow, e.nblocks * B, [1], uuid=UUID, flags=2)
     and dict(procinfo_reader=reader_for(seq_id=1)), 'is the live COW file of tracker 1 .seq_id 1.'),
    ('magic', lambda e: write_cow(e.cow, e.nblocks * B, [1], uuid=UUID, magic=1) and {}, 'bad magic'),
    ('dirty', lambda e: write_cow(e.cow, e.nblocks * B, [1], uuid=UUID, flags=2) and {}, 'not closed cleanly'),
    ('truncated', lambda e: os.truncate(e.cow, 4096 + 100) or {}, 'truncated index'),
    ('index-larger', lambda e: write_cow(e.cow, 64 << 20, [1], uuid=UUID) and {}, 'index larger than the device'),
    ('missing-cow', lambda e: os.unlink(e.cow) or {}, 'Cannot read COW file'),
    ('image-size', lambda e: os.truncate(e.image, e.nblocks * B - B) or {}, 'is not an image of this device'),
    ('image-missing', lambda e: dict(image=e.image + '.nope'), 'Cannot use image'),
    ('image-not-file', lambda e: dict(image=str(e.dir)), 'not a regular file'),
    ('image-mode', lambda e: os.chmod(e.image, 0o644) or {}, 'chmod 0600'),
    ('dir-mode', lambda e: os.chmod(str(e.dir), 0o755) or {}, 'chmod 0700'),
    ('no-sidecar', lambda e: os.unlink(im.sidecar_path(e.image)) or {}, 'set adopt=true'),
    ('wrong-image', lambda e: im.init(e.image, OTHER, 1, e.nblocks * B) and {}, 'wrong image'),
    ('image-ahead', lambda e: im.init(e.image, UUID, 3, e.nblocks * B) and {}, 'holds snapshot 3 but the COW file'),
    ('image-behind', lambda e: im.init(e.image, UUID, 0, e.nblocks * B) and {}, 'applying it would give a corrupt'),
    ('other-pending', lambda e: im.begin_sync(e.image, im.init(e.image, UUID, 1, e.nblocks * B), UUID, 0, 1, '/c0', 'x')
     and {}, 'was interrupted and has not been completed'),
    ('snapshot-missing', lambda e: os.unlink(e.snap) or {}, 'Cannot open snapshot device'),
    ('upstream-missing', lambda e: dict(engine='upstream', update_img=None), 'update-img binary'),
]


@pytest.mark.parametrize('name,setup,message', REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_write_nothing(env, monkeypatch, name, setup, message):
    monkeypatch.setattr(sync.shutil, 'which', lambda name: None)
    kw = setup(env)
    before_img = env.image_bytes() if os.path.exists(env.image) else None
    before_meta = im.load(env.image) if os.path.isdir(str(env.dir)) and os.path.exists(
        im.sidecar_path(env.image)) and not os.path.isdir(im.sidecar_path(env.image)) else None
    with pytest.raises(DattobdError) as info:
        env.run(**kw)
    res = info.value.to_result()
    assert re.search(message, res['msg']), res['msg']
    os.chmod(str(env.dir), 0o700)
    if before_img is not None:
        assert env.image_bytes() == before_img
    if before_meta is not None:
        assert im.load(env.image) == before_meta


def test_adopt_without_sidecar(env):
    os.unlink(im.sidecar_path(env.image))
    res = env.run(adopt=True, snapshot='1')
    assert env.image_bytes() == env.expected() and res['seq_id_to'] == 2
    assert im.load(env.image)['adopted'] is True


def test_snapshot_symlink_to_device(env, tmp_path):
    link = str(tmp_path / 'snaplink')
    os.symlink('/dev/datto1', link)
    assert sync.parse_snapshot(link) == 1
    assert sync.parse_snapshot(' 4 ') == 4 and sync.parse_snapshot(2) == 2


def test_write_phase_oserror_becomes_resumable_failure(env, monkeypatch):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as cp

    def boom(*a, **k):
        raise OSError(28, 'No space left on device', env.image)
    monkeypatch.setattr(cp, 'copy_runs', boom)
    with pytest.raises(DattobdError, match='stopped: No space left on device') as info:
        env.run()
    assert 'it resumes' in info.value.hint
    assert im.load(env.image)['pending']['seq_id_to'] == 2
    monkeypatch.undo()
    monkeypatch.setattr(sync, 'SNAPSHOT_DEVICE', os.path.join(os.path.dirname(env.snap), 'datto%d'))
    res = env.run()
    assert res['resumed'] and env.image_bytes() == env.expected()
    assert res['actions'][0].startswith('resume interrupted sync 1 -> 2')


# --- the upstream engine (a stand-in script: the real binary is not installed here) --------------

FAKE_UPDATE_IMG = '''#!/bin/sh
# stand-in for dattobd's update-img: $FAKE_MODE selects the behaviour
case "$FAKE_MODE" in
  ok) cp "$1" "$3.copied"; echo "snapshot is 256 blocks large"; echo "copying blocks";
      echo "copying complete: 5 blocks changed, 0 errors";;
  errors) echo "copying complete: 5 blocks changed, 2 errors";;
  stderr) echo "copying complete: 5 blocks changed, 0 errors"; echo "error reading snapshot" >&2;;
  rc) echo "snapshot provided does not immediately follow" >&2; exit 22;;
  silent) ;;
  count) echo "copying complete: 4 blocks changed, 0 errors";;
esac
'''


@pytest.mark.parametrize('mode,message', [
    ('ok', None),
    ('errors', r'2 block\(s\) failed to copy'),
    ('stderr', 'stderr: error reading snapshot'),
    ('rc', 'exit status 22'),
    ('silent', 'no "copying complete" line'),
    ('count', 'copied 4 blocks but the COW file lists 5'),
])
def test_upstream_engine_is_checked_strictly(env, tmp_path, monkeypatch, mode, message):
    fake = str(tmp_path / 'update-img')
    with open(fake, 'w') as f:
        f.write(FAKE_UPDATE_IMG)
    os.chmod(fake, 0o755)
    monkeypatch.setenv('FAKE_MODE', mode)
    if message is None:
        res = env.run(engine='upstream', update_img=fake)
        assert res['actions'][1] == '%s %s %s %s' % (fake, sync.SNAPSHOT_DEVICE % 1, env.cow, env.image)
        assert res['engine'] == 'upstream' and res['blocks'] == 5
        assert im.load(env.image)['seq_id'] == 2
    else:
        with pytest.raises(DattobdError, match=message):
            env.run(engine='upstream', update_img=fake)
        assert im.load(env.image)['pending'] is not None


def test_upstream_engine_fsync_failure(env, tmp_path, monkeypatch):
    fake = str(tmp_path / 'update-img')
    with open(fake, 'w') as f:
        f.write(FAKE_UPDATE_IMG)
    os.chmod(fake, 0o755)
    monkeypatch.setenv('FAKE_MODE', 'ok')

    def failing_fsync(path):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(sync, 'fsync_path', failing_fsync)
    with pytest.raises(DattobdError, match='fsync of .* failed'):
        env.run(engine='upstream', update_img=fake)


def test_human_sizes():
    assert [sync._human(n) for n in (5, 4096, 3 << 20, 5 << 40)] == ['5 B', '4.0 KiB', '3.0 MiB', '5.0 TiB']


# --- kill -9 at random points, then run again ----------------------------------------------------

CHILD = textwrap.dedent('''
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync, procinfo
    cfg = json.loads(sys.argv[2])
    sync.SNAPSHOT_DEVICE = cfg['device']
    t = procinfo.Tracker(minor=1, cow_file='/c', block_device='/dev/x', state=3, seq_id=2, uuid=cfg['uuid'])
    info = procinfo.ProcInfo(loaded=True, version='0.12.1', devices=[t])
    sys.stdout.write('go\\n'); sys.stdout.flush()
    sync.run(1, cfg['cow'], cfg['image'], procinfo_reader=lambda timeout=10: info, buffer_size=4096,
             progress=lambda s: time.sleep(cfg['pause']))
''')


def _import_base():
    import ansible_collections
    return os.path.dirname(os.path.dirname(os.path.abspath(ansible_collections.__path__[0] + '/x')))


def test_kill_9_at_random_points_then_rerun(tmp_path, monkeypatch):
    rng = random.Random(20261122)
    changed = set(rng.sample(range(2048), 700)) | set(range(1000, 1100))
    e = Env(tmp_path, monkeypatch, nblocks=2048, changed=changed)
    expected = e.expected()
    base_meta_text = open(im.sidecar_path(e.image)).read()
    cfg = json.dumps({'device': sync.SNAPSHOT_DEVICE, 'uuid': UUID, 'cow': e.cow, 'image': e.image, 'pause': 0.0005})
    script = str(tmp_path / 'child.py')
    with open(script, 'w') as f:
        f.write(CHILD)
    base = _import_base()

    def start():
        p = subprocess.Popen([sys.executable, script, base, cfg], stdout=subprocess.PIPE)
        assert p.stdout.readline() == b'go\n'
        return p

    # how long an uninterrupted run takes after its start marker
    t0 = time.monotonic()
    p = start()
    t1 = time.monotonic()
    assert p.wait() == 0
    full = time.monotonic() - t1
    assert e.image_bytes() == expected and t1 - t0 < 30
    outcomes = {'pending': 0, 'done': 0, 'untouched': 0}
    for i in range(24):
        shutil.copy(e.base, e.image)
        with open(im.sidecar_path(e.image), 'w') as f:
            f.write(base_meta_text)
        p = start()
        time.sleep(rng.uniform(0, full * 1.1))
        p.send_signal(signal.SIGKILL)
        p.wait()
        meta = im.load(e.image)
        if meta['pending']:
            outcomes['pending'] += 1
        elif meta['seq_id'] == 2:
            outcomes['done'] += 1
            assert e.image_bytes() == expected
            assert not e.run()['changed']
            continue
        else:
            outcomes['untouched'] += 1
            assert e.image_bytes() == open(e.base, 'rb').read()
        res = e.run()
        assert res['resumed'] == bool(meta['pending'])
        assert e.image_bytes() == expected, 'image differs after kill #%d and rerun' % i
        assert im.load(e.image)['seq_id'] == 2 and im.load(e.image)['pending'] is None
    assert outcomes["pending"] >= 6, outcomes  # most kills land mid-copy


def test_benchmark_script_runs_small(tmp_path):
    """benchmarks/sync.py (std-lib only) still runs: a tiny CI-mode pass on a plain file."""
    script = os.path.join(ROOT, 'benchmarks', 'sync.py')
    if shutil.which('dd') is None:
        pytest.skip('dd is not installed')
    out = subprocess.run([sys.executable, script, '--size', '4M', '--no-loop', '--quick', '--repeat', '1', '--json',
                          '--fio-seconds', '0', '--dir', str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout[out.stdout.index('\n{') + 1:])
    assert set(data['sets']) == {'10% scattered 4 KiB', '1% scattered 4 KiB', '10% contiguous runs'}
    assert data['sets']['1% scattered 4 KiB']['blocks'] == 10 and data['sets']['10% scattered 4 KiB']['blocks'] == 102
    assert all(row['snapfleet'] > 0 and row['copy_depth_1'] > 0 for row in data['sets'].values())
    assert data['depths'] == sorted({1, data['default_depth']})
    assert os.listdir(str(tmp_path)) == []  # cleaned up


def test_not_enough_space_is_refused_before_anything_is_written(env, monkeypatch):

    before_img, before_meta = env.image_bytes(), im.load(env.image)
    monkeypatch.setattr(sync, 'free_bytes', lambda path: 1000)
    monkeypatch.setattr(sync, 'hole_bytes', lambda path, runs: 5 * B)
    with pytest.raises(DattobdError, match='Not enough space for the changed blocks') as info:
        env.run()
    assert 'nothing was written' in info.value.hint
    assert env.image_bytes() == before_img and im.load(env.image) == before_meta  # no journal either


def test_space_check_counts_holes_only_when_space_is_short(env, monkeypatch):

    counted = []
    monkeypatch.setattr(sync, 'hole_bytes', lambda path, runs: counted.append(list(runs)) or 0)
    env.run()  # plenty of space: no counting
    assert counted == []
    sync.check_space(env.image, lambda: [(0, 5)], 10 ** 12)  # short of the bound, but every block allocated
    assert counted == [[(0, 5)]]


def test_extra_runs_are_copied_and_verified(env):
    """Blocks the driver wrote untracked (data area of the previous COW file) are copied as well."""
    res = env.run(verify='changed', extra_runs=[(200, 2), (7, 1)])
    with open(env.snap, 'rb') as f:
        snap = f.read()
    data = env.image_bytes()
    for b in (7, 200, 201):
        assert data[b * B:(b + 1) * B] == snap[b * B:(b + 1) * B]
    with open(env.base, 'rb') as f:
        assert data[8 * B:9 * B] == f.read()[8 * B:9 * B]  # others untouched
    assert res['blocks'] == len(env.changed) + 3 and res['verified']


def test_cow_data_runs_clips_to_the_used_part(monkeypatch):
    seen = {}

    def fake_extents(path, logical_end=None):
        seen['end'] = logical_end
        return [(40 * B, 3 * B), (1000 * B, 2 * B)]
    monkeypatch.setattr(sync.fiemap, 'extents', fake_extents)
    assert sync.cow_data_runs('/data/.datto_0_1', 10 * B, 1001 * B, margin=B) == [(40, 3), (1000, 1)]
    assert seen['end'] == 11 * B


# --- issue 15: idempotent rerun, damaged COW files around the copy, ASCII minors -------------------

def test_rerun_of_a_finished_sync_is_ok_and_writes_nothing(env):
    first = env.run(verify='changed')
    assert first['changed']
    meta_text = open(im.sidecar_path(env.image)).read()
    image = env.image_bytes()
    for check in (True, False):
        res = env.run(check_mode=check, verify='full')
        assert res['changed'] is False and (res['blocks'], res['bytes'], res['runs']) == (0, 0, 0)
        assert (res['seq_id_from'], res['seq_id_to'], res['verified'], res['resumed']) == (1, 2, False, False)
        assert res['actions'] == ['nothing to do: %s already holds snapshot 2 (sync 1 -> 2 from this COW file is '
                                  'complete)' % env.image]
        assert res['diff'] == {'before': {'seq_id': 2, 'pending': None}, 'after': {'seq_id': 2, 'pending': None}}
        assert open(im.sidecar_path(env.image)).read() == meta_text and env.image_bytes() == image


def test_image_at_target_from_another_cow_content_is_refused(env):
    env.run()
    write_cow(env.cow, env.nblocks * B, [7, 8], seq_id=1, uuid=UUID)  # same seq ids, other changes
    with pytest.raises(DattobdError, match=r'reached by another sync \(1 -> 2, COW sha256 [0-9a-f]{64}\) than this'):
        env.run(check_mode=True)


def test_full_backup_at_the_target_needs_no_sync(env):
    """An image recorded at the snapshot's seq_id by a full backup (no history): nothing to do."""
    im.init(env.image, UUID, 2, env.nblocks * B)
    before = env.image_bytes()
    res = env.run()
    assert not res['changed'] and env.image_bytes() == before


def test_damaged_cow_on_resume_keeps_the_journal(env, monkeypatch):
    """A sync interrupted, then rerun with a COW file damaged meanwhile: refused, still pending."""
    meta = im.begin_sync(env.image, im.load(env.image), UUID, 1, 2, env.cow, None)
    with open(env.cow, 'r+b') as f:
        f.seek(4096 + 8 * 3)
        f.write(b'\0' * 8)   # block 3 cleared: 4 entries set, header says 5
    with pytest.raises(DattobdError, match='lists 4 changed blocks but its header counts 5') as info:
        env.run()
    assert info.value.details['cow_damaged'] and 'Nothing was written to %s.' % env.image in info.value.msg
    assert im.load(env.image) == meta


def test_cow_file_damaged_during_the_copy_leaves_the_image_pending(env, monkeypatch):
    """Checked whole before the copy, then changed under the copy: the copy's own pass notices."""
    real = im.begin_sync

    def begin_then_damage(*a, **kw):
        out = real(*a, **kw)
        with open(env.cow, 'r+b') as f:
            f.seek(4096 + 8 * 100)
            f.write(b'\0' * 8)
        return out
    monkeypatch.setattr(im, 'begin_sync', begin_then_damage)
    with pytest.raises(DattobdError, match='read differently during the copy than when it was checked') as info:
        env.run()
    assert 'incremental chain is broken' in info.value.hint and info.value.details['cow_damaged']
    meta = im.load(env.image)
    assert meta['seq_id'] == 1 and meta['pending']['seq_id_to'] == 2


def test_first_snapshot_of_a_series_has_no_cow_file_to_sync(env):
    write_cow(env.cow, env.nblocks * B, [1], seq_id=0, uuid=UUID)
    with pytest.raises(DattobdError, match='has seq_id 0 but snapshot 1 has seq_id 1'):
        env.run(procinfo_reader=reader_for(seq_id=1))


@pytest.mark.parametrize('text', [u'\u00b2', u'\u0661', u'/dev/datto\u0661', u'\uff13', u'3\u0663', '', 'x1',
                                  '/dev/datto', '/dev/datto\x00', '1\x00'])
def test_parse_snapshot_takes_ascii_digits_only(text):
    with pytest.raises(DattobdError, match=r'minor number or /dev/datto<minor> \(ASCII digits 0-9\)'):
        sync.parse_snapshot(text)


def test_parse_snapshot_numbers():
    assert [sync.parse_snapshot(t) for t in ('0', '007', '255', '/dev/datto012', 255)] == [0, 7, 255, 12, 255]
    for text in ('256', '0' * 50 + '256', '9' * 5000, '/dev/datto' + '9' * 5000):
        with pytest.raises(DattobdError, match='out of range'):
            sync.parse_snapshot(text)
