# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""boot_check.py (standalone: it runs at boot without the library) and the library read the same inputs.

The same golden recordings of the real driver go to boot_check's parsers and to the library's, and
the answers must match; the state file boot_check writes is read by boot_state.boot_requires_full.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import boot_state, cow, devices, procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as rl

from .test_systemd_boot_check import GOLDEN, MOUNT_DATA_RW, bc, devnum, golden, no_cow, script
from ..plugins.module_utils.fakehost import MOUNTINFO

SAMPLES = sorted(os.path.basename(p)[len('datto-info.'):-len('.json')]
                 for p in glob.glob(os.path.join(GOLDEN, 'datto-info.*.json')))
COW_GOLDEN = os.path.join(GOLDEN, '..', 'cow-seq1.cow')


def test_the_golden_samples_are_there():
    assert len(SAMPLES) >= 10 and 'empty' in SAMPLES and 'state-3-error' in SAMPLES


def test_schema_and_state_names_are_the_librarys():
    assert bc.SCHEMA == boot_state.SCHEMA
    assert bc.STATE_NAMES == procinfo.STATE_NAMES


@pytest.mark.parametrize('sample', SAMPLES)
def test_proc_parsers_agree(sample):
    text = golden(sample)
    ours = bc.parse_proc(text)
    lib = procinfo.parse(text)
    assert lib.loaded is True
    assert sorted(ours) == sorted(t.minor for t in lib.devices)
    for t in lib.devices:
        got = ours[t.minor]
        assert (got['state'], got['cow_file'], got['block_device']) == (t.state, t.cow_file, t.block_device)
        assert (got['error'] or None, got['seq_id'], got['uuid']) == (t.error or None, t.seq_id, t.uuid)
        assert bc.STATE_NAMES[got['state']] == procinfo.STATE_NAMES[t.state]


def test_cow_header_readers_agree():
    ours = bc.read_cow_header(COW_GOLDEN)
    lib = cow.CowFile(COW_GOLDEN, require_clean=False)
    assert ours == {'uuid': lib.uuid, 'seq_id': lib.seq_id, 'clean': lib.clean, 'index_only': lib.index_only}


@pytest.mark.parametrize('minor, bdev, cow_file, mode, cache', [
    (0, '/dev/disk/by-uuid/data', '/.datto_0_1', 'incremental', None),
    (3, '/dev/mapper/vg-data', '/backup/.datto_3_7', 'snapshot', 268435456),
    (255, '/dev/vdb', '/a dir/with space', 'incremental', None),
])
def test_reload_script_parsers_agree(minor, bdev, cow_file, mode, cache):
    text = rl.render(minor, bdev, cow_file, mode, cache)
    lib = rl.parse(text, '/etc/datto/dla/reload_snapfleet_%d' % minor)
    assert bc.parse_script(text) == (lib['mode'], lib['block_device'], lib['cow_file'], lib['minor'])
    assert (lib['mode'], lib['block_device'], lib['cow_file'], lib['minor']) == (mode, bdev, cow_file, minor)


@pytest.mark.parametrize('text', [MOUNTINFO, MOUNT_DATA_RW, MOUNT_DATA_RW + '22 1 254:1 / / ro,relatime - ext4 /dev/vda1 ro\n'])
def test_mountinfo_parsers_agree(text):
    ours = bc.parse_mountinfo(text)
    lib = devices.parse_mountinfo(text)
    assert [(m['dev'], m['mount_point'], m['writable'], m['whole']) for m in ours] == \
        [((m.major, m.minor), m.mount_point, 'rw' in m.mount_options.split(','), m.root == '/') for m in lib]


@pytest.mark.parametrize('sample, minor, expected', [
    ('state-3-error', 3, True),     # the tracker failed: the next backup must be full
    ('state-5', 0, True),           # still unverified with the filesystem mounted writable (#422)
    ('state-3', 0, False),          # a healthy tracker
])
def test_the_library_reads_the_state_file_boot_check_writes(tmp_path, sample, minor, expected):
    report = bc.check(golden(sample), [script(minor=minor)], MOUNT_DATA_RW, None, devnum=devnum, cow_reader=no_cow,
                      boot_id='b')
    path = str(tmp_path / 'boot-check.json')
    bc.write_state(path, report)
    data, mtime = boot_state.read_boot_check(path)
    assert data == report and mtime > 0
    assert boot_state.boot_requires_full(data, ['/dev/disk/by-uuid/data'], None) is expected
    assert boot_state.boot_requires_full(data, ['/dev/other'], minor) is expected
    assert boot_state.boot_requires_full(data, ['/dev/other'], minor + 1) is False
