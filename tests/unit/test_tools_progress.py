# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress lines of the developer tools (tools/lib.sh): a DKMS build's configure test N of M,
then its objects, in the line with_progress prints every SNAPFLEET_PROGRESS_SECONDS."""

from __future__ import annotations

import os
import subprocess

import pytest

LIB = os.path.join(os.path.dirname(__file__), '..', '..', 'tools', 'lib.sh')


def _lib(script, *args, env=None):
    """Run a bash snippet with tools/lib.sh sourced; $1... are args. No build root unless env gives one."""
    full = {k: v for k, v in os.environ.items() if k not in ('SNAPFLEET_BUILD_ROOT', 'PROGRESS_BUILD_ROOT')}
    full.update(env or {})
    return subprocess.run(['bash', '-c', '. "$0"; ' + script, os.path.abspath(LIB)] + [str(a) for a in args],
                          env=full, capture_output=True, text=True, check=False, timeout=60)


def _build_dir(root, version='0.12.1'):
    build = root / 'var' / 'lib' / 'dkms' / 'dattobd' / version / 'build'
    build.mkdir(parents=True)
    for name in ('snap-device', 'tracer', 'cow-manager'):
        (build / (name + '.c')).write_text('')
    return build


def test_dkms_progress_prints_nothing_without_a_build(tmp_path):
    res = _lib('dkms_progress "$1"; echo "rc=$?"', tmp_path)
    assert res.stdout == 'rc=0\n', res.stderr


@pytest.mark.parametrize('line, objects, expected', [
    ('configure test 57 of 112 for 6.1.0-57-amd64', [], 'configure test 57 of 112 for 6.1.0-57-amd64'),
    ('configured for 6.1.0-57-amd64 (112 configure tests); compiling', ['tracer'],
     'configured for 6.1.0-57-amd64 (112 configure tests); compiling: 1 of 3 objects'),
    ('configured for 6.1.0-57-amd64 from the cached kernel-config.h; compiling', ['tracer', 'snap-device', 'cow-manager'],
     'configured for 6.1.0-57-amd64 from the cached kernel-config.h; compiling: 3 of 3 objects'),
    ('configure failed for 6.1.0-57-amd64 (genconfig.sh exit status 1)', [],
     'configure failed for 6.1.0-57-amd64 (genconfig.sh exit status 1)'),
])
def test_dkms_progress_reads_the_prebuild_line_and_counts_objects(tmp_path, line, objects, expected):
    build = _build_dir(tmp_path)
    (build / '.snapfleet-progress').write_text(line + '\n')
    for name in objects:
        (build / (name + '.o')).write_text('')
    (build / 'stray.o').write_text('')   # an object of no source of the module is not counted
    (build / 'dattobd.mod.c').write_text('')  # nor kbuild's own source and object, made at the link
    (build / 'dattobd.mod.o').write_text('')
    res = _lib('dkms_progress "$1"', tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == expected


def test_dkms_progress_reads_the_newest_build(tmp_path):
    old = _build_dir(tmp_path, '0.12.0')
    new = _build_dir(tmp_path, '0.12.1')
    (old / '.snapfleet-progress').write_text('configure test 1 of 100 for 6.1.0-57-amd64\n')
    (new / '.snapfleet-progress').write_text('configure test 9 of 112 for 6.1.0-57-amd64\n')
    os.utime(str(old / '.snapfleet-progress'), (1000, 1000))
    assert _lib('dkms_progress "$1"', tmp_path).stdout == 'configure test 9 of 112 for 6.1.0-57-amd64'
    os.utime(str(old / '.snapfleet-progress'), None)
    os.utime(str(new / '.snapfleet-progress'), (1000, 1000))
    assert _lib('dkms_progress "$1"', tmp_path).stdout == 'configure test 1 of 100 for 6.1.0-57-amd64'


def test_with_progress_adds_the_build_line_during_the_build_task(tmp_path):
    build = _build_dir(tmp_path / 'root')
    (build / '.snapfleet-progress').write_text('configure test 3 of 112 for 6.1.0-57-amd64\n')
    log = tmp_path / 'play.log'
    # a "playbook" that sits in the build task for a while, then in another task
    play = ('echo "TASK [snapfleet.dattobd.engine : Build the module (configure tests, then kbuild)] ****"; '
            'sleep 2.5; echo "TASK [snapfleet.dattobd.engine : Export the binary module] ****"; sleep 2.5')
    script = ('SNAPFLEET_PROGRESS_SECONDS=1 with_progress engine "$1" bash -c "$2"; echo "rc=$?"')
    res = _lib(script, log, play, env={'SNAPFLEET_BUILD_ROOT': str(tmp_path / 'root')})
    assert res.stdout == 'rc=0\n'
    lines = [x for x in res.stderr.splitlines() if x.startswith('[snapfleet] engine: ')]
    building = [x for x in lines if 'at: snapfleet.dattobd.engine : Build the module' in x]
    exporting = [x for x in lines if 'at: snapfleet.dattobd.engine : Export the binary module' in x]
    assert building and exporting, res.stderr
    assert all(x.endswith('kbuild) - configure test 3 of 112 for 6.1.0-57-amd64') for x in building), building
    assert all(x.endswith('engine : Export the binary module') for x in exporting), exporting


def test_with_progress_keeps_the_exit_status_and_needs_no_build_root(tmp_path):
    log = tmp_path / 'play.log'
    script = ('SNAPFLEET_PROGRESS_SECONDS=1 with_progress engine "$1" bash -c "$2" || echo "rc=$?"')
    play = 'echo "TASK [Build the module (configure tests, then kbuild)] ****"; sleep 1.5; exit 3'
    res = _lib(script, log, play)
    assert res.stdout == 'rc=3\n', res.stderr
    assert '[snapfleet] engine: 1s, at: Build the module (configure tests, then kbuild)\n' in res.stderr
