# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the backup cycle reads of the boot: the systemd role's boot check state file and the boot id."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

BOOT_CHECK_PATH = '/var/lib/snapfleet/dattobd/boot-check.json'
BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id'


def read_boot_check(path=BOOT_CHECK_PATH):
    """The boot check of the systemd role as ``(data, mtime)``, or ``(None, None)``."""
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data, os.stat(path).st_mtime
    except (IOError, OSError, ValueError):
        return None, None


def boot_requires_full(boot, device_names, minor):
    """Whether the boot check asks for a full backup of this volume (or of every volume)."""
    if not isinstance(boot, dict):
        return False
    for key in ('full_backup_required', 'rebaseline_required'):
        if boot.get(key) is True:
            return True
        if isinstance(boot.get(key), list) and minor is not None and minor in boot[key]:
            return True
    entries = []
    for key in ('volumes', 'trackers', 'results'):
        if isinstance(boot.get(key), list):
            entries.extend(e for e in boot[key] if isinstance(e, dict))
    for entry in entries:
        if not (entry.get('full_backup_required') or entry.get('rebaseline_required')):
            continue
        names = set(str(entry.get(k)) for k in ('device', 'block_device', 'stable_name') if entry.get(k))
        if names & set(device_names) or (minor is not None and entry.get('minor') == minor):
            return True
    return False


def read_boot_id(path=BOOT_ID_PATH):
    """This boot's id (``/proc/sys/kernel/random/boot_id``), or None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read().strip() or None
    except (IOError, OSError):
        return None
