# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of module_utils/_dattobd/reload.py: rendering, hostile input, atomic writes, drift."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as rl
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'fixtures', 'golden')

UUID_DEV = '/dev/disk/by-uuid/0b6c2f1e-1111-2222-3333-444455556666'

# --- rendering ------------------------------------------------------------------------------

RENDER_CASES = [
    # (kwargs, expected command line)
    (dict(minor=3, block_device=UUID_DEV, cow_relative='/.datto_3_7', mode='incremental'),
     '/usr/bin/dbdctl reload-incremental %s /.datto_3_7 3' % UUID_DEV),
    (dict(minor=0, block_device='/dev/mapper/vg-root', cow_relative='/.datto_0_2', mode='snapshot',
          cache_size=1048576),
     '/usr/bin/dbdctl reload-snapshot -c 1048576 /dev/mapper/vg-root /.datto_0_2 0'),
    (dict(minor=255, block_device=UUID_DEV, cow_relative='/var/.x', mode='snapshot', cache_size=0),
     '/usr/bin/dbdctl reload-snapshot %s /var/.x 255' % UUID_DEV),
    (dict(minor='12', block_device=UUID_DEV, cow_relative='/c', mode='incremental', cache_size='300',
          dbdctl='/usr/local/bin/dbdctl'),
     '/usr/local/bin/dbdctl reload-incremental -c 300 %s /c 12' % UUID_DEV),
    (dict(minor=1, block_device='/dev/disk/by-path/pci-0000:00:04.0', cow_relative="/it's here",
          mode='incremental'),
     "/usr/bin/dbdctl reload-incremental /dev/disk/by-path/pci-0000:00:04.0 '/it'\"'\"'s here' 1"),
]


@pytest.mark.parametrize('kwargs, line', RENDER_CASES)
def test_render_exact(kwargs, line):
    text = rl.render(**kwargs)
    lines = text.split('\n')
    assert lines[0] == '#!/bin/sh'
    assert lines[1] == rl.MARKER
    assert lines[-1] == ''
    commands = [ln for ln in lines if ln and not ln.startswith('#')]
    assert commands == [line]


def test_script_path():
    assert rl.script_path(7) == '/etc/datto/dla/reload_snapfleet_7'
    assert rl.script_path(0, directory='/x') == '/x/reload_snapfleet_0'
    with pytest.raises(DattobdError):
        rl.script_path(256)


HOSTILE_ACCEPTED = [
    '/.datto "quoted"',
    "/.datto 'single'",
    '/.datto $(touch /tmp/pwned)',
    '/.datto `touch /tmp/pwned`',
    '/.datto ${HOME} $HOME',
    '/with space/and\ttab'.replace('\t', ' '),
    '/ünïcødé/日本語',
    '/semi;colon&amp|pipe>redir<in',
    '/star*glob?[a]',
    '/back\\slash',
    '/hash #comment',
    '/tilde~/~root',
    '/-dash-inside',
    '/' + 'a' * 200,
    '/non-utf8-\udcff\udc80',
]

HOSTILE_REFUSED = [
    ('cow_relative', '/.datto\n/bin/reboot'),
    ('cow_relative', '/.datto\r'),
    ('cow_relative', '/nul\x00byte'),
    ('cow_relative', '/esc\x1b[31m'),
    ('cow_relative', '/del\x7f'),
    ('cow_relative', '/c1\x85nel'),
    ('cow_relative', '/ls\u2028sep'),
    ('cow_relative', '/lone\ud800surrogate'),
    ('cow_relative', '/tab\tinside'),
    ('cow_relative', 'relative/.datto'),
    ('cow_relative', '-rf'),
    ('cow_relative', '/'),
    ('cow_relative', '/a/../b'),
    ('cow_relative', '/a/./b'),
    ('cow_relative', '//a'),
    ('cow_relative', '/a/'),
    ('cow_relative', ''),
    ('cow_relative', None),
    ('cow_relative', 5),
    ('cow_relative', '/' + 'x' * 4095),
    ('block_device', 'sda1'),
    ('block_device', '-/dev/sda'),
    ('block_device', '/etc/passwd'),
    ('block_device', '/dev/sda\n1'),
    ('block_device', '/dev/../etc/passwd'),
    ('dbdctl', 'dbdctl'),
    ('dbdctl', '/usr/bin/dbdctl\n'),
    ('minor', -1),
    ('minor', 256),
    ('minor', True),
    ('minor', '007'),
    ('minor', '1.0'),
    ('minor', ' 1'),
    ('minor', 1.0),
    ('minor', None),
    ('mode', 'full'),
    ('mode', None),
    ('mode', 'Snapshot'),
    ('cache_size', -1),
    ('cache_size', '0300'),
    ('cache_size', '-5'),
    ('cache_size', 2 ** 64),
    ('cache_size', 1.5),
    ('cache_size', True),
    ('cache_size', '1e6'),
]


def _base(**over):
    kw = dict(minor=4, block_device=UUID_DEV, cow_relative='/.datto', mode='incremental')
    kw.update(over)
    return kw


@pytest.mark.parametrize('field, value', HOSTILE_REFUSED)
def test_render_refuses(field, value):
    with pytest.raises(DattobdError) as exc:
        rl.render(**_base(**{field: value}))
    assert exc.value.msg


def test_bytes_paths_are_decoded():
    text = rl.render(**_base(cow_relative=b'/.d\xff'))
    assert rl.parse(text)['cow_file'] == '/.d\udcff'


SHELLS = [s for s in ('sh', 'dash', 'bash') if shutil.which(s)]
if shutil.which('busybox'):
    SHELLS.append('busybox sh')

FAKE_DBDCTL = '''#!/bin/sh
out="$FAKE_OUT"
: > "$out"
for a in "$@"; do printf '%s\\0' "$a" >> "$out"; done
'''


@pytest.fixture
def fake_dbdctl(tmp_path):
    path = tmp_path / 'bin' / 'dbdctl'
    path.parent.mkdir()
    path.write_text(FAKE_DBDCTL)
    path.chmod(0o755)
    return str(path)


def _run_script(shell, script, out, cwd):
    env = dict(os.environ, FAKE_OUT=out, HOME='/nonexistent')
    argv = shell.split() + [script]
    check = subprocess.run(shell.split() + ['-n', script], capture_output=True, check=False)
    assert check.returncode == 0, check.stderr
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)


@pytest.mark.parametrize('shell', SHELLS)
@pytest.mark.parametrize('cow', HOSTILE_ACCEPTED)
def test_hostile_path_is_passed_verbatim(shell, cow, fake_dbdctl, tmp_path):
    """The rendered script passes exactly the intended argv, whatever the path holds."""
    marker = tmp_path / 'pwned'
    cow = cow.replace('/tmp/pwned', str(marker))
    text = rl.render(minor=9, block_device='/dev/disk/by-label/$(id)`id`', cow_relative=cow,
                     mode='snapshot', cache_size=4096, dbdctl=fake_dbdctl)
    script = tmp_path / 'reload_snapfleet_9'
    script.write_bytes(text.encode('utf-8', 'surrogateescape'))
    script.chmod(0o700)
    out = str(tmp_path / 'argv')
    proc = _run_script(shell, str(script), out, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    with open(out, 'rb') as f:
        argv = f.read().split(b'\0')[:-1]
    expected = [b'reload-snapshot', b'-c', b'4096', b'/dev/disk/by-label/$(id)`id`',
                cow.encode('utf-8', 'surrogateescape'), b'9']
    assert argv == expected
    assert not marker.exists()
    # the scanner reads back exactly what was rendered
    parsed = rl.parse(text, str(script))
    assert (parsed['cow_file'], parsed['block_device'], parsed['minor'], parsed['mode'],
            parsed['cache_size'], parsed['ours']) == (cow, '/dev/disk/by-label/$(id)`id`', 9,
                                                      'snapshot', 4096, True)


def test_quote():
    assert rl.quote('/dev/sda1') == '/dev/sda1'
    assert rl.quote('a b') == "'a b'"
    assert rl.quote("a'b") == "'a'\"'\"'b'"
    assert rl.quote('x=y') == "'x=y'"


def test_is_stable_name():
    assert rl.is_stable_name(UUID_DEV)
    assert rl.is_stable_name('/dev/mapper/vg-lv')
    assert not rl.is_stable_name('/dev/vdb')
    assert not rl.is_stable_name('/dev/dm-0')
    assert not rl.is_stable_name(None)


# --- parsing foreign and own scripts -----------------------------------------------------

PARSE_CASES = [
    # upstream documentation shape (issues #60/#209)
    ('#!/bin/sh\n/usr/bin/dbdctl reload-incremental /dev/disk/by-uuid/abc /.datto1 2\n',
     dict(minor=2, mode='incremental', block_device='/dev/disk/by-uuid/abc', cow_file='/.datto1',
          cache_size=None, dbdctl='/usr/bin/dbdctl', ours=False, error=None)),
    ('#!/bin/sh\nexec dbdctl reload-snapshot -c 100 /dev/vdb "/my cow" 0 # comment\n',
     dict(minor=0, mode='snapshot', block_device='/dev/vdb', cow_file='/my cow', cache_size=100,
          dbdctl='dbdctl', ours=False, error=None)),
    ('#!/bin/sh\ndbdctl reload-snapshot -c200 /dev/vdb /c 1\n',
     dict(minor=1, cache_size=200, mode='snapshot')),
    ('#!/bin/sh\nreload-snapshot /dev/vdb /c 1\n', dict(minor=1, dbdctl=None)),
    ('#!/bin/sh\n# dbdctl reload-snapshot /dev/x /c 1\necho hi\n',
     dict(minor=None, error='no reload-snapshot or reload-incremental command found')),
    ('#!/bin/sh\necho reload-snapshotty\n', dict(minor=None)),
    ('#!/bin/sh\ndbdctl reload-snapshot "/dev/x /c 1\n', dict(minor=None)),
    ('#!/bin/sh\ndbdctl reload-snapshot /dev/x /c\n', dict(minor=None)),
    ('#!/bin/sh\ndbdctl reload-snapshot /dev/x /c 0x1\n', dict(minor=None)),
    ('#!/bin/sh\ndbdctl reload-snapshot -c 012 /dev/x /c 1\n', dict(minor=None)),
    ('#!/bin/sh\nlog "reload-snapshot"; true\n', dict(minor=None)),
    ('', dict(minor=None, ours=False)),
]


@pytest.mark.parametrize('text, expected', PARSE_CASES)
def test_parse(text, expected):
    got = rl.parse(text, '/p')
    assert got['path'] == '/p'
    for key, value in expected.items():
        assert got[key] == value, key
    if got['minor'] is None:
        assert got['error']


# --- writing ---------------------------------------------------------------------------------

def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_ensure_creates_directory_and_script(tmp_path):
    d = str(tmp_path / 'etc' / 'datto' / 'dla')
    res = rl.ensure(3, UUID_DEV, '/.datto_3_7', 'incremental', directory=d)
    path = os.path.join(d, 'reload_snapfleet_3')
    assert res['changed'] is True
    assert res['path'] == path
    assert res['before'] is None
    assert res['actions'] == ['create directory %s (mode 0700)' % d, 'write %s' % path]
    assert res['warnings'] == []
    with open(path) as f:
        assert f.read() == res['after'] == rl.render(3, UUID_DEV, '/.datto_3_7', 'incremental')
    assert _mode(path) == 0o700
    assert _mode(d) == 0o700
    assert sorted(os.listdir(d)) == ['reload_snapfleet_3']  # no temporary file left
    # idempotent
    again = rl.ensure(3, UUID_DEV, '/.datto_3_7', 'incremental', directory=d)
    assert again['changed'] is False
    assert again['actions'] == []
    assert again['before'] == again['after']


def test_ensure_transition_rewrites(tmp_path):
    d = str(tmp_path)
    os.chmod(d, 0o700)
    rl.ensure(3, UUID_DEV, '/.datto_3_7', 'incremental', directory=d)
    res = rl.ensure(3, UUID_DEV, '/.datto_3_8', 'snapshot', directory=d)
    assert res['changed'] is True
    assert res['actions'] == ['write %s/reload_snapfleet_3' % d]
    assert 'reload-incremental' in res['before'] and 'reload-snapshot' in res['after']
    assert res['diff']['before'] == res['before'] and res['diff']['after'] == res['after']
    assert rl.scan(d)[0]['cow_file'] == '/.datto_3_8'


def test_ensure_check_mode_writes_nothing(tmp_path):
    d = str(tmp_path / 'dla')
    res = rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d, check_mode=True)
    assert res['changed'] is True
    assert res['actions'] == ['create directory %s (mode 0700)' % d, 'write %s/reload_snapfleet_1' % d]
    assert not os.path.exists(d)
    os.mkdir(d, 0o755)
    os.chmod(d, 0o755)
    res = rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d, check_mode=True)
    assert res['actions'] == ['chmod 0700 %s' % d, 'write %s/reload_snapfleet_1' % d]
    assert os.listdir(d) == [] and _mode(d) == 0o755


def test_ensure_tightens_modes(tmp_path):
    d = str(tmp_path)
    os.chmod(d, 0o755)
    rl.ensure(2, UUID_DEV, '/c', 'snapshot', directory=d)
    assert _mode(d) == 0o700
    path = rl.script_path(2, d)
    os.chmod(path, 0o755)
    res = rl.ensure(2, UUID_DEV, '/c', 'snapshot', directory=d, check_mode=True)
    assert res['changed'] and res['actions'] == ['chmod 0700 %s' % path]
    assert _mode(path) == 0o755
    res = rl.ensure(2, UUID_DEV, '/c', 'snapshot', directory=d)
    assert res['changed'] and _mode(path) == 0o700


def test_ensure_warnings(tmp_path):
    d = str(tmp_path)
    os.chmod(d, 0o700)
    with open(os.path.join(d, 'reload_3'), 'w') as f:
        f.write('#!/bin/sh\n/usr/bin/dbdctl reload-incremental /dev/vdb /.datto 3\n')
    res = rl.ensure(3, '/dev/vdb', '/.datto', 'incremental', directory=d)
    assert len(res['warnings']) == 2
    assert 'kernel name' in res['warnings'][0]
    assert 'reload_3 also reloads minor 3' in res['warnings'][1]


def test_ensure_refuses_foreign_file(tmp_path):
    d = str(tmp_path)
    path = rl.script_path(5, d)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\necho mine\n')
    with pytest.raises(DattobdError, match='not written by snapfleet'):
        rl.ensure(5, UUID_DEV, '/c', 'snapshot', directory=d)
    with pytest.raises(DattobdError, match='not written by snapfleet'):
        rl.remove(5, directory=d)
    with open(path) as f:
        assert f.read() == '#!/bin/sh\necho mine\n'


def test_ensure_refuses_symlink_and_bad_directory(tmp_path):
    d = str(tmp_path / 'd')
    os.mkdir(d, 0o700)
    target = str(tmp_path / 'target')
    with open(target, 'w') as f:
        f.write(rl.MARKER + '\n')
    os.symlink(target, rl.script_path(1, d))
    with pytest.raises(DattobdError, match='not a regular file'):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)
    os.symlink(d, str(tmp_path / 'link'))
    with pytest.raises(DattobdError, match='not a directory'):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=str(tmp_path / 'link'))
    with pytest.raises(DattobdError, match='not a directory'):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=target)


def test_ensure_refuses_directory_of_other_user(tmp_path, monkeypatch):
    monkeypatch.setattr(rl.os, 'geteuid', lambda: os.lstat(str(tmp_path)).st_uid + 1)
    with pytest.raises(DattobdError, match='owned by uid') as exc:
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=str(tmp_path))
    assert exc.value.hint.startswith('chown root:root')


def test_ensure_refuses_huge_file(tmp_path):
    path = rl.script_path(1, str(tmp_path))
    with open(path, 'w') as f:
        f.write('#' * (rl.MAX_SCRIPT_BYTES + 1))
    with pytest.raises(DattobdError, match='not a reload script'):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=str(tmp_path))


def test_write_failure_keeps_old_script(tmp_path, monkeypatch):
    d = str(tmp_path)
    os.chmod(d, 0o700)
    rl.ensure(1, UUID_DEV, '/old', 'incremental', directory=d)

    def boom(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(rl.os, 'rename', boom)
    with pytest.raises(DattobdError, match='No space left') as exc:
        rl.ensure(1, UUID_DEV, '/new', 'snapshot', directory=d)
    assert 'free space' in exc.value.hint
    assert os.listdir(d) == ['reload_snapfleet_1']
    assert rl.scan(d)[0]['cow_file'] == '/old'


def test_write_failure_tmp_already_gone(tmp_path, monkeypatch):
    d = str(tmp_path)

    def vanish(src, dst):
        os.unlink(src)
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(rl.os, 'rename', vanish)
    with pytest.raises(DattobdError, match='Input/output error'):
        rl.ensure(1, UUID_DEV, '/new', 'snapshot', directory=d)
    assert os.listdir(d) == []


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(rl.os, 'write', lambda fd, data: real_write(fd, bytes(data[:7])))
    res = rl.ensure(4, UUID_DEV, '/c', 'snapshot', directory=str(tmp_path))
    with open(res['path']) as f:
        assert f.read() == res['after']


@pytest.mark.parametrize('func, errno_value, match', [
    ('mkdir', 13, 'Cannot create'),
    ('chmod', 1, 'Cannot chmod'),
])
def test_directory_errors(tmp_path, monkeypatch, func, errno_value, match):
    d = str(tmp_path / 'new')
    if func == 'chmod':
        os.mkdir(d, 0o755)
        os.chmod(d, 0o755)

    def fail(*a, **k):
        raise OSError(errno_value, os.strerror(errno_value))
    monkeypatch.setattr(rl.os, func, fail)
    with pytest.raises(DattobdError, match=match):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)


def test_script_chmod_error(tmp_path, monkeypatch):
    d = str(tmp_path)
    os.chmod(d, 0o700)
    res = rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)
    os.chmod(res['path'], 0o755)

    def fail(*a, **k):
        raise OSError(1, 'Operation not permitted')
    monkeypatch.setattr(rl.os, 'chmod', fail)
    with pytest.raises(DattobdError, match='Cannot chmod'):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)


def test_lstat_and_read_errors(tmp_path, monkeypatch):
    d = str(tmp_path)
    real_lstat = os.lstat

    def lstat_fail(path):
        if path.endswith('reload_snapfleet_1') or path == d:
            raise OSError(13, 'Permission denied')
        return real_lstat(path)
    monkeypatch.setattr(rl.os, 'lstat', lstat_fail)
    with pytest.raises(DattobdError, match='Cannot inspect'):
        rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)
    with pytest.raises(DattobdError, match='Cannot inspect'):
        rl.remove(1, directory=d)
    monkeypatch.setattr(rl.os, 'lstat', real_lstat)
    path = rl.script_path(1, d)
    with open(path, 'w') as f:
        f.write(rl.MARKER + '\n')
    real_open = os.open

    def open_fail(p, flags, *a):
        if p == path:
            raise OSError(13, 'Permission denied')
        return real_open(p, flags, *a)
    monkeypatch.setattr(rl.os, 'open', open_fail)
    with pytest.raises(DattobdError, match='Cannot read'):
        rl.remove(1, directory=d)
    entry = rl.scan(d)[0]
    assert entry['minor'] is None and 'Cannot read' in entry['error']


def test_remove(tmp_path, monkeypatch):
    d = str(tmp_path)
    assert rl.remove(1, directory=d) == dict(changed=False, path=rl.script_path(1, d), before=None,
                                             actions=[])
    res = rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)
    check = rl.remove(1, directory=d, check_mode=True)
    assert check['changed'] and check['actions'] == ['remove %s' % res['path']]
    assert os.path.exists(res['path'])
    done = rl.remove(1, directory=d)
    assert done['changed'] and done['before'] == res['after']
    assert not os.path.exists(res['path'])
    rl.ensure(1, UUID_DEV, '/c', 'snapshot', directory=d)

    def fail(p):
        raise OSError(30, 'Read-only file system')
    monkeypatch.setattr(rl.os, 'unlink', fail)
    with pytest.raises(DattobdError, match='Read-only file system'):
        rl.remove(1, directory=d)


# --- scan -------------------------------------------------------------------------------

def test_scan(tmp_path):
    d = str(tmp_path)
    assert rl.scan(str(tmp_path / 'missing')) == []
    with open(os.path.join(d, 'file'), 'w') as f:
        f.write('x')
    assert rl.scan(os.path.join(d, 'file')) == []
    rl.ensure(10, UUID_DEV, '/c10', 'snapshot', cache_size=8192, directory=d)
    rl.ensure(2, UUID_DEV, '/c2', 'incremental', directory=d)
    with open(os.path.join(d, 'reload_x'), 'w') as f:
        f.write('#!/bin/sh\ndbdctl reload-incremental /dev/vdc /.d 7\n')
    os.mkdir(os.path.join(d, 'reload_dir'))
    with open(os.path.join(d, 'other'), 'w') as f:
        f.write('ignored')
    with open(os.path.join(d, '.tmp-reload_snapfleet_1.abc'), 'w') as f:
        f.write('ignored')
    entries = rl.scan(d)
    assert [os.path.basename(e['path']) for e in entries] == [
        'reload_dir', 'reload_snapfleet_10', 'reload_snapfleet_2', 'reload_x']
    assert entries[0]['error'] == 'not a regular file' and entries[0]['minor'] is None
    e10 = entries[1]
    assert (e10['minor'], e10['mode'], e10['block_device'], e10['cow_file'], e10['cache_size'],
            e10['ours'], e10['file_mode'], e10['executable']) == (
        10, 'snapshot', UUID_DEV, '/c10', 8192, True, '0700', True)
    assert entries[3]['ours'] is False and entries[3]['executable'] is False


def test_scan_unlistable_and_vanishing(tmp_path, monkeypatch):
    def fail(p):
        raise OSError(13, 'Permission denied')
    monkeypatch.setattr(rl.os, 'listdir', fail)
    with pytest.raises(DattobdError, match='Cannot list'):
        rl.scan(str(tmp_path))
    monkeypatch.setattr(rl.os, 'listdir', lambda p: ['reload_gone'])
    assert rl.scan(str(tmp_path)) == []


# --- drift -------------------------------------------------------------------------------

def _script(minor, mode='incremental', bdev=UUID_DEV, cow='/.datto', ours=True, path=None, executable=True):
    return dict(path=path or '/etc/datto/dla/reload_snapfleet_%s' % minor, minor=minor, mode=mode,
                block_device=bdev, cow_file=cow, cache_size=None, ours=ours, executable=executable,
                error=None if minor is not None else 'bad')


def _tracker(minor, state=2, bdev='/dev/vdb', cow='/.datto', error=None):
    return procinfo.Tracker(minor=minor, cow_file=cow, block_device=bdev, state=state, error=error)


def _same(a, b):
    aliases = {UUID_DEV: '/dev/vdb'}
    return aliases.get(a, a) == aliases.get(b, b)


COMPARE_CASES = [
    ('in step', [_script(0)], [_tracker(0)], []),
    ('in step snapshot', [_script(0, 'snapshot')], [_tracker(0, state=3)], []),
    ('unverified after reload', [_script(0, bdev=UUID_DEV)], [_tracker(0, state=4, bdev=UUID_DEV)], []),
    ('failed tracker still matches', [_script(0, 'snapshot')], [_tracker(0, state=5, error=-22)], []),
    ('nothing', [], [], []),
    ('script without tracker', [_script(1)], [], ['script_without_tracker']),
    ('tracker without script', [], [_tracker(2)], ['tracker_without_script']),
    ('mode mismatch', [_script(0, 'snapshot')], [_tracker(0, state=2)], ['mode_mismatch']),
    ('mode mismatch other way', [_script(0)], [_tracker(0, state=1)], ['mode_mismatch']),
    ('cow mismatch', [_script(0, cow='/.datto_0_1')], [_tracker(0, cow='/.datto_0_2')], ['cow_file_mismatch']),
    ('bdev mismatch', [_script(0, bdev='/dev/vdc')], [_tracker(0)], ['block_device_mismatch']),
    ('everything differs', [_script(0, 'snapshot', '/dev/vdc', '/x')], [_tracker(0)],
     ['mode_mismatch', 'cow_file_mismatch', 'block_device_mismatch']),
    ('duplicate and unparsable', [_script(0), _script(0, path='/etc/datto/dla/reload_0'), _script(None)],
     [_tracker(0)], ['duplicate_script', 'unparsable_script']),
    ('not executable', [_script(0, executable=False)], [_tracker(0)], ['not_executable']),
    ('several minors sorted', [_script(5, bdev='/dev/vdf'), _script(1)], [_tracker(3, bdev='/dev/vdg'), _tracker(1)],
     ['tracker_without_script', 'script_without_tracker']),
    # issue 23, measured after a hard reset mid-run: the second volume took minor 0 and rewrote
    # reload_snapfleet_0, while reload_snapfleet_1 still named it with its old COW file
    ('two scripts for one device', [_script(0, cow='/.datto_0_1'), _script(1, cow='/.datto_1_4')],
     [_tracker(0, cow='/.datto_0_1')], ['duplicate_device', 'script_without_tracker']),
    ('two scripts for one device, no tracker', [_script(0, cow='/.datto_0_1'), _script(1, bdev='/dev/vdb')], [],
     ['duplicate_device', 'duplicate_device', 'script_without_tracker', 'script_without_tracker']),
]


@pytest.mark.parametrize('name, scans, trackers, problems', COMPARE_CASES, ids=[c[0] for c in COMPARE_CASES])
def test_compare(name, scans, trackers, problems):
    got = rl.compare(scans, procinfo.ProcInfo(True, '0.12.1', trackers), same_device=_same)
    assert [p['problem'] for p in got] == problems
    for p in got:
        assert p['message']
        if p['problem'] not in ('tracker_without_script', 'unparsable_script'):
            assert p['script'] is not None


def test_duplicate_device_names_the_script_to_keep():
    got = rl.compare([_script(0, cow='/.datto_0_1'), _script(1, cow='/.datto_1_4')],
                     procinfo.ProcInfo(True, '0.12.1', [_tracker(0, cow='/.datto_0_1')]), same_device=_same)
    dup = got[0]
    assert dup['problem'] == 'duplicate_device' and dup['minor'] == 1
    assert dup['path'] == '/etc/datto/dla/reload_snapfleet_1'
    assert 'reload_snapfleet_0 matches the live tracker 0: remove /etc/datto/dla/reload_snapfleet_1' in dup['message']
    keep = rl.duplicates([_script(0, cow='/.datto_0_1'), _script(1, cow='/.datto_1_4')],
                         {0: _tracker(0, cow='/.datto_0_1')}, same_device=_same)
    assert [(e['minor'], k['minor'], [o['minor'] for o in others]) for e, k, others in keep] == [(1, 0, [0])]
    # a tracker on the device with another COW file matches neither: both are listed, none kept
    none_kept = rl.duplicates([_script(0, cow='/.datto_0_1'), _script(1, cow='/.datto_1_4')],
                              {0: _tracker(0, cow='/.datto_0_9')}, same_device=_same)
    assert [(e['minor'], k) for e, k, others in none_kept] == [(0, None), (1, None)]


def test_compare_accepts_dicts_lists_and_none():
    got = rl.compare([_script(0, 'snapshot')], [dict(minor=0, state=3, block_device=UUID_DEV, cow_file='/.datto')],
                     same_device=_same)
    assert got == []
    got = rl.compare([], [dict(minor=0, state=3, mode='bogus', block_device='/dev/vdb', cow_file='/c')])
    assert got[0]['tracker']['mode'] == 'snapshot'
    assert [p['problem'] for p in rl.compare([_script(1)], None)] == ['script_without_tracker']


def test_compare_against_golden_proc():
    """Scripts rendered for the golden trackers compare clean with the real /proc output."""
    with open(os.path.join(GOLDEN, 'datto-info', 'datto-info.state-5.json'), 'rb') as f:
        info = procinfo.parse(f.read())
    tracker = info.devices[0]
    text = rl.render(tracker.minor, tracker.block_device, tracker.cow_file, tracker.mode)
    assert rl.compare([rl.parse(text, '/x')], info) == []
    text = rl.render(tracker.minor, tracker.block_device, tracker.cow_file, 'incremental')
    assert [p['problem'] for p in rl.compare([rl.parse(text, '/x')], info)] == ['mode_mismatch']
