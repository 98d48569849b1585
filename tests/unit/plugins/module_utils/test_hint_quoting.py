# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hints meant to be pasted into a shell quote the paths they name (a quote and a space here)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as backup_lib
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import devices as devices_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as image_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as reload_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import tracker as tracker_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

NAME = "o'brien $(x) backups"


def _commands(text):
    """The shell commands of a hint 'Run: a && b' (or a bare command), split as sh would."""
    if ': ' in text:
        text = text.split(': ', 1)[1]
    return [shlex.split(part) for part in text.rstrip('.').split(' && ')]


def test_install_d_hint(tmp_path):
    parent = str(tmp_path / NAME)
    with pytest.raises(DattobdError) as err:
        backup_lib.check_destination(os.path.join(parent, 'x.img'))
    assert _commands(err.value.hint) == [['install', '-d', '-m', '0700', '-o', 'root', parent]]


def test_private_state_dir_hint(tmp_path):
    path = tmp_path / NAME
    path.mkdir(mode=0o755)
    os.chmod(str(path), 0o755)
    with pytest.raises(DattobdError) as err:
        backup_lib._private_dir(str(path))
    assert _commands(err.value.hint) == [['chown', 'root', str(path)], ['chmod', '0700', str(path)]]


def test_check_private_hint_and_fix(tmp_path):
    path = tmp_path / NAME
    path.mkdir(mode=0o755)
    os.chmod(str(path), 0o755)
    with pytest.raises(DattobdError) as err:
        image_mod.check_private(str(path / 'x.img'))
    assert _commands(err.value.hint) == [['chmod', '0700', str(path)]]
    assert [shlex.split(c) for c in err.value.details['fix']] == [['chmod', '0700', str(path)]]


class _Dev(object):
    given = path = '/dev/vdb'
    mounted = True
    read_only = True
    mount_point = '/mnt/' + NAME


def test_remount_hint():
    with pytest.raises(DattobdError) as err:
        devices_mod.require_mounted_rw(_Dev())
    inner = err.value.hint.split('(', 1)[1].rsplit(')', 1)[0]
    assert shlex.split(inner) == ['mount', '-o', 'remount,rw', _Dev.mount_point]


def test_umount_hint(monkeypatch):
    class _Mount(object):
        mount_point = '/mnt/' + NAME
    monkeypatch.setattr(tracker_mod._devices, 'node_mount', lambda node, host: _Mount())
    with pytest.raises(DattobdError) as err:
        tracker_mod._check_not_mounted(3, None)
    inner = err.value.hint.split('(', 1)[1].split(') and', 1)[0]
    assert shlex.split(inner) == ['umount', _Mount.mount_point]


def test_chown_reload_dir_hint(tmp_path, monkeypatch):
    path = tmp_path / NAME
    path.mkdir(mode=0o700)
    monkeypatch.setattr(reload_mod.os, 'geteuid', lambda: os.getuid() + 1)
    with pytest.raises(DattobdError) as err:
        reload_mod._ensure_directory(str(path), False, [])
    assert shlex.split(err.value.hint) == ['chown', 'root:root', str(path)]
