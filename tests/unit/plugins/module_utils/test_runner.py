# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys
import time

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import runner
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, DriverTimeout


def test_run_ok_c_locale():
    rc, out, err = runner.run_timed([sys.executable, '-c', 'import os,sys; print(os.environ["LC_ALL"]); '
                                     'sys.stderr.write("e")'], timeout=20)
    assert (rc, out, err) == (0, 'C\n', 'e')


def test_run_rc_and_stdin():
    rc, out, dummy = runner.run_timed([sys.executable, '-c', 'import sys; d=sys.stdin.read(); print(d); sys.exit(3)'],
                                      timeout=20, data='hello')
    assert rc == 3 and out == 'hello\n'
    rc, out, dummy = runner.run_timed([sys.executable, '-c', 'import sys; print(sys.stdin.read())'],
                                      timeout=20, data=b'bytes')
    assert out == 'bytes\n'


def test_run_cwd_env_and_non_str_args(tmp_path):
    rc, out, dummy = runner.run_timed([sys.executable, '-c', 'import os,sys; print(os.getcwd(), sys.argv[1], '
                                       'os.environ.get("X"))', 5], timeout=20, cwd=str(tmp_path),
                                      env=runner.c_env({'X': 'y'}))
    assert out.split() == [os.path.realpath(str(tmp_path)), '5', 'y']


def test_run_big_output():
    rc, out, dummy = runner.run_timed([sys.executable, '-c', 'print("x" * 300000)'], timeout=20)
    assert len(out) == 300001


def test_real_timeout_is_quick():
    start = time.monotonic()
    with pytest.raises(DriverTimeout) as exc:
        runner.run_timed(['sleep', '5'], timeout=0.5)
    assert time.monotonic() - start < 3
    assert exc.value.details['cmd'] == ['sleep', '5']
    assert 'wedged' in exc.value.hint


def test_timeout_after_output_closed():
    # closes stdout/stderr at once but keeps running: the poll loop must time out too
    start = time.monotonic()
    with pytest.raises(DriverTimeout):
        runner.run_timed([sys.executable, '-c', 'import os,time; os.close(1); os.close(2); time.sleep(5)'],
                         timeout=0.5)
    assert time.monotonic() - start < 3


def test_argv_must_be_a_list():
    with pytest.raises(TypeError):
        runner.run_timed('echo hi')
    with pytest.raises(TypeError):
        runner.run_timed(b'echo hi')


def test_missing_binary():
    with pytest.raises(DattobdError, match='Cannot run'):
        runner.run_timed(['/nonexistent/binary'], timeout=5)


def test_read_file_timed(tmp_path):
    p = tmp_path / 'f'
    p.write_bytes(b'abc\xff')
    assert runner.read_file_timed(str(p), timeout=5) == b'abc\xff'
    assert runner.read_file_timed(str(tmp_path / 'missing')) is None


def test_read_file_timed_unreadable(tmp_path):
    d = tmp_path / 'dir'
    d.mkdir()
    with pytest.raises(DattobdError, match='Cannot read'):
        runner.read_file_timed(str(d), timeout=5)


def test_read_file_timed_times_out(tmp_path):
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(DriverTimeout) as exc:
        runner.read_file_timed(fifo, timeout=0.5)
    assert time.monotonic() - start < 3
    assert exc.value.details['path'] == fifo


def test_read_file_timed_missing_cat(tmp_path):
    p = tmp_path / 'f'
    p.write_text('x')
    with pytest.raises(DattobdError, match='Cannot run'):
        runner.read_file_timed(str(p), cat='/nonexistent/cat')
