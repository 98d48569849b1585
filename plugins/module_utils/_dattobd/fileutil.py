# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Durable file writes: the one atomic write of the library (image metadata, backup records, reload
scripts, engine configuration files) and the fsync helpers."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def fsync_dir(directory, strict=False):
    """fsync a directory so that a rename in it is durable.

    Best effort by default (some filesystems refuse it); ``strict=True`` lets the OSError through.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


def fsync_path(path):
    """fsync the file ``path`` (its data reach the disk); an ``OSError`` propagates."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o600, strict_dir_sync=False, dir_mode=None):
    """Write ``data`` (bytes) to ``path`` atomically and durably: tmp + fsync + rename + dir fsync.

    The temporary file lives in the same directory and its name starts with ``.tmp-`` (so globs such
    as the boot hook's ``reload_*`` never pick it up). On any failure it is removed and the
    exception (an ``OSError``) propagates; ``path`` then still holds its previous content.
    ``dir_mode``: create a missing directory (and its parents) with this mode first.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if dir_mode is not None and not os.path.isdir(directory):
        os.makedirs(directory, dir_mode)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-%s.' % os.path.basename(path), dir=directory)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        tmp = None
        fsync_dir(directory, strict=strict_dir_sync)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
