# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host state after the faults scenario's side effect (a wedged driver, the hard reset that cleared
it, the re-baseline and one incremental cycle; a hard reset in the middle of a copy of a fourth
volume and its re-baseline by comparison): the four volumes tracked in incremental mode with their
reload scripts, each image root-only, complete and at its tracker's series and seq_id, no wedge
marker of this boot, and no COW file named like ours that no tracker uses."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT and IMAGES.
from sf_testinfra import (  # noqa: F401 pylint: disable=unused-import
    test_driver_loaded_and_installed, test_guest, test_image, test_no_other_tracker, test_reload_scripts, test_tracker_state)

SCENARIO = sf.Scenario(__file__)
# The cases the side effect ran (SNAPFLEET_FAULTS_CASES, as in vars/scenario.yml): 1-3 leave the
# three volumes tracked, 5 its own volume (a hard reset mid-copy, then the re-baseline by comparison).
CASES = os.environ.get('SNAPFLEET_FAULTS_CASES', '1 2 3 5').split()
WANT, IMAGES = sf.backup_volumes(SCENARIO) if '1' in CASES else ({}, {})
MIDCOPY = SCENARIO.vars['__sf_midcopy']
if '5' in CASES:
    WANT[MIDCOPY['device']] = 'active incremental'
    IMAGES[MIDCOPY['device']] = MIDCOPY['image']
MARKER = '/run/snapfleet-dattobd/driver-wedged.json'


@pytest.mark.driver
def test_no_wedge_marker_after_the_reset(host):
    """The reset cleared the wedge: no marker, or only one of an earlier boot."""
    marker = host.file(MARKER)
    if marker.exists:
        boot_id = host.file('/proc/sys/kernel/random/boot_id').content_string.strip()
        assert json.loads(marker.content_string).get('boot_id') != boot_id, 'the driver is marked wedged in this boot'


@pytest.mark.driver
def test_only_live_cow_files(host, trackers):
    """Every file named like our COW files on a backed-up volume is a live tracker's."""
    live = sorted('%s/%s' % (mount.rstrip('/'), sf.tracker_of(host, trackers, mount)['cow_file'].lstrip('/'))
                  for mount in WANT)
    found = sorted(path for mount in WANT
                   for path in host.check_output('find %s -xdev -maxdepth 2 -name %s', mount, '.datto_*').split())
    assert found == live
