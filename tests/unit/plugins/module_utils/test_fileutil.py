# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fileutil


def test_atomic_write_replaces_content_with_mode(tmp_path):
    target = str(tmp_path / 'reload_x')
    fileutil.atomic_write(target, b'one')
    fileutil.atomic_write(target, b'two', mode=0o700)
    with open(target, 'rb') as f:
        assert f.read() == b'two'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert os.listdir(str(tmp_path)) == ['reload_x']


def test_atomic_write_failure_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    target = str(tmp_path / 'meta.json')
    fileutil.atomic_write(target, b'old')

    def boom(fd):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', boom)
    with pytest.raises(OSError):
        fileutil.atomic_write(target, b'new')
    monkeypatch.undo()
    with open(target, 'rb') as f:
        assert f.read() == b'old'
    assert os.listdir(str(tmp_path)) == ['meta.json']


def test_fsync_dir_best_effort_and_strict(tmp_path):
    missing = str(tmp_path / 'missing')
    fileutil.fsync_dir(missing)  # best effort: nothing raised
    with pytest.raises(OSError):
        fileutil.fsync_dir(missing, strict=True)
    fileutil.fsync_dir(str(tmp_path), strict=True)


def test_fsync_dir_strict_reports_fsync_failure(tmp_path, monkeypatch):
    def boom(fd):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(os, 'fsync', boom)
    fileutil.fsync_dir(str(tmp_path))
    with pytest.raises(OSError):
        fileutil.fsync_dir(str(tmp_path), strict=True)


def test_fsync_path_syncs_and_reports_errors(tmp_path, monkeypatch):
    target = tmp_path / 'img'
    target.write_bytes(b'x')
    synced = []
    monkeypatch.setattr(os, 'fsync', lambda fd: synced.append(os.readlink('/proc/self/fd/%d' % fd)))
    fileutil.fsync_path(str(target))
    assert synced == [str(target)]
    with pytest.raises(OSError):
        fileutil.fsync_path(str(tmp_path / 'gone'))


def test_atomic_write_creates_a_missing_directory_with_dir_mode(tmp_path):
    target = tmp_path / 'new' / 'conf'
    fileutil.atomic_write(str(target), b'a', mode=0o644, dir_mode=0o755)
    assert target.read_bytes() == b'a'
    assert oct(os.stat(str(tmp_path / 'new')).st_mode & 0o777) == '0o755'
    assert oct(os.stat(str(target)).st_mode & 0o777) == '0o644'
