# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host state after the default scenario (converge: tasks/lifecycle.yml; verify's bad engine
sources must have changed nothing): dattobd loaded from DATTOBD_SOURCE and installed by DKMS,
the ext4 volume tracked in snapshot mode (its /dev/datto<N> readable), the xfs volume in
incremental mode, one boot reload script per tracker."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT (no backup image here: no test_image).
from sf_testinfra import (  # noqa: F401 pylint: disable=unused-import
    test_driver_loaded_and_installed, test_guest, test_no_other_tracker, test_reload_scripts, test_tracker_state)

SCENARIO = sf.Scenario(__file__)
# tasks/lifecycle.yml: ext4 ends in snapshot mode, every other file system in incremental mode.
WANT = dict((d['mount'], 'active snapshot' if d['fs'] == 'ext4' else 'active incremental') for d in SCENARIO.disks())


@pytest.mark.driver
def test_snapshot_device(host, trackers, mount):
    """A snapshot-mode tracker has a readable /dev/datto<N>; an incremental one has none."""
    tracker = sf.tracker_of(host, trackers, mount)
    device = '/dev/datto%d' % tracker['minor']
    if WANT[mount].endswith('snapshot'):
        assert host.run_test('test -b %s', device).rc == 0, '%s is not a block device' % device
        host.check_output('dd if=%s of=/dev/null bs=4096 count=1 status=none', device)
    else:
        assert not host.file(device).exists, '%s exists although %s is incremental' % (device, mount)
