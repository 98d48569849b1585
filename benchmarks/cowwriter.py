# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmarks' access to the tests' synthetic COW file writer (tests/unit/plugins/module_utils/cowfile.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os


def load():
    """``write_cow`` of tests/unit/plugins/module_utils/cowfile.py (not shipped with the collection)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, '..', 'tests', 'unit', 'plugins', 'module_utils', 'cowfile.py')
    spec = importlib.util.spec_from_file_location('snapfleet_cowfile', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_cow
