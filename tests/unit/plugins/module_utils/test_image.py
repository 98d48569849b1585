# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of module_utils/_dattobd/image.py: sidecar metadata, journal decisions, permissions."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as im

U1 = 'a' * 32
U2 = 'b' * 32


@pytest.fixture
def img(tmp_path):
    d = tmp_path / 'backups'
    d.mkdir(mode=0o700)
    p = d / 'disk.img'
    p.write_bytes(b'\0' * 8192)
    os.chmod(str(p), 0o600)
    return str(p)


def test_init_load_roundtrip_and_mode(img):
    assert im.load(img) is None
    meta = im.init(img, U1, 3, 8192)
    side = im.sidecar_path(img)
    assert side == img + '.snapfleet.json'
    assert stat.S_IMODE(os.stat(side).st_mode) == 0o600
    loaded = im.load(img)
    assert loaded == meta
    assert (loaded['uuid'], loaded['seq_id'], loaded['size'], loaded['pending'], loaded['format']) == (U1, 3, 8192, None, 1)
    assert not [n for n in os.listdir(os.path.dirname(img)) if '.tmp.' in n]


def test_journal_cycle(img):
    meta = im.init(img, U1, 1, 8192, chunk_digests={'x': 1})
    assert im.plan_sync(meta, img, U1, 1, 2, 8192, 'c1') == im.START
    meta = im.begin_sync(img, meta, U1, 1, 2, '/cow1', 'c1')
    on_disk = im.load(img)
    assert on_disk['pending']['seq_id_to'] == 2 and on_disk['seq_id'] == 1
    # interrupted: the same sync resumes
    assert im.plan_sync(on_disk, img, U1, 1, 2, 8192, 'c1') == im.RESUME
    # a journal written without a digest resumes on uuid and seq ids
    assert im.plan_sync(dict(on_disk, pending=dict(on_disk['pending'], cow_sha256=None)), img, U1, 1, 2, 8192,
                        'c1') == im.RESUME
    meta = im.complete_sync(img, on_disk, 2, blocks=5, verified=True)
    done = im.load(img)
    assert done['seq_id'] == 2 and done['pending'] is None and done['chunk_digests'] is None
    assert done['history'][-1]['seq_id_from'] == 1 and done['history'][-1]['blocks'] == 5
    assert im.plan_sync(done, img, U1, 2, 3, 8192, 'c2') == im.START


PLAN_REFUSALS = [
    # (meta overrides, call args (uuid, from, to, size, cow digest), message)
    ({}, (U2, 1, 2, 8192, 'c'), 'another snapshot series'),
    ({}, (U1, 1, 2, 4096, 'c'), 'recorded as 8192 bytes'),
    ({'seq_id': 2, 'history': [{'seq_id_from': 1, 'seq_id_to': 2, 'cow_sha256': 'other'}]}, (U1, 1, 2, 8192, 'c'),
     'reached by another sync \\(1 -> 2, COW sha256 other\\) than this one \\(1 -> 2, COW sha256 c\\)'),
    ({'seq_id': 2, 'history': [{'seq_id_from': 0, 'seq_id_to': 2, 'cow_sha256': None}]}, (U1, 1, 2, 8192, 'c'),
     'reached by another sync \\(0 -> 2'),
    ({'seq_id': 5}, (U1, 1, 2, 8192, 'c'), 'holds snapshot 5 but the COW file lists the changes since snapshot 1'),
    ({'pending': {'uuid': U1, 'seq_id_from': 1, 'seq_id_to': 2, 'cow_sha256': 'other'}},
     (U1, 1, 2, 8192, 'c'), 'COW file with another content'),
    ({'pending': {'uuid': U1, 'seq_id_from': 3, 'seq_id_to': 4, 'cow_file': '/c3', 'cow_sha256': 'x'}},
     (U1, 1, 2, 8192, 'c'), 'a sync 3 -> 4 \\(COW file /c3\\) was interrupted'),
]


@pytest.mark.parametrize('over,args,message', PLAN_REFUSALS)
def test_plan_refusals(img, over, args, message):
    meta = dict(im.init(img, U1, 1, 8192))
    meta.update(over)
    with pytest.raises(im.ImageError, match=message) as info:
        im.plan_sync(meta, img, *args)
    assert info.value.hint


@pytest.mark.parametrize('content,message', [
    ('{not json', 'not valid JSON'),
    ('[]', 'not written by snapfleet'),
    ('{"format": 1, "uuid": "x", "seq_id": "1", "size": 1}', 'not written by snapfleet'),
])
def test_load_rejects_damaged_metadata(img, content, message):
    with open(im.sidecar_path(img), 'w') as f:
        f.write(content)
    with pytest.raises(im.ImageError, match=message):
        im.load(img)


def test_load_unreadable_and_save_failure(img, monkeypatch):
    os.mkdir(im.sidecar_path(img))
    with pytest.raises(im.ImageError, match='Cannot read'):
        im.load(img)
    with pytest.raises(im.ImageError, match='Cannot write image metadata'):
        im.save(img, {'uuid': U1, 'seq_id': 1, 'size': 1})


def test_adopt_meta():
    m = im.adopt_meta(U1, 4, 100)
    assert m['adopted'] and m['seq_id'] == 4 and m['pending'] is None
    json.dumps(m)


def test_check_private_accepts_root_only(img):
    im.check_private(img)
    im.check_private(img + '.missing')


@pytest.mark.parametrize('file_mode,dir_mode,fixes', [
    (0o644, 0o700, ['chmod 0600 {img}']),
    (0o620, 0o700, ['chmod 0600 {img}']),
    (0o600, 0o755, ['chmod 0700 {dir}']),
    (0o640, 0o770, ['chmod 0600 {img}', 'chmod 0700 {dir}']),
    (0o044, 0o700, ['chmod 0600 {img}']),
])
def test_check_private_refuses_with_chmod(img, file_mode, dir_mode, fixes):
    d = os.path.dirname(img)
    os.chmod(img, file_mode)
    os.chmod(d, dir_mode)
    try:
        with pytest.raises(im.ImageError, match='others can access') as info:
            im.check_private(img)
    finally:
        os.chmod(d, 0o700)
    assert info.value.details['fix'] == [f.format(img=img, dir=d) for f in fixes]
    assert 'Run: ' + ' && '.join(f.format(img=img, dir=d) for f in fixes) in info.value.hint


def test_check_private_refuses_other_owner(img, monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 4242)
    with pytest.raises(im.ImageError, match='owned by uid') as info:
        im.check_private(img)
    assert 'chown 4242 %s' % img in info.value.details['fix']


def test_check_private_missing_directory(tmp_path):
    with pytest.raises(im.ImageError, match='Cannot check directory'):
        im.check_private(str(tmp_path / 'no' / 'img'))
