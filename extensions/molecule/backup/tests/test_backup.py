# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host state after the backup scenario's side effect (three cycles, a SIGTERM mid-copy and a
full backup disk, then the recovery run): both volumes tracked in incremental mode with their
reload scripts, each image root-only, complete (no sync pending) and at the tracker's series and
seq_id, so the next cycle is incremental."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT and IMAGES.
from sf_testinfra import (  # noqa: F401 pylint: disable=unused-import
    test_driver_loaded_and_installed, test_guest, test_image, test_no_other_tracker, test_reload_scripts, test_tracker_state)

SCENARIO = sf.Scenario(__file__)
WANT, IMAGES = sf.backup_volumes(SCENARIO)
STATE_DIR = '/var/lib/snapfleet/dattobd/backups'


@pytest.mark.driver
def test_backup_state_dir_private(host):
    """The backup records and locks: root-only files in a root-only directory."""
    files = ['%s/%s' % (STATE_DIR, name) for name in host.file(STATE_DIR).listdir()]
    assert files, '%s is empty: no backup record was written' % STATE_DIR
    sf.check_private(host, files, STATE_DIR)
