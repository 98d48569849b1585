# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup records and locks: one per image, owned by their image, old names migrated once.

Every image gets its own record (``<state_dir>/<readable prefix>-<sha256 of the path>.json``) and
lock; a record stores its image and is refused for another one. Records written under the old
name (the path with every other character turned into ``_``, shared by ``/backup/a_b.img``,
``/backup/a/b.img`` and ``/backup/a b.img``) are moved to the new name on first use, under the
lock, when they say which image they belong to; an old record that does not and whose name
several images share is refused, never guessed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import stat

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup_record as br
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

SHARED = ['/backup/a_b.img', '/backup/a/b.img', '/backup/a b.img']


def legacy_name(image):
    """The record name of the earlier versions, written out here so the test does not trust the code."""
    out = ''.join(c if (c.isalnum() and c.isascii()) or c in '_.-' else '_' for c in image.strip('/'))
    return out + '.json'


@pytest.fixture
def state(tmp_path):
    d = tmp_path / 'state'
    d.mkdir(mode=0o700)
    os.chmod(str(d), 0o700)
    return str(d)


def write_json(path, data):
    with open(path, 'w') as handle:
        json.dump(data, handle)
    os.chmod(path, 0o600)


def test_old_names_collide():
    # The finding, kept as a fact of the old scheme: three images, one name.
    assert len(set(legacy_name(p) for p in SHARED)) == 1
    assert bk.legacy_record_name(SHARED[0]) == legacy_name(SHARED[0])


def test_record_and_lock_names_one_per_image():
    records = [bk.record_name(p) for p in SHARED]
    locks = [bk.lock_name(p) for p in SHARED]
    assert len(set(records)) == 3
    assert len(set(locks)) == 3
    assert not set(records) & set(locks)
    for image, name in zip(SHARED, records):
        # a readable prefix, then the hash of the whole path
        assert name.startswith('backup_a')
        assert name.endswith('-%s.json' % hashlib.sha256(image.encode('utf-8')).hexdigest())


def test_record_name_normalises_the_path():
    assert bk.record_name('/backup//a/./b.img') == bk.record_name('/backup/a/b.img')
    assert bk.lock_name('/backup/x/../a/b.img') == bk.lock_name('/backup/a/b.img')


@pytest.mark.parametrize('image', ['/' + 'x' * 250 + '/' + 'y' * 250 + '.img', '/.hidden/d.img', '/backup/é.img'])
def test_record_name_is_a_plain_visible_file_name(image):
    for name in (bk.record_name(image), bk.lock_name(image)):
        assert len(name.encode('utf-8')) <= 255
        assert '/' not in name and not name.startswith('.')
        assert all(c.isascii() for c in name)


def test_records_of_two_images_are_separate(state):
    bk.save_record(state, SHARED[0], {'seq_id': 3})
    assert bk.load_record(state, SHARED[1]) is None
    assert bk.load_record(state, SHARED[2]) is None
    bk.save_record(state, SHARED[1], {'seq_id': 7})
    assert bk.load_record(state, SHARED[0])['seq_id'] == 3
    assert bk.load_record(state, SHARED[1])['seq_id'] == 7


def test_saved_record_names_its_image(state):
    path = bk.save_record(state, '/backup//a/b.img', {'seq_id': 3})
    with open(path) as handle:
        assert json.load(handle)['image'] == '/backup/a/b.img'


def test_record_of_another_image_refused(state):
    path = bk.save_record(state, SHARED[0], {'seq_id': 3})
    os.rename(path, os.path.join(state, bk.record_name(SHARED[1])))
    with pytest.raises(DattobdError) as info:
        bk.load_record(state, SHARED[1])
    assert 'belongs to %s' % SHARED[0] in info.value.msg and SHARED[1] in info.value.msg
    assert info.value.details['step'] == 'record'


def test_record_without_image_refused(state):
    write_json(os.path.join(state, bk.record_name(SHARED[1])), {'seq_id': 3})
    with pytest.raises(DattobdError, match='does not name its image'):
        bk.load_record(state, SHARED[1])


# --- migration of the old names ------------------------------------------------------------------

def listing(directory):
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        st = os.lstat(path)
        with open(path, 'rb') as handle:
            out[name] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns, handle.read())
    return out


def test_old_record_of_this_image_migrated(state):
    image = SHARED[1]
    old = os.path.join(state, legacy_name(image))
    write_json(old, {'image': image, 'seq_id': 4, 'pending_cow_files': [{'path': '/data/.datto_0_4', 'seq_id': 4}]})
    open(os.path.join(state, legacy_name(image)[:-len('.json')] + '.lock'), 'w').close()
    record, legacy = bk.find_record(state, image)
    assert legacy == old and record['seq_id'] == 4  # found, nothing moved yet
    assert os.path.exists(old)
    record, actions = bk.migrate_record(state, image)
    new = os.path.join(state, bk.record_name(image))
    assert record['seq_id'] == 4
    assert actions == ['move the backup record %s to %s' % (old, new)]
    assert sorted(os.listdir(state)) == [bk.record_name(image)]  # old record and old lock gone
    with open(new) as handle:
        data = json.load(handle)
    assert data['image'] == image and data['pending_cow_files'][0]['seq_id'] == 4
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600
    # the next lookup finds it under the new name, with nothing left to migrate
    assert bk.find_record(state, image) == (data, None)
    assert bk.migrate_record(state, image) == (data, [])


def test_old_record_of_another_image_left_alone(state):
    old = os.path.join(state, legacy_name(SHARED[0]))
    write_json(old, {'image': SHARED[0], 'seq_id': 4})
    before = listing(state)
    assert bk.find_record(state, SHARED[1]) == (None, None)
    assert bk.migrate_record(state, SHARED[1]) == (None, [])
    assert listing(state) == before
    # its own image migrates it
    record, actions = bk.migrate_record(state, SHARED[0])
    assert record['seq_id'] == 4 and len(actions) == 1
    assert os.listdir(state) == [bk.record_name(SHARED[0])]


@pytest.mark.parametrize('content', [{'seq_id': 4}, {'image': None, 'seq_id': 4}, {'image': 7}])
def test_ambiguous_old_record_refused(state, content):
    old = os.path.join(state, legacy_name(SHARED[2]))
    write_json(old, content)
    before = listing(state)
    for call in (bk.find_record, bk.migrate_record, bk.load_record):
        with pytest.raises(DattobdError) as info:
            call(state, SHARED[2])
        assert 'does not say which image it belongs to' in info.value.msg
        assert old in info.value.msg and 'refusing to guess' in info.value.msg
        for candidate in ('/backup/a b.img', '/backup/a/b.img', '/backup_a_b.img'):
            assert candidate in info.value.msg
        assert 'mv ' in info.value.hint
        assert listing(state) == before


def test_unambiguous_old_record_without_image_migrated(state):
    # /data.img was the only image that could have the old name data.img.json
    old = os.path.join(state, 'data.img.json')
    write_json(old, {'seq_id': 9})
    record, actions = bk.migrate_record(state, '/data.img')
    assert record['seq_id'] == 9 and record['image'] == '/data.img'
    assert os.listdir(state) == [bk.record_name('/data.img')]


def test_old_record_left_after_a_crash_is_removed(state):
    # A crash between writing the new name and removing the old one: the new record wins.
    image = SHARED[1]
    new = bk.save_record(state, image, {'seq_id': 5})
    old = os.path.join(state, legacy_name(image))
    write_json(old, {'image': image, 'seq_id': 4})
    record, actions = bk.migrate_record(state, image)
    assert record['seq_id'] == 5
    assert actions == ['remove the old backup record %s (already moved to %s)' % (old, new)]
    assert os.listdir(state) == [bk.record_name(image)]


def test_migration_refused_while_an_old_lock_is_held(state):
    import fcntl
    image = SHARED[1]
    old = os.path.join(state, legacy_name(image))
    write_json(old, {'image': image, 'seq_id': 4})
    lock = os.path.join(state, legacy_name(image)[:-len('.json')] + '.lock')
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(DattobdError, match='lock %s is held' % lock):
            bk.migrate_record(state, image)
        assert os.path.exists(old)
    finally:
        os.close(fd)


def test_locks_are_per_image(state):
    ops = bk.Ops()
    fd = ops.lock(state, SHARED[0])
    assert os.listdir(state) == [bk.lock_name(SHARED[0])]
    with pytest.raises(DattobdError, match='Another backup cycle'):
        ops.lock(state, SHARED[0])
    fd2 = ops.lock(state, SHARED[1])  # another image sharing the old name: its own lock
    ops.unlock(fd2)
    ops.unlock(fd)


# --- the cycle: records read before the lock, moved under it --------------------------------------

def test_cycle_moves_the_old_record_under_the_lock(state, tmp_path):
    from .test_backup import FakeOps, META1, REC_OK, HOOKS, params
    image = SHARED[1]
    old = os.path.join(state, legacy_name(image))
    write_json(old, dict(REC_OK, image=image))

    class RealRecords(FakeOps):
        def find_record(self, state_dir, image):
            self.calls.append('find_record')
            return bk.find_record(state_dir, image)

        def migrate_record(self, state_dir, image):
            self.calls.append('migrate_record')
            return bk.migrate_record(state_dir, image)

    ops = RealRecords(meta=META1)
    plan = bk.run_cycle(params(state_dir=state, image=image), ops=ops, check_mode=True)
    new = os.path.join(state, bk.record_name(image))
    assert plan['actions'][-2:] == ['move the backup record %s to %s' % (old, new), 'write %s' % new]
    assert os.listdir(state) == [legacy_name(image)]  # check mode moved nothing
    ops = RealRecords(meta=META1)
    ops.exists = lambda path: path == image
    result = bk.run_cycle(params(state_dir=state, image=image, **HOOKS), ops=ops)
    assert result['mode'] == 'incremental'
    assert ops.calls[:5] == ['find_record', 'ensure snapshot (check)', 'check_destination full=False', 'lock',
                             'migrate_record']
    assert result['actions'][0] == 'move the backup record %s to %s' % (old, new)
    assert os.listdir(state) == [bk.record_name(image)]


def test_record_changed_before_the_lock_is_decided_again():
    from .test_backup import FakeOps, META1, REC_OK, params
    ops = FakeOps(meta=META1, record=REC_OK)
    ops.migrate_record = lambda state_dir, image: (dict(REC_OK, next_run='full'), [])
    result = bk.run_cycle(params(), ops=ops)
    assert result['mode'] == 'full'
    assert ops.calls[:5] == ['ensure snapshot (check)', 'check_destination full=False', 'lock',
                             'check_destination full=True', 'ensure snapshot']


def test_old_lock_held_refuses_after_the_lock_without_a_record():
    from .test_backup import FakeOps, META1, REC_OK, HOOKS, params

    def held(state_dir, image):
        raise DattobdError('Another backup cycle is running (lock /state/x.lock is held).', step='lock')
    ops = FakeOps(meta=META1, record=REC_OK)
    ops.migrate_record = held
    with pytest.raises(bk.BackupError) as info:
        bk.run_cycle(params(**HOOKS), ops=ops)
    assert info.value.details['step'] == 'lock' and info.value.details['record'] is None
    assert 'the lock was taken, but no hook ran and no record was written' in info.value.msg
    assert ops.saved == [] and not [c for c in ops.calls if c.startswith('hook')]
    assert ops.calls[-1] == 'unlock'


@pytest.fixture
def linked(tmp_path):
    """``(real, link)``: one image reached by its own path and through a symlinked directory."""
    real_dir = tmp_path / 'nas'
    real_dir.mkdir()
    os.symlink(str(real_dir), str(tmp_path / 'backup'))
    return str(real_dir / 'data.img'), str(tmp_path / 'backup' / 'data.img')


def test_one_image_through_a_symlink_is_refused_a_second_record(state, linked):
    """A symlinked directory gave one image two records (and two locks): they diverge silently."""
    real, link = linked
    first = bk.save_record(state, real, {'seq_id': 3})
    before = listing(state)
    with pytest.raises(DattobdError) as info:
        bk.find_record(state, link)
    assert info.value.details['step'] == 'record'
    assert real in info.value.msg and link in info.value.msg and first in info.value.msg
    assert listing(state) == before
    # the other way round too, and the record's own path still loads
    other = str(os.path.join(os.path.dirname(state), 'state2'))
    os.mkdir(other, 0o700)
    bk.save_record(other, link, {'seq_id': 4})
    with pytest.raises(DattobdError, match='same file'):
        bk.find_record(other, real)
    assert bk.load_record(state, real)['seq_id'] == 3


def test_one_image_through_a_symlink_has_one_lock(state, linked):
    real, link = linked
    fd = br.lock(state, real)
    try:
        with pytest.raises(DattobdError, match='is running'):
            br.lock(state, link)
    finally:
        br.unlock(fd)
    br.unlock(br.lock(state, link))


def test_a_record_of_a_gone_directory_is_no_twin(state, tmp_path):
    bk.save_record(state, str(tmp_path / 'gone' / 'data.img'), {'seq_id': 1})
    assert bk.find_record(state, str(tmp_path / 'other' / 'data.img')) == (None, None)
