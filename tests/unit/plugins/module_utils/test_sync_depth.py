# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""sync.run with reads in flight: a read or write error in the copy fails the cycle, the sync stays
journalled as pending and the next run resumes it to the same image; a bad read_depth writes nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import threading

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import copy as cp
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cow as cow_mod
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as im
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from .test_sync import Env, B

CHANGED = sorted(set([3, 4, 5, 9, 17, 30, 31, 60, 61, 62, 100, 140, 141, 200, 255] + list(range(64, 90, 3))))


@pytest.fixture
def env(tmp_path, monkeypatch):
    return Env(tmp_path, monkeypatch, changed=CHANGED)


def _threads():
    return [t for t in threading.enumerate() if t is not threading.main_thread()]


@pytest.mark.parametrize('depth', [1, 2, 16, '64'])
def test_every_depth_syncs_the_same_image(env, depth):
    res = env.run(read_depth=depth, verify='changed')
    assert env.image_bytes() == env.expected()
    assert res['blocks'] == len(CHANGED) and im.load(env.image)['seq_id'] == 2


@pytest.mark.parametrize('fault', ['read', 'write'])
def test_an_io_error_in_the_threaded_copy_fails_and_the_rerun_resumes(env, monkeypatch, fault):
    real_pread, real_preadv, real_pwrite = os.pread, os.preadv, os.pwrite
    failed_in = []

    def hits(offset, length):
        return offset // B <= 100 < (offset + length + B - 1) // B

    def pread(fd, n, offset):
        if fault == 'read' and hits(offset, n):
            failed_in.append(threading.current_thread() is threading.main_thread())
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_pread(fd, n, offset)

    def preadv(fd, bufs, offset):
        if fault == 'read' and hits(offset, sum(len(b) for b in bufs)):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_preadv(fd, bufs, offset)

    def pwrite(fd, data, offset):
        if fault == 'write' and hits(offset, len(data)) and os.fstat(fd).st_size == env.nblocks * B:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, 'pread', pread)
    monkeypatch.setattr(os, 'preadv', preadv)
    monkeypatch.setattr(os, 'pwrite', pwrite)
    monkeypatch.setattr(cp, 'DepthProbe', lambda: None)  # the threads read every span (no adaptive choice)
    with pytest.raises(DattobdError, match=r'1 block\(s\) could not be copied') as info:
        env.run(read_depth=8)
    assert info.value.details['error_blocks'] == [100]
    if fault == 'read':
        assert failed_in[0] is False  # the first failure was in a read thread
    meta = im.load(env.image)
    assert meta['seq_id'] == 1 and meta['pending']['seq_id_to'] == 2  # journalled: resumable
    assert not _threads()
    monkeypatch.setattr(os, 'pread', real_pread)
    monkeypatch.setattr(os, 'preadv', real_preadv)
    monkeypatch.setattr(os, 'pwrite', real_pwrite)
    res = env.run(read_depth=8)
    assert res['resumed'] and env.image_bytes() == env.expected()
    assert im.load(env.image)['pending'] is None


@pytest.mark.parametrize('depth', [0, 65, u'\u0668', 'eight', True, None, '16 blocks'])
def test_a_bad_read_depth_is_refused_before_anything_is_written(env, depth):
    before = env.image_bytes(), im.load(env.image)
    with pytest.raises(DattobdError, match='read_depth must be an integer 1..64'):
        env.run(read_depth=depth)
    assert (env.image_bytes(), im.load(env.image)) == before
    with pytest.raises(DattobdError, match='read_depth'):
        env.run(read_depth=depth, check_mode=True)


@pytest.mark.parametrize('verify', ['none', 'changed'])
def test_the_cow_index_is_read_once_per_sync(env, monkeypatch, verify):
    """The summary, the space check, the copy and the verification share one parse of the index (a sync module
    call as in a backup cycle): on a guest under emulation a second parse of 1 MiB of index costs 0.1 s."""
    real = cow_mod.CowFile.iter_index_chunks
    passes = []

    def counted(self, *args, **kwargs):
        passes.append(self.path)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cow_mod.CowFile, 'iter_index_chunks', counted)
    env.run(verify=verify)
    assert env.image_bytes() == env.expected()
    assert len(passes) == 1
    assert cow_mod._RUNS_MEMO is None  # the scope ends with the call
