# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore points of a backup image: copies of the image kept before a cycle changes it.

Before a volume's cycle (once its readiness checks passed and its lock is held, before any hook),
the current image is copied to ``<image>.restore-<UTC %Y%m%dT%H%M%SZ>``:

* by reflink (the FICLONE ioctl: the copy shares every block with the image and costs no space until
  one of them changes; XFS with ``reflink=1``, Btrfs), unless ``retention_method`` is ``copy``;
* where the filesystem cannot reflink (the ioctl fails with EOPNOTSUPP, EXDEV, EINVAL, ENOTTY or
  ENOSYS; ext4, most network filesystems) and ``retention_method`` is ``auto`` or ``copy``, by a
  sparse full copy (holes and all-zero blocks stay holes), but only while ``retention_full_copies``
  is above 0; ``retention_method: reflink`` fails the volume instead.

The image metadata (``<image>.snapfleet.json``) is copied beside it (``<point>.snapfleet.json``),
best effort. Then the oldest restore points beyond ``retention`` (reflink) or beyond the smaller of
``retention`` and ``retention_full_copies`` (no reflink) are removed, with their metadata. Without
an image (the first backup) nothing is made and nothing pruned. Files are root-only (0600).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat
import time

from .errors import DattobdError, errno_name
from .fileutil import atomic_write, fsync_dir

METHODS = ('auto', 'reflink', 'copy')
FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
# errno of a FICLONE the filesystem (or the pair of files) cannot do: a full copy instead
NO_REFLINK = tuple(getattr(errno, name) for name in ('EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOTTY', 'ENOSYS')
                   if hasattr(errno, name))
SUFFIX = '.restore-'
META_SUFFIX = '.snapfleet.json'
CHUNK = 1 << 20
# name: (default, minimum)
OPTIONS = {'retention': (0, 0), 'retention_full_copies': (0, 0), 'retention_timeout': (21600, 1)}


def validate(p):
    """Check and fill in the restore-point options of ``p`` (changed in place); raises :class:`DattobdError`."""
    for name, (default, minimum) in sorted(OPTIONS.items()):
        value = p.get(name)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise DattobdError('%s must be an integer of at least %d, got %r.' % (name, minimum, value))
        p[name] = value
    p['retention_method'] = p.get('retention_method') or 'auto'
    if p['retention_method'] not in METHODS:
        raise DattobdError('retention_method must be one of %s, got %r.' % (', '.join(METHODS), p['retention_method']))
    return p


def point_name(image, now=None):
    """``<image>.restore-<UTC time>`` of ``now`` (seconds since the epoch, default the current time)."""
    return image + SUFFIX + time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(time.time() if now is None else now))


def existing(image):
    """The restore points of ``image``, newest first (their names sort by time); metadata files left out."""
    directory, base = os.path.split(image)
    try:
        names = os.listdir(directory or '.')
    except OSError:
        return []
    points = [os.path.join(directory, n) for n in names
              if n.startswith(base + SUFFIX) and not n.endswith(META_SUFFIX)]
    return sorted(points, reverse=True)


def _keep(p, reflinked):
    return p['retention'] if reflinked else min(p['retention'], p['retention_full_copies'])


def _image_is_file(image):
    try:
        return stat.S_ISREG(os.stat(image).st_mode)
    except OSError:
        return False


def _result(p, **values):
    out = dict(path=None, made=False, method=None, metadata=None, seconds=0.0, pruned=[], keep=None,
               retention=p['retention'], retention_full_copies=p['retention_full_copies'], note=None, warnings=[])
    out.update(values)
    return out


def plan(p, now=None):
    """What :func:`make` would do (check mode): the same decisions, with ``planned`` true.

    Whether the filesystem can reflink is only known by trying: with ``retention_method: auto``,
    ``method`` is ``reflink`` and ``pruned`` holds what a reflink copy prunes; ``pruned_without_reflink``
    what pruning removes when the copy falls back. Returns None when ``retention`` is 0.
    """
    if not p.get('retention'):
        return None
    image = p['image']
    if not _image_is_file(image):
        return _result(p, planned=True, note='no image yet: no restore point, nothing pruned')
    path = point_name(image, now)
    method = 'copy' if p['retention_method'] == 'copy' else 'reflink'
    points = sorted(set(existing(image) + [path]), reverse=True)
    without = points if p['retention_full_copies'] > 0 else [x for x in points if x != path]
    out = _result(p, planned=True, path=path, method=method, keep=_keep(p, method == 'reflink'))
    if method == 'copy' and p['retention_full_copies'] == 0:
        out.update(path=None, method=None, pruned=without[out['keep']:],
                   note='the full copies allowed (retention_full_copies) are 0: no restore point')
        return out
    out['pruned'] = points[out['keep']:] if method == 'reflink' else without[out['keep']:]
    if p['retention_method'] == 'auto':
        out['pruned_without_reflink'] = without[_keep(p, False):]
        out['note'] = ('a full copy where the filesystem cannot reflink' if p['retention_full_copies'] > 0
                       else 'none where the filesystem cannot reflink (retention_full_copies is 0)')
    return out


def actions(point, image):
    """The steps of a restore point (made or planned) as the cycle's ``actions`` list them."""
    if not point:
        return []
    out = []
    if point.get('path'):
        how = {'reflink': 'by reflink', 'copy': 'by a sparse full copy'}[point['method']]
        if point.get('planned') and 'pruned_without_reflink' in point:
            how += (' (a sparse full copy where the filesystem cannot reflink)' if point['retention_full_copies']
                    else ' (none where the filesystem cannot reflink)')
        out.append('copy %s to the restore point %s %s' % (image, point['path'], how))
    out.extend('remove %s (restore point beyond retention %d)' % (path, point['retention']) for path in point['pruned'])
    return out


def clone(dst_fd, src_fd):
    """FICLONE: ``dst_fd`` shares every block of ``src_fd`` (Linux); raises OSError."""
    import fcntl  # not on every platform: an ImportError means no reflink
    fcntl.ioctl(dst_fd, FICLONE, src_fd)


def _preserve(src_stat, path):
    os.chmod(path, stat.S_IMODE(src_stat.st_mode) & 0o700 or 0o600)
    os.utime(path, ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns))


def _reflink(image, path):
    """Reflink ``image`` to ``path`` (created, 0600): True, or False when the filesystem cannot (``path`` removed)."""
    src = os.open(image, os.O_RDONLY)
    try:
        dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                clone(dst, src)
            except ImportError:
                return False, 'no FICLONE on this platform'
            except (IOError, OSError) as exc:
                if exc.errno in NO_REFLINK:
                    return False, '%s: %s' % (errno_name(exc.errno), os.strerror(exc.errno))
                raise
            os.fsync(dst)
            return True, None
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _all_zero(data):
    return not data.strip(b'\0')


def sparse_copy(image, path, deadline, clock=time.monotonic):
    """Copy ``image`` to ``path`` (created, 0600): holes and all-zero 1 MiB chunks are not written; fsync.

    Raises :class:`DattobdError` once ``clock()`` passes ``deadline``.
    """
    src = os.open(image, os.O_RDONLY)
    try:
        size = os.fstat(src).st_size
        dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for start, end in _data_extents(src, size):
                offset = start
                while offset < end:
                    if clock() > deadline:
                        raise DattobdError('The copy of %s did not finish within retention_timeout.' % image,
                                           hint='Raise retention_timeout, or keep the images on a filesystem that '
                                                'can make reflink copies (XFS with reflink=1, Btrfs).')
                    data = os.pread(src, min(CHUNK, end - offset), offset)
                    if not data:
                        break
                    if not _all_zero(data):
                        os.pwrite(dst, data, offset)
                    offset += len(data)
            os.ftruncate(dst, size)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _data_extents(fd, size):
    """(start, end) of the data of ``fd`` (SEEK_DATA / SEEK_HOLE where the filesystem tells, else all of it)."""
    seek_data, seek_hole = getattr(os, 'SEEK_DATA', None), getattr(os, 'SEEK_HOLE', None)
    if seek_data is None or seek_hole is None:
        return [(0, size)]
    out = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, seek_data)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after offset
                    break
                raise
            end = min(os.lseek(fd, start, seek_hole), size)
            out.append((start, end))
            offset = end
    except OSError:
        return [(0, size)]
    return out


def _remove(path, warnings):
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        warnings.append('Cannot remove the restore point file %s: %s' % (path, exc.strerror or exc))
        return False


def prune(image, keep, warnings):
    """Remove the restore points of ``image`` beyond the ``keep`` newest, with their metadata; the removed paths."""
    pruned = []
    for path in existing(image)[keep:]:
        if _remove(path, warnings):
            pruned.append(path)
        _remove(path + META_SUFFIX, warnings)
    return pruned


def make(p, now=None, clock=time.monotonic):
    """Make the restore point of ``p['image']`` and prune (see the module docstring); the result dict, or None.

    Raises :class:`DattobdError` when a restore point required cannot be made (``path`` then removed):
    no reflink with ``retention_method: reflink``, a copy that failed or took longer than
    ``retention_timeout``.
    """
    if not p.get('retention'):
        return None
    image = p['image']
    began = clock()
    if not _image_is_file(image):
        return _result(p, note='no image yet: no restore point, nothing pruned')
    src_stat = os.stat(image)
    path = point_name(image, now)
    if os.path.lexists(path):
        raise DattobdError('The restore point %s exists already (two cycles of %s in the same second?).'
                           % (path, image), hint='Run the backup again in a second.')
    warnings = []
    reflinked, why = False, 'retention_method is copy'
    method = None
    try:
        if p['retention_method'] != 'copy':
            reflinked, why = _reflink(image, path)
            if reflinked:
                method = 'reflink'
            else:
                _remove(path, warnings)
        if not reflinked and p['retention_method'] == 'reflink':
            raise DattobdError('The filesystem of %s cannot make reflink copies (%s).' % (os.path.dirname(image), why),
                               hint='Use XFS (mkfs.xfs -m reflink=1) or Btrfs for the images, or set '
                                    'retention_method (dattobd_backup_retention_method) to auto or copy.')
        if not reflinked and p['retention_full_copies'] > 0:
            sparse_copy(image, path, began + p['retention_timeout'], clock)
            method = 'copy'
        if method:
            _preserve(src_stat, path)
    except (OSError, IOError, DattobdError) as exc:
        _remove(path, warnings)
        if isinstance(exc, DattobdError):
            raise
        raise DattobdError('Cannot make the restore point %s: %s' % (path, exc.strerror or exc),
                           hint='Check the space and permissions of the image directory.')
    metadata = _copy_metadata(image, path, warnings) if method else None
    fsync_dir(os.path.dirname(image) or '.')
    pruned = prune(image, _keep(p, reflinked), warnings)
    note = None
    if not method:
        note = 'the filesystem cannot reflink (%s) and retention_full_copies is 0: no restore point' % why \
            if p['retention_method'] != 'copy' else 'retention_full_copies is 0: no restore point'
    return _result(p, path=path if method else None, made=bool(method), method=method, metadata=metadata,
                   seconds=round(clock() - began, 3), pruned=pruned, keep=_keep(p, reflinked), note=note,
                   warnings=warnings)


def _copy_metadata(image, path, warnings):
    """``<image>.snapfleet.json`` -> ``<point>.snapfleet.json`` (0600); its path, None when there is none."""
    src = image + META_SUFFIX
    dst = path + META_SUFFIX
    try:
        with open(src, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        if exc.errno != errno.ENOENT:
            warnings.append('Cannot read the image metadata %s: %s' % (src, exc.strerror or exc))
        return None
    try:
        atomic_write(dst, data, mode=0o600)
    except (IOError, OSError) as exc:
        warnings.append('Cannot copy the image metadata to %s: %s' % (dst, exc.strerror or exc))
        return None
    return dst
