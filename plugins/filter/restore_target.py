# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side filter: why a block device must not be overwritten by a volume restore."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

# Device types that sit on a device and keep it in use even when nothing is mounted (lsblk TYPE).
STACKED_TYPES = frozenset(('lvm', 'crypt', 'dm', 'mpath', 'md', 'loop', 'raid0', 'raid1', 'raid4', 'raid5', 'raid6',
                           'raid10', 'linear'))


def _mount_points(node):
    points = node.get('mountpoints')
    if points is None:
        points = [node.get('mountpoint')]
    return [p for p in points if p]


def restore_target_in_use(lsblk):
    """The reasons ``lsblk --json --paths --output NAME,TYPE,MOUNTPOINT`` (or MOUNTPOINTS) of a restore
    target forbids overwriting it: every device in its tree (the target, its partitions, what sits on
    them) that is mounted or swap, and every device-mapper, md, loop or LVM device stacked on it. An
    empty list when the target is free."""
    if isinstance(lsblk, string_types):
        try:
            lsblk = json.loads(lsblk)
        except ValueError as e:
            raise AnsibleFilterError('restore_target_in_use expects lsblk --json output: %s' % e)
    if not isinstance(lsblk, dict) or not isinstance(lsblk.get('blockdevices'), list):
        raise AnsibleFilterError('restore_target_in_use expects lsblk --json output with blockdevices')
    reasons = []

    def walk(node, depth):
        if not isinstance(node, dict):
            raise AnsibleFilterError('restore_target_in_use: unexpected lsblk entry %r' % (node,))
        name, kind = node.get('name') or node.get('path') or '?', node.get('type') or '?'
        for point in _mount_points(node):
            reasons.append('%s (%s) is %s' % (name, kind, 'swap' if point == '[SWAP]' else 'mounted at ' + point))
        if depth > 0 and kind in STACKED_TYPES:
            reasons.append('%s (%s) sits on it' % (name, kind))
        for child in node.get('children') or []:
            walk(child, depth + 1)

    for top in lsblk['blockdevices']:
        walk(top, 0)
    return reasons


class FilterModule(object):
    def filters(self):
        return {'restore_target_in_use': restore_target_in_use}
