# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Numbers and formats the whole library shares (the one place they are written down).

The /proc/datto-info state names live in ``procinfo.STATE_NAMES`` (the parser's concern).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

# dattobd tracks, copies and indexes 4 KiB blocks (COW index entries, image blocks, free-space maps).
BLOCK_SIZE = 4096
# The highest minor dattobd accepts (DATTO_MAX_MINOR; /dev/datto0 .. /dev/datto255).
MAX_MINOR = 255
# The largest value of an unsigned long module or ioctl argument on x86_64.
MAX_ULONG = 2 ** 64 - 1


def now_text():
    """The current UTC time as the records and sidecars write it (``2026-01-31T12:00:00Z``)."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def blocks_of(size):
    """How many ``BLOCK_SIZE`` blocks hold ``size`` bytes (a partial last block counts)."""
    return (size + BLOCK_SIZE - 1) // BLOCK_SIZE
