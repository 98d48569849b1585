# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""FIEMAP extents, block masks, and the live-COW-file mask used by image verification."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import struct

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import fiemap
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import verify as verify_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.procinfo import Tracker

BS = 4096


def _fake_ioctl(extents_per_call):
    """An FS_IOC_FIEMAP stand-in returning the given batches of (logical, physical, length, flags)."""
    calls = iter(extents_per_call)

    def ioctl(fd, request, buf, mutate):
        assert request == fiemap.FS_IOC_FIEMAP and mutate
        batch = next(calls)
        header = list(fiemap._HEADER.unpack_from(buf, 0))
        header[3] = len(batch)
        fiemap._HEADER.pack_into(buf, 0, *header)
        for i, (logical, physical, length, flags) in enumerate(batch):
            fiemap._EXTENT.pack_into(buf, fiemap._HEADER.size + i * fiemap._EXTENT.size,
                                     logical, physical, length, 0, 0, flags, 0, 0, 0)
        return 0
    return ioctl


def test_extents_follows_batches_until_last(tmp_path):
    path = str(tmp_path / 'f')
    open(path, 'wb').close()
    ioctl = _fake_ioctl([[(0, 40960, 4096, 0)], [(4096, 81920, 8192, fiemap.FIEMAP_EXTENT_LAST)]])
    assert fiemap.extents(path, batch=1, ioctl=ioctl) == [(40960, 4096), (81920, 8192)]


def test_extents_empty_file_and_unknown_location(tmp_path):
    path = str(tmp_path / 'f')
    open(path, 'wb').close()
    assert fiemap.extents(path, ioctl=_fake_ioctl([[]])) == []
    with pytest.raises(ValueError, match='without a known location'):
        fiemap.extents(path, ioctl=_fake_ioctl([[(0, 0, 4096, fiemap.FIEMAP_EXTENT_UNKNOWN)]]))


def test_extents_on_a_real_file(tmp_path):
    path = str(tmp_path / 'data')
    with open(path, 'wb') as f:
        f.write(os.urandom(3 * BS))
        f.flush()
        os.fsync(f.fileno())
    try:
        found = fiemap.extents(path)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
            pytest.skip('this filesystem does not support FIEMAP')
        raise
    assert sum(n for dummy, n in found) >= 3 * BS
    assert all(p % 512 == 0 for p, dummy in found)


def _tracker():
    return Tracker(minor=3, cow_file='/.datto_3_2', block_device='/dev/vdb', state=3, seq_id=2,
                   uuid='ab' * 16)


def _write(path, blocks):
    with open(path, 'wb') as f:
        for b in blocks:
            f.write(bytes([b]) * BS)


def test_classify_masks_live_cow_blocks_and_keeps_real_mismatches(tmp_path, monkeypatch):
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    _write(dev, range(8))
    _write(img, [0, 1, 99, 99, 4, 5, 6, 99])       # blocks 2, 3 and 7 differ
    monkeypatch.setattr(verify_mod, 'live_cow_ranges', lambda tracker, host=None: [(2, 4)])
    result = {}
    real = verify_mod.classify_mismatches([2, 3, 7], dev, img, _tracker(), result)
    assert real == [7]
    assert result['verify_masked_blocks'] == 2
    assert 'verify_mask_note' not in result


def test_classify_without_extents_keeps_every_mismatch(tmp_path, monkeypatch):
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    _write(dev, range(4))
    _write(img, [0, 9, 2, 3])

    def boom(tracker, host=None):
        raise OSError(errno.EOPNOTSUPP, 'Operation not supported')
    monkeypatch.setattr(verify_mod, 'live_cow_ranges', boom)
    result = {}
    assert verify_mod.classify_mismatches([1], dev, img, _tracker(), result) == [1]
    assert result['verify_masked_blocks'] == 0
    assert 'unknown' in result['verify_mask_note']
    assert verify_mod.classify_mismatches([1], dev, img, None) == [1]


def test_live_cow_ranges_needs_a_whole_filesystem_mount(monkeypatch):
    class Dev(object):
        mount = None
    monkeypatch.setattr(verify_mod.devices, 'resolve', lambda device, host=None: Dev())
    with pytest.raises(sync_mod.SyncError, match='not mounted as a whole filesystem'):
        verify_mod.live_cow_ranges(_tracker())


def test_live_cow_ranges_joins_mount_point_and_relative_cow(monkeypatch):
    class Mount(object):
        root = '/'
        mount_point = '/data'

    class Dev(object):
        mount = Mount()
    seen = []
    monkeypatch.setattr(verify_mod.devices, 'resolve', lambda device, host=None: Dev())
    monkeypatch.setattr(sync_mod.fiemap, 'extents', lambda path: seen.append(path) or [(8192, 8192)])
    assert verify_mod.live_cow_ranges(_tracker()) == [(2, 4)]
    assert seen == ['/data/.datto_3_2']


def test_tracker_of(monkeypatch):
    class Info(object):
        def by_minor(self, minor):
            return 'tracker-%d' % minor
    assert sync_mod.tracker_of('/dev/datto4', reader=lambda timeout: Info()) == 'tracker-4'
    assert sync_mod.tracker_of('/dev/sda', reader=lambda timeout: Info()) is None


def test_header_layout():
    assert fiemap._HEADER.size == 32 and fiemap._EXTENT.size == 56
    assert struct.calcsize('=QQQQQIIII') == 56


def test_classify_also_masks_the_previous_cow_file(tmp_path, monkeypatch):
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    _write(dev, range(10))
    _write(img, [0, 99, 2, 3, 4, 99, 6, 7, 8, 99])     # blocks 1, 5 and 9 differ
    monkeypatch.setattr(verify_mod, 'live_cow_ranges', lambda tracker, host=None: [(5, 6)])
    monkeypatch.setattr(sync_mod.fiemap, 'extents',
                        lambda path: {'/data/.datto_3_1': [(1 * BS, BS)]}[path])
    result = {}
    real = verify_mod.classify_mismatches([1, 5, 9], dev, img, _tracker(), result, cow_files=('/data/.datto_3_1',))
    assert real == [9]
    assert result['verify_masked_blocks'] == 2


def test_classify_reports_unreadable_previous_cow_file(tmp_path, monkeypatch):
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    _write(dev, range(3))
    _write(img, [0, 99, 2])
    monkeypatch.setattr(verify_mod, 'live_cow_ranges', lambda tracker, host=None: [])
    result = {}
    missing = str(tmp_path / 'gone.cow')
    assert verify_mod.classify_mismatches([1], dev, img, _tracker(), result, cow_files=(missing,)) == [1]
    assert missing in result['verify_mask_note']


def test_cow_file_runs_clips_to_the_device_and_names_unreadable_files(monkeypatch, tmp_path):
    extents = {'/d/.datto_0_1': [(2 * BS, 3 * BS), (100 * BS, 10 * BS)], '/d/.datto_0_2': [(8 * BS, BS)]}
    monkeypatch.setattr(sync_mod.fiemap, 'extents', lambda path: extents[path])
    runs, notes = sync_mod.cow_file_runs(('/d/.datto_0_1', '/d/.datto_0_2'), 104 * BS)
    assert runs == [(2, 3), (8, 1), (100, 4)]
    assert notes == []
    monkeypatch.undo()
    runs, notes = sync_mod.cow_file_runs((str(tmp_path / 'gone'),), 10 * BS)
    assert runs == [] and 'gone' in notes[0]


def test_sync_copies_the_previous_cow_files_own_blocks(tmp_path, monkeypatch):
    """The driver does not track its writes to the previous COW file: the sync copies its extents."""
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as copy_mod
    copied = []
    real_copy = copy_mod.copy_runs

    def spy(src, dst, runs, **kwargs):
        runs = list(runs)
        copied.append(runs)
        return real_copy(src, dst, runs, **kwargs)
    dev, img = str(tmp_path / 'dev'), str(tmp_path / 'img')
    _write(dev, range(16))
    _write(img, [0] * 16)
    monkeypatch.setattr(copy_mod, 'copy_runs', spy)
    monkeypatch.setattr(sync_mod, 'cow_file_runs', lambda paths, size: ([(9, 2)], []))

    class Cow(object):
        def runs(self):
            return iter([(1, 1), (10, 3)])
    result = {'blocks': 4, 'verified': False}
    monkeypatch.setattr(sync_mod.image_mod, 'complete_sync', lambda *a, **k: None)
    sync_mod._write_phase(result, {}, sync_mod.SyncJob(dev, Cow(), '/d/.datto_0_1', img, 16 * BS, 'none', 'python', None,
                                                       'auto', copy_mod.DEFAULT_BUFFER, None, 2, None, [],
                                                       copy_mod.DEFAULT_READ_DEPTH))
    assert copied == [[(1, 1), (9, 4)]]
    with open(img, 'rb') as f:
        data = f.read()
    assert [data[b * BS] for b in range(16)] == [0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 10, 11, 12, 0, 0, 0]


def test_extents_up_to_a_logical_end(tmp_path):
    path = str(tmp_path / 'f')
    open(path, 'wb').close()
    batch = [(0, 40960, 8192, 0), (8192, 81920, 8192, 0), (16384, 163840, 4096, fiemap.FIEMAP_EXTENT_LAST)]
    assert fiemap.extents(path, ioctl=_fake_ioctl([batch]), logical_end=12288) == [(40960, 8192), (81920, 4096)]
    assert fiemap.extents(path, ioctl=_fake_ioctl([batch]), logical_end=8192) == [(40960, 8192)]
