# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Molecule scenarios' testinfra helpers mark real-driver tests with ``driver``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def pytest_configure(config):
    config.addinivalue_line('markers', 'driver: needs the real dattobd driver in the guest (testinfra tests)')
