# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host state after the restore scenario: the guest runs on the root volume restored from its
backup image onto the spare disk (the old root disk detached), and that system works:

* / is the spare disk's partition (the 9 GiB disk), and holds the snapshot's marker, not the one
  the live root had when it was powered off;
* the restored system mounted its data volumes and the backup disk (its fstab), loaded the driver,
  and tracks nothing (no boot integration was installed: a full backup is the next step);
* nothing of the file-level restores is left mounted or attached; the images are root-only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT and IMAGES.
from sf_testinfra import test_driver_loaded_and_installed, test_guest, test_no_other_tracker  # noqa: F401 pylint: disable=unused-import

SCENARIO = sf.Scenario(__file__)
WANT = {}
IMAGES = {}
EXPECTED = '/root/sf-restore-expected.json'


@pytest.fixture(scope='module')
def expected(host):
    f = host.file(EXPECTED)
    assert f.exists, '%s is missing: the side effect did not boot the restored root' % EXPECTED
    return json.loads(f.content_string)


@pytest.mark.driver
def test_root_is_the_restored_volume(host, expected):
    source = host.check_output('findmnt -n -o SOURCE /')
    assert source == expected['root_device'], source
    disk = source[:-1]
    assert int(host.check_output('lsblk -n -d -b -o SIZE %s', disk)) == expected['disk_bytes']
    assert host.check_output('sha256sum %s', expected['marker_path']).split()[0] == expected['marker']


@pytest.mark.driver
def test_no_file_restore_left(host):
    assert host.run('findmnt -rn -o TARGET').stdout.count('/mnt/snapfleet-restore/') == 0
    for vol in SCENARIO.vars['dattobd_backup_volumes']:
        assert host.check_output('losetup --list --noheadings --output NAME --associated %s', vol['image']) == ''


@pytest.mark.driver
def test_images_root_only(host):
    images = [v['image'] for v in SCENARIO.vars['dattobd_backup_volumes']]
    sf.check_private(host, images, '/backup/images')
