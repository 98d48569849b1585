# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""restore_target_in_use: what keeps a volume restore from overwriting a device (lsblk --json trees)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.snapfleet.dattobd.plugins.filter.restore_target import restore_target_in_use


def dev(name, kind, mountpoint=None, children=None, **more):
    node = dict(name=name, type=kind, mountpoint=mountpoint, **more)
    if children:
        node['children'] = children
    return node


def tree(*nodes):
    return {'blockdevices': list(nodes)}


@pytest.mark.parametrize('case, lsblk, expected', [
    ('blank disk', tree(dev('/dev/vde', 'disk')), []),
    ('unmounted partitions are overwritten with the disk', tree(dev('/dev/vde', 'disk', children=[
        dev('/dev/vde1', 'part'), dev('/dev/vde2', 'part')])), []),
    ('the target itself mounted', tree(dev('/dev/vdb', 'disk', '/data-ext4')), ['/dev/vdb (disk) is mounted at /data-ext4']),
    ('a partition of the disk mounted (the root disk)', tree(dev('/dev/vda', 'disk', children=[
        dev('/dev/vda1', 'part', '/')])), ['/dev/vda1 (part) is mounted at /']),
    ('swap on a partition', tree(dev('/dev/vdc', 'disk', children=[dev('/dev/vdc1', 'part', '[SWAP]')])),
     ['/dev/vdc1 (part) is swap']),
    ('an LVM volume on a partition, not mounted', tree(dev('/dev/vdd', 'disk', children=[
        dev('/dev/vdd1', 'part', children=[dev('/dev/mapper/vg-lv', 'lvm')])])), ['/dev/mapper/vg-lv (lvm) sits on it']),
    ('an LVM volume mounted', tree(dev('/dev/vdd1', 'part', children=[dev('/dev/mapper/vg-lv', 'lvm', '/srv')])),
     ['/dev/mapper/vg-lv (lvm) is mounted at /srv', '/dev/mapper/vg-lv (lvm) sits on it']),
    ('a loop device over the target', tree(dev('/dev/vdf', 'disk', children=[dev('/dev/loop3', 'loop')])),
     ['/dev/loop3 (loop) sits on it']),
    ('the target is a loop device itself', tree(dev('/dev/loop0', 'loop')), []),
    ('util-linux 2.37+ MOUNTPOINTS', tree(dict(name='/dev/vdb', type='disk', mountpoints=['/a', '/b'])),
     ['/dev/vdb (disk) is mounted at /a', '/dev/vdb (disk) is mounted at /b']),
    ('MOUNTPOINTS of an unmounted device', tree(dict(name='/dev/vdb', type='disk', mountpoints=[None])), []),
])
def test_reasons(case, lsblk, expected):
    assert restore_target_in_use(lsblk) == expected, case
    assert restore_target_in_use(json.dumps(lsblk)) == expected, case


@pytest.mark.parametrize('bad', ['', 'not json', '{}', '{"blockdevices": "x"}', '{"blockdevices": ["x"]}', 42])
def test_bad_input_is_a_filter_error(bad):
    with pytest.raises(AnsibleFilterError):
        restore_target_in_use(bad)
