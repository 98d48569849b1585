# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run commands with a hard timeout that survives a wedged kernel driver.

``subprocess.run(timeout=...)`` kills the child on timeout and then *waits* for it. A process
blocked in uninterruptible sleep (D state) inside a dattobd ioctl or a read of
``/proc/datto-info`` (dattobd 0.12.1 after a successful ``expand-cow-file``) never dies, so
that wait would hang the play forever. :func:`run_timed` sends SIGKILL and abandons the child
instead: its pipes are ours and are closed, so the module can still report and exit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal
import subprocess
import time

from .errors import DattobdError, DriverTimeout

C_LOCALE_ENV = {'LC_ALL': 'C', 'LANG': 'C', 'LANGUAGE': 'C'}

# Seconds. Overridable per call; modules expose a ``timeout`` option.
DEFAULT_TIMEOUT = 60


def c_env(extra=None):
    env = dict(os.environ)
    env.update(C_LOCALE_ENV)
    if extra:
        env.update(extra)
    return env


def run_timed(argv, timeout=DEFAULT_TIMEOUT, env=None, data=None, cwd=None):
    """Run ``argv`` (a list, never a shell string) and return ``(rc, stdout, stderr)`` as text.

    Raises :class:`DriverTimeout` when the command does not finish within ``timeout`` seconds
    (the child is killed and abandoned, never waited for), and :class:`DattobdError` when it
    cannot be started at all.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError('argv must be a list')
    argv = [a if isinstance(a, (str, bytes)) else str(a) for a in argv]
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
            env=env if env is not None else c_env(), cwd=cwd)
    except OSError as exc:
        raise DattobdError('Cannot run %s: %s.' % (argv[0], exc.strerror or exc),
                           hint='Check that it is installed and executable.', cmd=list(argv))
    deadline = time.monotonic() + timeout
    if data is not None:
        _feed(proc, data)
    out, err, rc = _collect(proc, deadline)
    if rc is None:
        _abandon(proc)
        raise DriverTimeout(
            '%s did not finish within %s seconds.' % (' '.join(str(a) for a in argv), timeout),
            hint=('If it is a dattobd call, the driver may be wedged (dattobd 0.12.x hangs every '
                  'ioctl and /proc/datto-info read after a successful expand-cow-file): check '
                  '"ps -eo pid,stat,cmd | grep \' D\'" and dmesg; only a hard reset clears that '
                  '(docs/troubleshooting.md).'),
            cmd=list(argv), timeout=timeout)
    proc.stdout.close()
    proc.stderr.close()
    return (rc, b''.join(out).decode('utf-8', 'surrogateescape'),
            b''.join(err).decode('utf-8', 'surrogateescape'))


def _feed(proc, data):
    """Write ``data`` (bytes or text) to the child's stdin and close it; a child that does not read is fine."""
    try:
        proc.stdin.write(data if isinstance(data, bytes) else data.encode('utf-8'))
    except OSError:
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _collect(proc, deadline):
    """``(stdout chunks, stderr chunks, exit status)`` read until both streams end and the child exits, or
    ``None`` as the status when ``deadline`` (time.monotonic) passes first."""
    out, err = [], []
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    open_fds = set(streams)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, err, None
        ready, dummy, dummy2 = select.select(list(open_fds), [], [], min(remaining, 1.0))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                streams[fd].append(chunk)
            else:
                open_fds.discard(fd)
    while True:
        rc = proc.poll()
        if rc is not None:
            return out, err, rc
        if time.monotonic() >= deadline:
            return out, err, None
        time.sleep(0.01)


def _abandon(proc):
    """Kill a child that ran past its deadline; reap it if it died at once, else abandon it (a child stuck in
    D state is never waited for)."""
    try:
        proc.send_signal(signal.SIGKILL)
    except OSError:
        pass
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        pass


def read_file_timed(path, timeout=10, cat='cat'):
    """Read a (proc) file in a child process so that a wedged driver cannot hang us.

    Returns the content as ``bytes``, or ``None`` when the file does not exist.
    """
    if not os.path.exists(path):
        return None
    try:
        proc = subprocess.Popen([cat, '--', path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, close_fds=True, env=c_env())
    except OSError as exc:
        raise DattobdError('Cannot run %s to read %s: %s.' % (cat, path, exc.strerror or exc))
    chunks = []
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            try:
                proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
            proc.stdout.close()
            proc.stderr.close()
            raise DriverTimeout(
                'Reading %s did not finish within %s seconds.' % (path, timeout),
                hint=('dattobd 0.12.x leaks its global lock after a successful expand-cow-file; every later '
                      'ioctl and /proc/datto-info read then blocks forever. Only a hard reset clears it '
                      '(docs/troubleshooting.md).'),
                path=path, timeout=timeout)
        ready, dummy, dummy2 = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    rc = proc.wait()
    if rc != 0:
        if not os.path.exists(path):
            return None
        raise DattobdError('Cannot read %s: %s' % (path, err.decode('utf-8', 'replace').strip()), path=path)
    return b''.join(chunks)
