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
# The version of the state file's document (docs/boot.md); roles/systemd/files/boot_check.py writes
# it (it runs at boot without this library, so it has its own copy; a parity test compares them).
SCHEMA = 1


def read_boot_check(path=None):
    """The boot check of the systemd role as ``(data, mtime)``, or ``(None, None)`` (``path``: its state file)."""
    path = path or BOOT_CHECK_PATH
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data, os.stat(path).st_mtime
    except (IOError, OSError, ValueError):
        return None, None


def boot_requires_full(boot, device_names, minor):
    """Whether the boot check's state file says the next backup of this volume must be full.

    Reads the document boot_check.py writes (schema :data:`SCHEMA`, described in docs/boot.md), and
    only its keys: the top-level ``rebaseline_required`` (a list of minors) and the ``volumes``
    (``minor``, ``block_device``, ``rebaseline_required``). ``device_names``: every name of the
    volume's block device; ``minor``: its tracker's minor, if known. A document without this
    schema number is not read (False): its keys may mean something else.
    """
    return boot_full_entry(boot, device_names, minor) is not None


def boot_full_entry(boot, device_names, minor):
    """The boot check's verdict that asks a full backup of this volume, or None (see :func:`boot_requires_full`).

    A dict ``status`` (``missing``, ``failed``, ``unverified``, ``late`` or None when only the
    top-level list names the minor), ``error_name`` and ``message`` (the boot check's sentence).
    """
    if not isinstance(boot, dict) or boot.get('schema') != SCHEMA:
        return None
    names = set(device_names)
    hit = None
    for volume in boot.get('volumes') or []:
        if not isinstance(volume, dict) or volume.get('rebaseline_required') is not True:
            continue
        if volume.get('block_device') in names or (minor is not None and volume.get('minor') == minor):
            hit = volume
            break
    required = boot.get('rebaseline_required')
    if hit is None and not (minor is not None and isinstance(required, list) and minor in required):
        return None
    hit = hit or {}
    return {'status': hit.get('status'), 'error_name': hit.get('error_name'), 'message': hit.get('message')}


def read_boot_id(path=None):
    """This boot's id (``/proc/sys/kernel/random/boot_id``), or None when it cannot be read."""
    path = path or BOOT_ID_PATH
    try:
        with open(path) as handle:
            return handle.read().strip() or None
    except (IOError, OSError):
        return None
