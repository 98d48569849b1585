# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host state after the lvm scenario (converge: lvm2, two volume groups, the first backup of both
LVs; side effect: an incremental cycle, a clean reboot whose initramfs activated both LVs for their
reloads, one more incremental cycle):

* both LVs mounted by /dev/mapper name with their file systems, lvext4 spanning two PVs;
* both trackers active incremental, with reload scripts that name /dev/mapper/<vg>-<lv>;
* the initramfs holds lvm and the boot hook; the boot hook's log of this boot says it activated
  each LV before the reload scripts ran, and the boot check saw every tracker come back;
* each image root-only, complete and at its tracker's series and seq_id.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT and IMAGES.
from sf_testinfra import (  # noqa: F401 pylint: disable=unused-import
    test_driver_loaded_and_installed, test_guest, test_image, test_no_other_tracker, test_reload_scripts, test_tracker_state)

SCENARIO = sf.Scenario(__file__)
LVS = SCENARIO.vars['__sf_lvs']
VGS = SCENARIO.vars['__sf_vgs']
STATE_FILE = SCENARIO.vars['__sf_state_file']
BOOT_LOG = '/run/snapfleet-dattobd/boot-reload.log'
# Volumes by mount point (the backup role was given /dev/<vg>/<lv> for one of them).
WANT = dict((lv['mount'], 'active incremental') for lv in LVS)
_IMAGES = dict((v['name'], v['image']) for v in SCENARIO.vars['dattobd_backup_volumes'])
IMAGES = dict((lv['mount'], _IMAGES[lv['lv']]) for lv in LVS)


def _ours(host, trackers):
    """{minor: block device} of our reload scripts."""
    return dict((m, sf.reload_command(host.file('%s/%s%d' % (sf.RELOAD_DIR, sf.RELOAD_PREFIX, m)).content_string)[-3])
                for m in trackers)


@pytest.mark.driver
def test_logical_volumes(host):
    """Each LV is mounted at its mount point by its /dev/mapper name with its file system (fstab,
    nofail), and lvext4 spans both physical volumes of its volume group."""
    for lv in LVS:
        source, fstype = host.check_output('findmnt -n -o SOURCE,FSTYPE --mountpoint %s', lv['mount']).split()
        assert (source, fstype) == (lv['mapper'], lv['fs']), (lv, source, fstype)
        assert host.check_output('lvs --noheadings -o lv_dm_path %s/%s', lv['vg'], lv['lv']).strip() == lv['mapper']
        fstab = [line.split() for line in host.file('/etc/fstab').content_string.splitlines()]
        assert [lv['mapper'], lv['mount'], lv['fs']] in [f[:3] for f in fstab if f], fstab
    devices = host.check_output('lvs --noheadings -o devices %s/%s', LVS[0]['vg'], LVS[0]['lv'])
    assert all(pv in devices for pv in VGS[0]['pvs']), devices


@pytest.mark.driver
def test_reload_scripts_name_the_mapper_devices(host, trackers):
    """lvext4 was given as /dev/<vg>/<lv>, lvxfs by its mount point: both scripts name /dev/mapper/<vg>-<lv>."""
    assert sorted(_ours(host, trackers).values()) == sorted(lv['mapper'] for lv in LVS)


@pytest.mark.driver
def test_initramfs_holds_lvm(host):
    kernel = host.check_output('uname -r')
    listing = host.check_output('lsinitramfs /boot/initrd.img-%s', kernel)
    missing = sf.initramfs_missing(listing, ['(usr/)?sbin/lvm', '(usr/)?sbin/snapfleet-dattobd-boot',
                                             'scripts/local-premount/snapfleet-dattobd'])
    assert not missing, 'the initramfs of %s lacks %s' % (kernel, missing)


@pytest.mark.driver
def test_boot_hook_activated_each_lv_before_its_reload(host, trackers):
    """This boot (the reboot of the side effect): the boot hook found each LV inactive, activated it, then
    ran its reload script (status 0); nothing was skipped."""
    log = host.file(BOOT_LOG).content_string.splitlines()
    by_device = dict((dev, m) for m, dev in _ours(host, trackers).items())
    for lv in LVS:
        line = 'lv %s/%s activated %s' % (lv['vg'], lv['lv'], lv['mapper'])
        script = 'script %s%d rc 0' % (sf.RELOAD_PREFIX, by_device[lv['mapper']])
        assert line in log and script in log, log
        assert log.index(line) < log.index(script), log
    assert not [line for line in log if ' skipped ' in line], log
    assert log[-1].startswith('done '), log


@pytest.mark.driver
def test_boot_check_state(host, trackers):
    sf.check_private(host, [STATE_FILE], STATE_FILE.rsplit('/', 1)[0])
    state = json.loads(host.file(STATE_FILE).content_string)
    assert state['boot_id'] == host.file('/proc/sys/kernel/random/boot_id').content_string.strip()
    assert state['ok'] is True and state['rebaseline_required'] == [] and state['undeclared_trackers'] == [], state
    assert dict((v['minor'], v['status']) for v in state['volumes']) == dict((m, 'ok') for m in trackers), state
    log = state['initramfs_log']
    assert log['completed'] is True and log['skipped'] == {}, log
    assert sorted(log['activated']) == sorted('%s/%s' % (lv['vg'], lv['lv']) for lv in LVS), log
    assert log['scripts'] == dict(('%s%d' % (sf.RELOAD_PREFIX, m), 0) for m in trackers), log
