# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""resources/files/boot_from_disk.py: the qemu command line of a guest started from one of its disks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ..conftest import load_script

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..')
PATH = os.path.join(ROOT, 'extensions', 'molecule', 'resources', 'files', 'boot_from_disk.py')


BFD = load_script(PATH, 'boot_from_disk')
G = '/tmp/m/sf-restore'


def drive(name, fmt='raw'):
    return ['-drive', 'file=%s/%s,if=virtio,format=%s,cache=unsafe' % (G, name, fmt)]


ARGV = (['qemu-system-x86_64', '-name', 'sf-restore', '-m', '2048'] + drive('root.qcow2', 'qcow2')
        + ['-netdev', 'user,id=n0,hostfwd=tcp:127.0.0.1:4022-:22', '-daemonize', '-pidfile', G + '/qemu.pid']
        + drive('ext4.raw') + drive('backup.raw') + drive('spare.raw'))


def test_the_disk_takes_the_root_disks_place_and_the_root_disk_is_gone():
    new = BFD.reorder(ARGV, G + '/root.qcow2', G + '/spare.raw')
    drives = [new[i + 1].split(',')[0] for i in range(len(new) - 1) if new[i] == '-drive']
    assert drives == ['file=%s/%s' % (G, n) for n in ('spare.raw', 'ext4.raw', 'backup.raw')]
    assert new.index('-drive') == ARGV.index('-drive')      # first drive where the root disk was
    rest = [a for a in new if 'file=' not in a and a != '-drive']
    assert rest == [a for a in ARGV if 'file=' not in a and a != '-drive']   # every other argument kept


def test_an_unknown_disk_is_refused(capsys):
    with pytest.raises(SystemExit):
        BFD.reorder(ARGV, G + '/root.qcow2', G + '/nope.raw')
    assert 'nope.raw is not a disk of this guest' in capsys.readouterr().err
