# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host state of each guest that stayed up through the fleet scenario's side effect (backup
playbook: full, then incremental; the powered-off guest is left out by verify.yml's --hosts):
one tracker, incremental, with its reload script; the image root-only, the size of the volume,
complete and at the tracker's series and seq_id."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT and IMAGES.
from sf_testinfra import (  # noqa: F401 pylint: disable=unused-import
    test_driver_loaded_and_installed, test_guest, test_image, test_no_other_tracker, test_reload_scripts, test_tracker_state)

SCENARIO = sf.Scenario(__file__)
WANT, IMAGES = sf.backup_volumes(SCENARIO)
