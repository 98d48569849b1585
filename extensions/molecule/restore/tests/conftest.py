# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""testinfra tests of this Molecule scenario: the shared hooks, fixtures, checks and tests live in
``../../resources/tests/sf_testinfra.py``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'resources', 'tests'))

# pylint: disable-next=wrong-import-position,unused-import
from sf_testinfra import hostname, pytest_collection_modifyitems, pytest_configure, pytest_generate_tests, scenario, trackers  # noqa: E402,F401
