# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup image sidecar metadata and the sync journal.

Every image ``<image>`` has a sidecar ``<image>.snapfleet.json`` (root-only, 0600) holding::

    {"format": 1, "uuid": "<32 hex>", "seq_id": N, "size": bytes,
     "created": "...Z", "updated": "...Z", "chunk_digests": null | {...},
     "pending": null | {"uuid", "seq_id_from", "seq_id_to", "cow_file", "cow_sha256", "started"},
     "history": [{"seq_id_from", "seq_id_to", "cow_sha256", "blocks", "finished"}, ...]}

``seq_id`` is the seq_id of the snapshot the image equals. A sync first records ``pending``
(durably: tmp file + fsync + rename + directory fsync), then writes blocks, fsyncs the image and
finally records the new ``seq_id`` with ``pending`` cleared. Copying a block from the snapshot
is idempotent, so a sync interrupted at any point is simply run again: :func:`plan_sync` says
``resume`` for the same pending sync, refuses a different one, says ``done`` for a sync that
already completed (``seq_id`` at the target, reached from this COW file: a rerun has nothing to
do), refuses one whose target was reached from another COW content, and a sync to an image of
another series (``uuid``).

A re-baseline by comparison (compare_copy.py) writes into the image in place: it first records
``pending`` with ``"rebaseline": "compare"`` (:func:`begin_rebaseline`), and only the new metadata
of the completed, verified image (:func:`init`) clears it. Until then the image is partial: no
sync accepts it, and the backup module takes a full backup (:func:`rebaseline_pending`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shlex
import stat

from .constants import now_text
from .errors import DattobdError
from .fileutil import atomic_write

SUFFIX = '.snapfleet.json'
FORMAT = 1
HISTORY_KEEP = 20


class ImageError(DattobdError):
    """The image or its metadata does not allow the requested operation."""


def sidecar_path(image):
    return image + SUFFIX


def check_private(path, kind='file'):
    """Refuse a path (and its directory) that others may read or write, or that is not ours.

    Files must not be group/other readable or writable (0600); their directory must not be
    group/other accessible (0700). Raises :class:`ImageError` naming the chmod to run.
    """
    euid = os.geteuid()
    problems = []
    fixes = []
    targets = []
    if os.path.lexists(path):
        targets.append((path, kind, 0o077))
    parent = os.path.dirname(os.path.abspath(path)) or '/'
    targets.append((parent, 'directory', 0o077))
    for target, what, mask in targets:
        try:
            st = os.stat(target)
        except OSError as exc:
            raise ImageError('Cannot check %s %s: %s.' % (what, target, os.strerror(exc.errno)), path=target)
        if st.st_uid != euid:
            problems.append('%s %s is owned by uid %d, not by uid %d' % (what, target, st.st_uid, euid))
            fixes.append('chown %d %s' % (euid, shlex.quote(target)))
        mode = stat.S_IMODE(st.st_mode)
        if mode & mask:
            want = 0o700 if what == 'directory' else 0o600
            problems.append('%s %s has mode %04o (group/other may access it)' % (what, target, mode))
            fixes.append('chmod %04o %s' % (mode & ~mask & 0o7777 or want, shlex.quote(target)))
    if problems:
        raise ImageError('Refusing a backup destination others can access: %s.' % '; '.join(problems),
                         hint='Backups hold whole disks and must be root-only. Run: %s' % ' && '.join(fixes),
                         path=path, fix=fixes)


def load(image):
    """The sidecar metadata of ``image`` as a dict, or ``None`` when there is none."""
    path = sidecar_path(image)
    try:
        with open(path, 'r') as f:
            text = f.read()
    except (IOError, OSError) as exc:
        if not os.path.lexists(path):
            return None
        raise ImageError('Cannot read %s: %s.' % (path, os.strerror(exc.errno) if exc.errno else exc), path=path)
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ImageError('Image metadata %s is not valid JSON (%s).' % (path, exc),
                         hint='It was damaged outside snapfleet; restore it or take a new full backup.', path=path)
    if not isinstance(meta, dict) or meta.get('format') != FORMAT or not isinstance(meta.get('uuid'), str) \
            or not isinstance(meta.get('seq_id'), int) or not isinstance(meta.get('size'), int):
        raise ImageError('Image metadata %s lacks format/uuid/seq_id/size; it was not written by snapfleet.' % path,
                         hint='Restore it or take a new full backup.', path=path)
    meta.setdefault('pending', None)
    meta.setdefault('history', [])
    return meta


def save(image, meta):
    meta = dict(meta)
    meta['format'] = FORMAT
    meta['updated'] = now_text()
    data = (json.dumps(meta, indent=1, sort_keys=True) + '\n').encode('utf-8')
    try:
        atomic_write(sidecar_path(image), data)
    except OSError as exc:
        raise ImageError('Cannot write image metadata %s: %s.' % (sidecar_path(image), os.strerror(exc.errno)),
                         hint='Check free space and permissions of the backup directory.', path=sidecar_path(image))
    return meta


def init(image, uuid, seq_id, size, chunk_digests=None):
    """Record that ``image`` now equals snapshot ``seq_id`` of series ``uuid`` (after a full copy)."""
    meta = {'uuid': uuid, 'seq_id': int(seq_id), 'size': int(size), 'created': now_text(),
            'chunk_digests': chunk_digests, 'pending': None, 'history': []}
    return save(image, meta)


def adopt_meta(uuid, seq_id, size):
    """Metadata for an image made outside snapfleet, declared by the operator to be at ``seq_id``."""
    return {'format': FORMAT, 'uuid': uuid, 'seq_id': int(seq_id), 'size': int(size), 'created': now_text(),
            'chunk_digests': None, 'pending': None, 'history': [], 'adopted': True}


def begin_rebaseline(image, meta, uuid, seq_id, reason):
    """Durably record, before the first write, that ``image`` is being made equal to snapshot ``seq_id`` of
    series ``uuid`` by comparison (``reason``: why the backup is full); :func:`init` clears it."""
    meta = dict(meta)
    meta['pending'] = {'rebaseline': 'compare', 'uuid': uuid, 'seq_id_from': None, 'seq_id_to': seq_id,
                       'cow_file': None, 'cow_sha256': None, 'reason': reason, 'started': now_text()}
    return save(image, meta)


def rebaseline_pending(meta):
    """The journal of an unfinished re-baseline by comparison in ``meta`` (a dict), or None."""
    pending = (meta or {}).get('pending')
    return pending if isinstance(pending, dict) and pending.get('rebaseline') == 'compare' else None


RESUME = 'resume'
START = 'start'
DONE = 'done'


def plan_sync(meta, image, uuid, seq_from, seq_to, size, cow_sha256):
    """Decide whether a sync (``seq_from`` -> ``seq_to`` of ``uuid``) may run on this image.

    Returns ``'start'``, ``'resume'`` or ``'done'`` (the image already holds ``seq_to``, and no
    recorded sync reached it from another COW content: nothing to do); raises
    :class:`ImageError` otherwise.
    """
    side = sidecar_path(image)
    if meta['uuid'] != uuid:
        raise ImageError('Image %s belongs to another snapshot series (uuid %s) than the COW file and snapshot '
                         '(uuid %s): refusing to sync into the wrong image.' % (image, meta['uuid'], uuid),
                         hint='Pass the image made from this tracker, or take a new full backup for it.',
                         image=image, image_uuid=meta['uuid'], uuid=uuid)
    if meta['size'] != size:
        raise ImageError('Image %s is recorded as %d bytes but the snapshot is %d bytes.' % (image, meta['size'], size),
                         hint='The image belongs to another device; take a new full backup.', image=image)
    failed = meta.get('verify_failed')
    if failed:
        raise ImageError('Image %s failed verification (%s): it is not a good image of snapshot %s.'
                         % (image, failed.get('msg') if isinstance(failed, dict) else failed, meta.get('seq_id')),
                         hint='Take a new full backup (snapfleet.dattobd.backup with full=true).', image=image)
    _refuse_partial(image, meta)
    pending = meta.get('pending')
    if pending:
        same = (pending.get('uuid') == uuid and pending.get('seq_id_from') == seq_from
                and pending.get('seq_id_to') == seq_to)
        # A journal written without a digest (e.g. by a caller copying several COW files) is
        # identified by the uuid and the seq ids alone.
        if same and pending.get('cow_sha256') in (None, cow_sha256):
            return RESUME
        if same:
            raise ImageError('Image %s has an interrupted sync %d -> %d from a COW file with another content '
                             '(sha256 %s, now %s).' % (image, seq_from, seq_to, pending.get('cow_sha256'), cow_sha256),
                             hint=('The COW file was replaced or damaged since the sync started; the image is '
                                   'inconsistent. Take a new full backup.'), image=image, pending=pending)
        raise ImageError('Image %s is inconsistent: a sync %s -> %s (COW file %s) was interrupted and has not been '
                         'completed; refusing to start sync %d -> %d on top of it.'
                         % (image, pending.get('seq_id_from'), pending.get('seq_id_to'), pending.get('cow_file'),
                            seq_from, seq_to),
                         hint=('Run that sync again with the same COW file and the snapshot %s, or take a new full '
                               'backup (details in %s).' % (pending.get('seq_id_to'), side)),
                         image=image, pending=pending)
    if meta['seq_id'] == seq_to:
        done = [e for e in meta.get('history') or [] if isinstance(e, dict) and e.get('seq_id_to') == seq_to]
        last = done[-1] if done else {}
        if last.get('seq_id_from', seq_from) == seq_from and last.get('cow_sha256') in (None, cow_sha256):
            return DONE
        raise ImageError('Image %s already holds snapshot %d of this series, reached by another sync (%s -> %d, COW '
                         'sha256 %s) than this one (%d -> %d, COW sha256 %s): refusing to call this COW file applied.'
                         % (image, seq_to, last.get('seq_id_from'), seq_to, last.get('cow_sha256'), seq_from, seq_to,
                            cow_sha256),
                         hint=('The COW file was replaced or damaged after that sync; the image itself is complete. '
                               'The next sync needs the next COW file.'), image=image, seq_id=meta['seq_id'])
    if meta['seq_id'] != seq_from:
        raise ImageError('Image %s holds snapshot %d but the COW file lists the changes since snapshot %d '
                         '(to %d): applying it would give a corrupt image.' % (image, meta['seq_id'], seq_from, seq_to),
                         hint=('Each COW file must be applied in order. If an intermediate COW file is lost, take '
                               'a new full backup.'), image=image, seq_id=meta['seq_id'])
    return START


def _refuse_partial(image, meta):
    """Raise :class:`ImageError` when a re-baseline by comparison of ``image`` did not finish (the image is partial)."""
    pending = rebaseline_pending(meta)
    if pending:
        raise ImageError('Image %s is partial: a re-baseline by comparison to snapshot %s was interrupted (%s).'
                         % (image, pending.get('seq_id_to'), pending.get('started')),
                         hint='Run the backup module again: it completes the re-baseline (a full backup).',
                         image=image, pending=pending)


def begin_sync(image, meta, uuid, seq_from, seq_to, cow_file, cow_sha256):
    """Durably record the pending sync before the first write into the image."""
    meta = dict(meta)
    meta['pending'] = {'uuid': uuid, 'seq_id_from': seq_from, 'seq_id_to': seq_to, 'cow_file': cow_file,
                       'cow_sha256': cow_sha256, 'started': now_text()}
    return save(image, meta)


def complete_sync(image, meta, seq_to, blocks=None, verified=None):
    """Durably record that the image now equals snapshot ``seq_to`` (clears ``pending``)."""
    meta = dict(meta)
    pending = meta.get('pending') or {}
    entry = {'seq_id_from': pending.get('seq_id_from', meta.get('seq_id')), 'seq_id_to': seq_to,
             'cow_sha256': pending.get('cow_sha256'), 'blocks': blocks, 'verified': verified,
             'finished': now_text()}
    meta['history'] = (list(meta.get('history') or []) + [entry])[-HISTORY_KEEP:]
    meta['seq_id'] = seq_to
    meta['pending'] = None
    # Chunk digests describe the old content; they are stale after a sync.
    meta['chunk_digests'] = None
    return save(image, meta)


def mark_verify_failed(image, meta, msg):
    """Durably record that ``image`` failed a verification: it is not a good image of its ``seq_id``.

    A sync refuses such an image (:func:`plan_sync`) and the backup module takes a full backup;
    the full copy writes new metadata (:func:`init`) without this mark.
    """
    meta = dict(meta)
    meta['verify_failed'] = {'msg': msg, 'time': now_text()}
    return save(image, meta)
