# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore points of an image (restore_points.py) on real files: reflink (a fake FICLONE), the fallback
sparse copy where the filesystem cannot reflink, the metadata beside it, pruning, and the plan of check mode."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import restore_points as rp
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

NOW = 1796493600  # 2026-12-05T18:00:00Z
MiB = 1 << 20


def image(tmp_path, data=b'\x17' * 4096, hole=4 * MiB):
    """An image of ``data``, a hole and ``data`` again, with its metadata."""
    path = tmp_path / 'data.img'
    with open(str(path), 'wb') as handle:
        handle.write(data)
        handle.seek(hole, os.SEEK_CUR)
        handle.write(data)
    os.chmod(str(path), 0o600)
    (tmp_path / 'data.img.snapfleet.json').write_text('{"seq_id": 7}')
    return str(path)


def old_points(img, stamps):
    """Earlier restore points (and their metadata) of ``img``."""
    out = []
    for stamp in stamps:
        path = '%s.restore-%s' % (img, stamp)
        with open(path, 'wb') as handle:
            handle.write(b'old')
        with open(path + '.snapfleet.json', 'w') as handle:
            handle.write('{}')
        out.append(path)
    return out


def params(img, **kw):
    return rp.validate(dict(dict(image=img, retention=2), **kw))


def no_reflink(code=errno.EOPNOTSUPP):
    def clone(dst, src):
        raise OSError(code, os.strerror(code))
    return clone


def fake_reflink(dst, src):
    """FICLONE as the test sees it: the destination gets the source's bytes."""
    size = os.fstat(src).st_size
    os.ftruncate(dst, size)
    os.pwrite(dst, os.pread(src, size, 0), 0)


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def test_reflink_point_metadata_and_pruning(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, 'clone', fake_reflink)
    img = image(tmp_path)
    old = old_points(img, ['20261201T000000Z', '20261202T000000Z', '20261203T000000Z'])
    out = rp.make(params(img, retention=2), now=NOW)
    point = img + '.restore-20261205T180000Z'
    assert (out['path'], out['made'], out['method']) == (point, True, 'reflink')
    assert read(point) == read(img)
    assert oct(stat.S_IMODE(os.stat(point).st_mode)) == '0o600'
    assert os.stat(point).st_mtime_ns == os.stat(img).st_mtime_ns  # timestamps preserved, as cp --preserve did
    assert out['metadata'] == point + '.snapfleet.json' and read(out['metadata']) == b'{"seq_id": 7}'
    # the 2 newest kept (the new one and 2026-12-03), the others removed with their metadata
    assert out['pruned'] == [old[1], old[0]] and out['keep'] == 2
    assert sorted(os.listdir(str(tmp_path))) == sorted([
        'data.img', 'data.img.snapfleet.json', os.path.basename(point), os.path.basename(point) + '.snapfleet.json',
        os.path.basename(old[2]), os.path.basename(old[2]) + '.snapfleet.json'])
    assert rp.actions(out, img) == ['copy %s to the restore point %s by reflink' % (img, point),
                                    'remove %s (restore point beyond retention 2)' % old[1],
                                    'remove %s (restore point beyond retention 2)' % old[0]]


@pytest.mark.parametrize('code', [errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL])
def test_no_reflink_falls_back_to_a_sparse_copy(tmp_path, monkeypatch, code):
    monkeypatch.setattr(rp, 'clone', no_reflink(code))
    img = image(tmp_path)
    old = old_points(img, ['20261201T000000Z', '20261202T000000Z'])
    out = rp.make(params(img, retention=5, retention_full_copies=2), now=NOW)
    assert out['method'] == 'copy' and out['made']
    assert read(out['path']) == read(img)
    # the hole stays a hole: far less allocated than the 4 MiB between the two blocks
    assert os.stat(out['path']).st_blocks * 512 < MiB
    # without reflink, the smaller of retention and retention_full_copies are kept
    assert out['keep'] == 2 and out['pruned'] == [old[0]]
    assert not os.path.exists(old[0] + '.snapfleet.json') and os.path.exists(old[1])


def test_the_real_ficlone_or_its_fallback_on_this_filesystem(tmp_path):
    """The real ioctl: on a filesystem that cannot reflink (ext4, tmpfs, overlay) the fallback copy."""
    img = image(tmp_path)
    out = rp.make(params(img, retention=1, retention_full_copies=1), now=NOW)
    assert out['made'] and out['method'] in ('reflink', 'copy')
    assert read(out['path']) == read(img)


def test_auto_without_full_copies_makes_none_and_prunes_as_the_role_did(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, 'clone', no_reflink())
    img = image(tmp_path)
    old = old_points(img, ['20261201T000000Z'])
    out = rp.make(params(img, retention=3), now=NOW)
    assert (out['made'], out['path'], out['method']) == (False, None, None)
    assert 'cannot reflink (' in out['note'] and 'Operation not supported' in out['note']
    assert 'retention_full_copies is 0' in out['note']
    assert out['pruned'] == old and not os.path.exists(img + '.restore-20261205T180000Z')


def test_reflink_required_fails_clearly_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, 'clone', no_reflink())
    img = image(tmp_path)
    old = old_points(img, ['20261201T000000Z'])
    before = sorted(os.listdir(str(tmp_path)))
    with pytest.raises(DattobdError) as info:
        rp.make(params(img, retention_method='reflink', retention_full_copies=3), now=NOW)
    assert 'cannot make reflink copies (' in info.value.msg and 'Operation not supported' in info.value.msg
    assert 'mkfs.xfs -m reflink=1' in info.value.hint and 'auto or copy' in info.value.hint
    assert sorted(os.listdir(str(tmp_path))) == before and os.path.exists(old[0])


def test_copy_method_never_tries_a_reflink(tmp_path, monkeypatch):
    def clone(dst, src):
        raise AssertionError('reflink tried')
    monkeypatch.setattr(rp, 'clone', clone)
    img = image(tmp_path)
    out = rp.make(params(img, retention_method='copy', retention_full_copies=1), now=NOW)
    assert out['method'] == 'copy' and read(out['path']) == read(img)


def test_another_error_fails_and_removes_the_partial_point(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, 'clone', no_reflink(errno.ENOSPC))
    img = image(tmp_path)
    with pytest.raises(DattobdError) as info:
        rp.make(params(img, retention_full_copies=1), now=NOW)
    assert 'Cannot make the restore point' in info.value.msg and 'No space' in info.value.msg
    assert not os.path.exists(img + '.restore-20261205T180000Z')


def test_a_copy_past_its_timeout_fails_and_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, 'clone', no_reflink())
    img = image(tmp_path)
    ticks = iter(range(0, 10 ** 6, 100))
    with pytest.raises(DattobdError) as info:
        rp.make(params(img, retention_full_copies=1, retention_timeout=50), now=NOW, clock=lambda: next(ticks))
    assert 'retention_timeout' in info.value.msg
    assert not os.path.exists(img + '.restore-20261205T180000Z')


def test_no_image_no_point_nothing_pruned(tmp_path):
    img = str(tmp_path / 'data.img')
    old = old_points(img, ['20261201T000000Z'])
    out = rp.make(params(img, retention=0 + 1), now=NOW)
    assert out['made'] is False and out['pruned'] == [] and os.path.exists(old[0])
    assert rp.make(params(img, retention=0)) is None and rp.plan(params(img, retention=0)) is None


@pytest.mark.parametrize('kw, reflink', [
    ({'retention': 2}, True),
    ({'retention': 3, 'retention_full_copies': 1}, False),
    ({'retention': 3, 'retention_method': 'copy', 'retention_full_copies': 2}, False),
    ({'retention': 2, 'retention_method': 'copy'}, False),
])
def test_check_mode_plans_what_the_run_does(tmp_path, monkeypatch, kw, reflink):
    monkeypatch.setattr(rp, 'clone', fake_reflink if reflink else no_reflink())
    img = image(tmp_path)
    old_points(img, ['20261201T000000Z', '20261202T000000Z', '20261203T000000Z'])
    before = sorted(os.listdir(str(tmp_path)))
    planned = rp.plan(params(img, **kw), now=NOW)
    assert sorted(os.listdir(str(tmp_path))) == before  # the plan writes nothing
    done = rp.make(params(img, **kw), now=NOW)
    assert planned['planned'] is True
    assert planned['path'] == done['path']
    assert planned['pruned' if reflink or kw.get('retention_method') == 'copy' else 'pruned_without_reflink'] \
        == done['pruned']


@pytest.mark.parametrize('kw, msg', [
    ({'retention': -1}, 'retention must be an integer of at least 0'),
    ({'retention_full_copies': True}, 'retention_full_copies must be an integer'),
    ({'retention_timeout': 0}, 'retention_timeout must be an integer of at least 1'),
    ({'retention_method': 'hardlink'}, 'retention_method must be one of auto, reflink, copy'),
])
def test_validation(kw, msg):
    with pytest.raises(DattobdError) as info:
        rp.validate(dict(image='/backup/data.img', **kw))
    assert msg in info.value.msg
