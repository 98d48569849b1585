# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers the benchmark scripts share (imported as a sibling module: run the scripts from any directory)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


def drop(*paths):
    """Write back and drop the clean cached pages of each file or block device in ``paths`` (only theirs).

    A path that cannot be opened is skipped; a device that refuses fsync or the advice is left as it is.
    """
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            for step in (lambda: os.fsync(fd), lambda: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)):
                try:
                    step()
                except OSError:
                    pass
        finally:
            os.close(fd)
