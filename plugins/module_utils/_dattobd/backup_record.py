# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup record and the lock of one image, in the state directory of the backup module.

One JSON record per image path (``record_name``: a readable prefix and the sha256 of the
normalized path), written atomically; a ``.lock`` file beside it, held with flock for the whole
cycle. Records of earlier versions (one name for several paths) are found and moved here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import stat

from .errors import DattobdError
from .fileutil import atomic_write, fsync_dir

DEFAULT_STATE_DIR = '/var/lib/snapfleet/dattobd/backups'
RECORD_FORMAT = 1
RECORD_PREFIX_MAX = 80


def normalized_image(image):
    """The image path records are keyed by: normalized, with one leading ``/``."""
    return '/' + os.path.normpath(image).lstrip('/')


def _record_stem(image):
    """Readable prefix (the path's last characters, others as ``_``) and the sha256 of the normalized path.

    The hash makes the name one per image (``/backup/a_b.img``, ``/backup/a/b.img`` and
    ``/backup/a b.img`` shared one name before); the prefix is only there for people.
    """
    path = normalized_image(image)
    prefix = re.sub(r'[^A-Za-z0-9_.-]', '_', path.strip('/'))[-RECORD_PREFIX_MAX:].lstrip('.') or 'image'
    return '%s-%s' % (prefix, hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest())


def record_name(image):
    """File name of the backup record of ``image`` in the state directory (one per image path)."""
    return _record_stem(image) + '.json'


def lock_name(image):
    """File name of the lock of the cycles of ``image`` in the state directory (one per image path)."""
    return _record_stem(image) + '.lock'


def legacy_record_name(image):
    """The record name of earlier versions, not one per image: every character but ``A-Za-z0-9_.-`` became ``_``."""
    return re.sub(r'[^A-Za-z0-9_.-]', '_', image.strip('/')) + '.json'


def _legacy_candidates(image):
    """Images that had the same old record name as ``image`` (some of them, for a message), or ``[]`` if none."""
    stem = legacy_record_name(image)[:-len('.json')]
    if '_' not in stem:
        return []  # only '/' + stem gives this name
    out = []
    for candidate in (normalized_image(image), '/' + stem, '/' + stem.replace('_', '/')):
        if candidate not in out:
            out.append(candidate)
    return out


def check_state_dir(path):
    """Refuse a state directory that is no directory or that others can access; changes nothing.

    A missing one is fine when its nearest existing ancestor is a directory (it is created, 0700,
    at the first write).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise DattobdError('Cannot check the backup state directory %s: %s.' % (path, os.strerror(exc.errno)))
        parent = os.path.dirname(path)
        if os.path.lexists(parent) and not os.path.isdir(parent):
            raise DattobdError('The backup state directory %s cannot be created: %s is not a directory.' % (path, parent))
        if parent != path and not os.path.exists(parent):
            check_state_dir(parent)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise DattobdError('The backup state directory %s is not a directory.' % path,
                           hint='Move the file away or set state_dir to a root-only directory.')
    if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.geteuid():
        raise DattobdError('The backup state directory %s is accessible by others (mode %04o, uid %d).'
                           % (path, stat.S_IMODE(st.st_mode), st.st_uid),
                           hint='Run: chown root %s && chmod 0700 %s' % (shlex.quote(path), shlex.quote(path)))


def _private_dir(path, check_mode=False):
    """Create ``path`` (0700) if needed; refuse one that others can access."""
    if not os.path.isdir(path):
        if check_mode:
            return
        check_state_dir(path)
        os.makedirs(path, 0o700)
        os.chmod(path, 0o700)
    check_state_dir(path)


def _read_record(path):
    """The JSON object in ``path``, or None (missing, unreadable or not an object)."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def real_image(image):
    """The file ``image`` names, through any symlink on its way (a path the host may not have yet)."""
    return os.path.realpath(normalized_image(image))


def _twin_record(state_dir, image, skip):
    """``(path, image)`` of another record in ``state_dir`` whose image is the same file as ``image``
    reached by another path (a symlinked directory), or None. ``skip``: our own record files."""
    real = real_image(image)
    try:
        names = sorted(os.listdir(state_dir))
    except OSError:
        return None
    for name in names:
        path = os.path.join(state_dir, name)
        if not name.endswith('.json') or path in skip:
            continue
        owner = (_read_record(path) or {}).get('image')
        if (isinstance(owner, str) and owner.startswith('/') and normalized_image(owner) != normalized_image(image)
                and real_image(owner) == real):
            return path, owner
    return None


def _names_image(record, image):
    owner = record.get('image')
    return isinstance(owner, str) and owner.startswith('/') and normalized_image(owner) == normalized_image(image)


def find_record(state_dir, image):
    """``(record, legacy)``: the backup record of ``image`` (or None) and the path of its record under the
    old name, if there is one to move or remove (:func:`migrate_record`). Reads only.

    Raises :class:`DattobdError` (``step`` ``record``) for a record that names another image or none,
    and for an old record that does not say which image it belongs to when several images had its name.
    """
    path = os.path.join(state_dir, record_name(image))
    legacy = os.path.join(state_dir, legacy_record_name(image))
    twin = _twin_record(state_dir, image, (path, legacy))
    if twin is not None:
        raise DattobdError('The image %s is the same file as %s (both are %s), which has its own backup record %s: '
                           'two records of one image would each believe the image is theirs.'
                           % (image, twin[1], real_image(image), twin[0]), step='record',
                           hint='Back the image up by one path only (%s in every playbook), or move the record %s away '
                           'if that path is no longer used.' % (twin[1], twin[0]))
    record = _read_record(path)
    old = _read_record(legacy)
    if record is not None:
        if not isinstance(record.get('image'), str):
            raise DattobdError('The backup record %s does not name its image, so it cannot be told to be the '
                               'record of %s.' % (path, image), step='record',
                               hint='It was not written by this collection: move it away, then run again.')
        if not _names_image(record, image):
            raise DattobdError('The backup record %s belongs to %s, not to %s.' % (path, record['image'], image),
                               step='record', hint='It was copied or renamed by hand: move it away, then run again.')
        return record, (legacy if old is not None and _names_image(old, image) else None)
    if old is None:
        return None, None
    if isinstance(old.get('image'), str) and old['image']:
        return (old, legacy) if _names_image(old, image) else (None, None)
    candidates = _legacy_candidates(image)
    if candidates:
        raise DattobdError('The old backup record %s does not say which image it belongs to, and several images had '
                           'that name (each "_" in it stands for a "/", a "_", a space or another character: for '
                           'example %s): refusing to guess.' % (legacy, ', '.join(candidates)),
                           step='record',
                           hint='If it is the record of %s, run: mv %s %s; otherwise move it away. Then run again.'
                           % (image, legacy, os.path.join(state_dir, record_name(image))))
    return dict(old, image=normalized_image(image)), legacy


def load_record(state_dir, image):
    """The backup record of ``image`` or None (:func:`find_record`, reads only)."""
    return find_record(state_dir, image)[0]


def _hold_existing_lock(path):
    """flock an existing lock file (None when there is none); refuse one that is held."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError):
        os.close(fd)
        raise DattobdError('Another backup cycle is running (lock %s is held).' % path, step='lock',
                           hint='Wait for it to finish, then run again.')
    return fd


def migrate_record(state_dir, image):
    """``(record, actions)``: :func:`find_record`, with a record under the old name moved to the new one.

    The caller holds the lock of ``image``; the old lock is held as well while the record moves. An
    old record without the image path gets it first (rewritten in place), then one rename moves it:
    a crash at any point leaves one complete record. An old record left beside a new one (a crash
    after the rename of an earlier version's copy) is removed.
    """
    record, legacy = find_record(state_dir, image)
    if legacy is None:
        return record, []
    path = os.path.join(state_dir, record_name(image))
    old_lock = legacy[:-len('.json')] + '.lock'
    fd = _hold_existing_lock(old_lock)
    try:
        if os.path.lexists(path):
            os.unlink(legacy)
            actions = ['remove the old backup record %s (already moved to %s)' % (legacy, path)]
        else:
            if not _names_image(_read_record(legacy) or {}, image):
                atomic_write(legacy, _record_bytes(record))
            os.rename(legacy, path)
            actions = ['move the backup record %s to %s' % (legacy, path)]
        if fd is not None:
            os.unlink(old_lock)
        fsync_dir(state_dir)
    finally:
        if fd is not None:
            os.close(fd)
    return record, actions


def _record_bytes(record):
    return (json.dumps(record, indent=1, sort_keys=True) + '\n').encode('utf-8')


def save_record(state_dir, image, record):
    _private_dir(state_dir)
    path = os.path.join(state_dir, record_name(image))
    record = dict(record, format=RECORD_FORMAT, image=normalized_image(image))
    atomic_write(path, _record_bytes(record))
    return path


def _held(image, path):
    return DattobdError('Another backup cycle of %s is running (lock %s is held).' % (image, path),
                        hint='Wait for it to finish (a scheduled timer and a manual run overlap?), then run again.',
                        step='lock', image_state='untouched', next_run='incremental')


def lock(state_dir, image):
    """Hold ``<state_dir>/<lock_name>`` (flock) for the cycle; refuse a second concurrent cycle.

    The lock is named after the file the path leads to (:func:`real_image`): two paths of one image
    (a symlinked directory) share it.
    """
    _private_dir(state_dir)
    path = os.path.join(state_dir, lock_name(real_image(image)))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError):
        os.close(fd)
        raise _held(image, path)
    return fd


def unlock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_not_locked(state_dir, image):
    """Refuse (the :func:`lock` error) when another cycle holds the lock of ``image``; reads only.

    A missing lock file (or state directory) is no cycle: nothing is created.
    """
    path = os.path.join(state_dir, lock_name(real_image(image)))
    try:
        fd = _hold_existing_lock(path)
    except DattobdError:
        raise _held(image, path)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return
        raise
    if fd is not None:
        unlock(fd)


def read_records(state_dir):
    """``[(file name, record or None)]`` of every record (``*.json``) in ``state_dir``, sorted by name.

    None for a file that is no JSON object; ``[]`` when the directory cannot be listed. Reads only.
    """
    try:
        names = sorted(n for n in os.listdir(state_dir) if n.endswith('.json') and not n.startswith('.'))
    except OSError:
        return []
    return [(name, _read_record(os.path.join(state_dir, name))) for name in names]
