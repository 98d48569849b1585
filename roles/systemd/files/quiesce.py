#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""snapfleet.dattobd: quiesce every dattobd-tracked filesystem before shutdown unmounts it.

dattobd turns a tracker dormant when its filesystem is unmounted, before the unmount itself runs:
what the filesystem writes while it unmounts is tracked by nobody. ext4 then checkpoints its
journal and XFS pushes its log's metadata to their home blocks (measured: an XFS volume backed up
after a clean reboot differed from its snapshot in a metadata block written there). The first
backup after the reboot copies the superblocks and the journal or log (the regions a filesystem
writes at mount), not those blocks.

Run by snapfleet-dattobd-quiesce.service when it stops (at shutdown, before the filesystems are
unmounted): each mount point of an active tracker's block device is frozen and thawed at once
(FIFREEZE, FITHAW: the filesystem writes everything home and covers its log while the tracker
still records), so the unmount has nothing left to write but its superblock and log. A thaw is
always attempted after a freeze; a failure is logged and never stops the shutdown (exit 0).
What it did is written to /var/lib/snapfleet/dattobd/quiesce.json (root-only): the boot id of
the boot it ended, the mount points frozen and thawed, the errors.
Usage: quiesce [--dry-run] [--state-file PATH]
"""

from __future__ import absolute_import, division, print_function

import fcntl
import json
import os
import sys
import time

PROC_INFO = '/proc/datto-info'
STATE_FILE = '/var/lib/snapfleet/dattobd/quiesce.json'
BOOT_ID = '/proc/sys/kernel/random/boot_id'
MOUNTINFO = '/proc/self/mountinfo'
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
# /proc/datto-info state bits: ACTIVE is bit 1 (2); unverified trackers (bit 2 without 1) are not.
ACTIVE = 2


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except (OSError, IOError):
        return None


def active_devices(text):
    """The block devices of the active trackers in /proc/datto-info text."""
    try:
        devices = json.loads(text or '{}').get('devices') or []
    except ValueError:
        return []
    return [d['block_device'] for d in devices
            if isinstance(d, dict) and d.get('block_device') and int(d.get('state', 0)) & ACTIVE and not d.get('error')]


def unescape(field):
    return field.replace('\\040', ' ').replace('\\011', '\t').replace('\\012', '\n').replace('\\134', '\\')


def mount_points(mountinfo, dev_numbers):
    """Mount points (writable, each once, in mountinfo order) of the devices ``dev_numbers`` ('maj:min')."""
    out = []
    for line in (mountinfo or '').splitlines():
        left, sep, right = line.partition(' - ')
        fields = left.split()
        if not sep or len(fields) < 6 or fields[2] not in dev_numbers:
            continue
        if 'ro' in fields[5].split(',') or 'ro' in (right.split()[2:3] or [''])[0].split(','):
            continue
        point = unescape(fields[4])
        if point not in out:
            out.append(point)
    return out


def dev_number(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))


def freeze_thaw(point, ioctl=fcntl.ioctl, opener=os.open):
    """Freeze then thaw the filesystem mounted at ``point``; an error text, or None."""
    try:
        fd = opener(point, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError as e:
        return 'cannot open %s: %s' % (point, e.strerror)
    try:
        try:
            ioctl(fd, FIFREEZE, 0)
        except (OSError, IOError) as e:
            return 'cannot freeze %s: %s' % (point, e.strerror)
        try:
            ioctl(fd, FITHAW, 0)
        except (OSError, IOError) as e:
            return 'cannot thaw %s: %s (it may stay frozen)' % (point, e.strerror)
        return None
    finally:
        os.close(fd)


def log(msg):
    line = 'snapfleet-dattobd-quiesce: %s' % msg
    print(line)
    try:
        with open('/dev/kmsg', 'w') as f:
            f.write(line + '\n')
    except (OSError, IOError):
        pass


def write_state(path, state):
    """Best effort: the record of this run, root-only, replaced atomically."""
    try:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        tmp = path + '.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(state, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except (OSError, IOError) as e:
        log('cannot write %s: %s' % (path, e))


def main(argv=None, proc_info=PROC_INFO, mountinfo=MOUNTINFO, ioctl=fcntl.ioctl, opener=os.open, boot_id=BOOT_ID):
    argv = sys.argv[1:] if argv is None else argv
    dry = '--dry-run' in argv
    state_file = argv[argv.index('--state-file') + 1] if '--state-file' in argv[:-1] else STATE_FILE
    devices = active_devices(read(proc_info))
    numbers = set(n for n in (dev_number(d) for d in devices) if n)
    points = mount_points(read(mountinfo), numbers)
    state = dict(schema=1, boot_id=(read(boot_id) or '').strip(), time=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                 trackers=len(devices), quiesced=[], errors=[])
    if not points:
        log('no mounted filesystem of an active tracker (%d tracker(s)): nothing to quiesce' % len(devices))
    for point in points:
        if dry:
            log('would freeze and thaw %s' % point)
            continue
        error = freeze_thaw(point, ioctl=ioctl, opener=opener)
        log(error or 'froze and thawed %s (its metadata written home while tracked)' % point)
        if error:
            state['errors'].append(error)
        else:
            state['quiesced'].append(point)
    if not dry:
        write_state(state_file, state)
    return 0


if __name__ == '__main__':
    sys.exit(main())
