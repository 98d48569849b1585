# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The update-img job: copy the blocks a COW file lists from ``/dev/datto<minor>`` into an image.

:func:`run` checks everything before the first write (COW magic and clean flag, index size,
uuid equal to the snapshot's, ``cow seq_id == snapshot seq_id - 1``, image size equal to the
snapshot size, root-only destination, image metadata), journals the pending sync in the image
sidecar (see image.py), copies the coalesced runs with large I/O (copy.py) or runs the upstream
``update-img`` binary (``engine='upstream'``, strict: any stderr or ``N errors`` > 0 fails),
fsyncs, optionally verifies, and records the new seq_id. Every failure is a DattobdError.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import functools
import os
import re
import shlex
import shutil
import stat
import time

from . import copy as copy_mod
from . import cow as cow_mod
from . import fiemap
from . import image as image_mod
from . import procinfo
from . import verify as verify_mod
from . import runs as runs_mod
from .constants import BLOCK_SIZE, blocks_of
from .errors import DattobdError, SyncError
from .fileutil import fsync_path
from .runner import run_timed
from . import validation
from . import wedge

# The snapshot device of a minor. Tests replace it to use a regular file as the "snapshot".
SNAPSHOT_DEVICE = '/dev/datto%d'
ENGINES = ('python', 'upstream')
VERIFY = ('none', 'changed', 'full')
# The upstream engine copies a whole change set: its run is limited by this, not by ``timeout``.
SEEK_DATA = getattr(os, 'SEEK_DATA', 3)
SEEK_HOLE = getattr(os, 'SEEK_HOLE', 4)
UPSTREAM_COPY_TIMEOUT = 7 * 24 * 3600
_DEV_RE = re.compile(r'/dev/datto([0-9]+)')
_MINOR_RE = re.compile(r'[0-9]+')
_UPSTREAM_DONE_RE = re.compile(r'copying complete: ([0-9]+) blocks changed, ([0-9]+) errors')


def parse_snapshot(snapshot):
    """Minor number from ``3``, ``'3'`` or ``'/dev/datto3'`` (or a symlink to it).

    Only ASCII digits count: Python's Unicode-aware digit tests accept other scripts' digits (``'١'``
    is 1 to ``int``) and characters ``int`` refuses (``'²'``).
    """
    if isinstance(snapshot, bool):
        snapshot = None
    if isinstance(snapshot, int):
        minor = snapshot
    else:
        text = str(snapshot or '').strip()
        digits = text if _MINOR_RE.fullmatch(text) else None
        if digits is None and text.startswith('/') and '\0' not in text:
            m = _DEV_RE.fullmatch(text) or _DEV_RE.fullmatch(os.path.realpath(text))
            digits = m.group(1) if m else None
        if digits is None:
            raise SyncError('snapshot must be a minor number or /dev/datto<minor> (ASCII digits 0-9), got %r.'
                            % (snapshot,), hint='Use the minor of the tracker (see snapfleet.dattobd.info).')
        digits = digits.lstrip('0') or '0'
        if len(digits) > 3:  # never int() a long string (Python limits int conversion to 4300 digits)
            raise SyncError('snapshot minor %s is out of range (0..255).' % (digits[:12] + '...' * (len(digits) > 12)))
        minor = validation.to_int(digits)
    if minor < 0 or minor > 255:
        raise SyncError('snapshot minor %d is out of range (0..255).' % minor)
    return minor


def _size_of(path, what):
    try:
        return copy_mod.size_of(path)
    except OSError as exc:
        raise SyncError('Cannot open %s %s: %s.' % (what, path, os.strerror(exc.errno)), path=path)


def _tracker(minor, timeout, reader):
    info = reader(timeout=timeout)
    if not info.loaded:
        raise SyncError('The dattobd module is not loaded (no /proc/datto-info).',
                        hint='Load it (snapfleet.dattobd.engine) and make sure the tracker is in snapshot mode.')
    tracker = info.by_minor(minor)
    if tracker is None:
        raise SyncError('No dattobd tracker uses minor %d.' % minor,
                        hint='Check the minor with snapfleet.dattobd.info.', minor=minor)
    if tracker.failed:
        raise SyncError('Tracker %d has failed (%s): its snapshot cannot be read.' % (minor, tracker.state_name),
                        hint='A failed tracker must be destroyed and set up again; then take a full backup.',
                        minor=minor, tracker=tracker.to_dict())
    if not tracker.snapshot or not tracker.active:
        raise SyncError('Tracker %d is %s; a sync needs an active snapshot (state 3).' % (minor, tracker.state_name),
                        hint=('Run "dbdctl transition-to-snapshot <new cow file> %d" (snapfleet.dattobd.snapshot '
                              'state=snapshot) and sync from the previous COW file; the volume must be mounted.'
                              % minor), minor=minor, state=tracker.state)
    if tracker.seq_id is None or not tracker.uuid:
        raise SyncError('/proc/datto-info shows no seq_id/uuid for tracker %d.' % minor, minor=minor)
    return tracker


def _check_image(image, size):
    try:
        st = os.stat(image)
    except OSError as exc:
        raise SyncError('Cannot use image %s: %s.' % (image, os.strerror(exc.errno)),
                        hint='The image must exist: the first backup is a full copy (snapfleet.dattobd.backup).',
                        image=image)
    if not stat.S_ISREG(st.st_mode):
        raise SyncError('Image %s is not a regular file.' % image,
                        hint='Images are raw files in a root-only (0700) backup directory.', image=image)
    image_mod.check_private(image, 'image')
    have = _size_of(image, 'image')
    if have != size:
        raise SyncError('Image %s is %d bytes but the snapshot is %d bytes: it is not an image of this device.'
                        % (image, have, size), hint='Pass the image of this volume, or take a new full backup.',
                        image=image, image_size=have, snapshot_size=size)


def _upstream(update_img, device, cow_file, image, timeout):
    argv = [update_img, device, cow_file, image]
    rc, out, err = run_timed(argv, timeout=timeout)
    m = _UPSTREAM_DONE_RE.search(out)
    problems = []
    if rc != 0:
        problems.append('exit status %d' % rc)
    if err.strip():
        problems.append('stderr: %s' % err.strip()[-500:])
    if m is None:
        problems.append('no "copying complete" line')
    elif int(m.group(2)):
        problems.append('%s block(s) failed to copy' % m.group(2))
    if problems:
        raise SyncError('update-img failed (%s); the image is incomplete.' % '; '.join(problems),
                        hint='Run the sync again (it resumes), or use engine=python for per-block error details.',
                        cmd=argv, rc=rc, stdout=out, stderr=err)
    return int(m.group(1))


def _human(n):
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n < 1024 or unit == 'TiB':
            return ('%d %s' % (n, unit)) if unit == 'B' else ('%.1f %s' % (n, unit))
        n /= 1024.0
    return str(n)  # pragma: no cover


def _cow_parsed_once(fn):
    """Run ``fn`` inside ``cow.remembered_runs``: the summary, the space check, the copy and the verification
    share one parse of the COW file's index (a backup cycle's scope already does; a scope nests)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with cow_mod.remembered_runs():
            return fn(*args, **kwargs)
    return wrapper


@_cow_parsed_once
def run(snapshot, cow_file, image, verify='none', engine='python', check_mode=False, timeout=60,
        progress=None, adopt=False, update_img=None, method='auto', buffer_size=copy_mod.DEFAULT_BUFFER,
        procinfo_reader=None, extra_runs=None, read_depth=copy_mod.DEFAULT_READ_DEPTH):
    """Sync ``image`` from snapshot ``snapshot`` using the changes listed in ``cow_file``.

    Parameters: one per option of the ``sync`` module (and the backup cycle passes them on), plus test seams.
    Long: this docstring documents them; the body is under 50 lines.

    Returns ``dict(changed, actions, blocks, bytes, runs, seconds, mb_per_s, seq_id_from,
    seq_id_to, uuid, verified, resumed, engine)``; raises :class:`DattobdError` on any failure
    (before writing anything when a check fails).

    ``adopt``: accept an image without snapfleet metadata (e.g. made with dd), trusting the
    operator that it equals snapshot ``seq_id - 1``; metadata is written for it.
    ``update_img``: path of the upstream binary (``engine='upstream'``).
    ``extra_runs``: more ``(start, n)`` blocks to copy (and verify), ordered: the blocks the driver
    wrote untracked into the data area of the previous COW file while it was a snapshot's COW file
    (the backup module records them; see :func:`cow_data_runs`).
    ``read_depth``: reads the copy engine keeps in flight for scattered blocks (1..64, copy.py).
    """
    read_depth = copy_mod.check_read_depth(read_depth)
    update_img = _checked_options(engine, verify, update_img, cow_file, image)
    wedge.check()  # a driver wedged earlier in this boot: fail at once (wedge.py)
    reader = procinfo_reader or procinfo.read
    minor = parse_snapshot(snapshot)
    tracker = _tracker(minor, timeout, reader)
    device = SNAPSHOT_DEVICE % minor
    size = _size_of(device, 'snapshot device')

    # --- checks before anything is written ----------------------------------------------
    try:
        cow = _checked_cow(cow_file, size, tracker, minor)
    except cow_mod.CowError as exc:
        raise _nothing_written(exc, image)
    seq_from, seq_to, uuid = cow.seq_id, tracker.seq_id, tracker.uuid.lower()
    _check_image(image, size)
    meta = _image_meta(image, adopt, uuid, seq_from, size)
    try:
        summary = cow.summary()   # reads the whole index: checks every entry and the count
    except cow_mod.CowError as exc:
        raise _nothing_written(exc, image)
    plan = image_mod.plan_sync(meta, image, uuid, seq_from, seq_to, size, summary['sha256'])
    state = {'seq_id': meta['seq_id'], 'pending': meta.get('pending')}
    if plan == image_mod.DONE:
        # The same sync ran to completion before: a rerun has nothing to do.
        return dict(changed=False, actions=['nothing to do: %s already holds snapshot %d (sync %d -> %d from this '
                                            'COW file is complete)' % (image, seq_to, seq_from, seq_to)],
                    blocks=0, runs=0, bytes=0, seconds=0.0, mb_per_s=None, seq_id_from=seq_from, seq_id_to=seq_to,
                    uuid=uuid, verified=False, resumed=False, engine=engine, minor=minor, snapshot_device=device,
                    cow=cow.to_dict(), cow_sha256=summary['sha256'], diff=dict(before=state, after=state))

    job = SyncJob(device, cow, cow_file, image, size, verify, engine, update_img, method, buffer_size, progress,
                  seq_to, tracker, sorted((int(a), int(n)) for a, n in (extra_runs or ())), read_depth)
    result = dict(changed=True, actions=_planned_actions(job, plan, seq_from, summary), blocks=summary['blocks'],
                  runs=summary['runs'], bytes=min(summary['blocks'] * BLOCK_SIZE, size), seconds=0.0, mb_per_s=None,
                  seq_id_from=seq_from, seq_id_to=seq_to, uuid=uuid, verified=False, resumed=plan == image_mod.RESUME,
                  engine=engine, minor=minor, snapshot_device=device, cow=cow.to_dict(), cow_sha256=summary['sha256'],
                  diff=dict(before=state, after={'seq_id': seq_to, 'pending': None}))
    if check_mode:
        return result
    check_space(image, lambda: runs_mod.merge_sorted_runs(cow.runs(), cow_file_runs((cow_file,), size)[0], job.extra_runs),
                summary['blocks'] + blocks_of(os.path.getsize(cow_file)) + sum(n for dummy, n in job.extra_runs))
    meta = image_mod.begin_sync(image, meta, uuid, seq_from, seq_to, cow_file, summary['sha256'])
    _journalled_write(result, meta, job, seq_from)
    return result


def _journalled_write(result, meta, job, seq_from):
    """:func:`_write_phase` once the sync is journalled: a failure leaves the image pending (the next run resumes),
    and says so."""
    try:
        _write_phase(result, meta, job)
    except OSError as exc:
        raise SyncError('Sync %d -> %d into %s stopped: %s (%s).'
                        % (seq_from, job.seq_to, job.image, os.strerror(exc.errno) if exc.errno else exc,
                           getattr(exc, 'filename', None) or job.image),
                        hint='The sync is journalled as pending: fix the cause and run it again (it resumes).',
                        image=job.image)
    except cow_mod.CowError as exc:
        # The file passed every check before the copy, then read differently: changed or damaged under us.
        details = dict(exc.details, image=job.image)
        raise SyncError('Sync %d -> %d into %s stopped: the COW file read differently during the copy than when it '
                        'was checked: %s The image is partly updated and journalled as pending: do not restore '
                        'from it.' % (seq_from, job.seq_to, job.image, exc.msg), hint=cow_mod.DAMAGED_HINT, **details)


SyncJob = collections.namedtuple('SyncJob', 'device cow cow_file image size verify engine update_img method buffer_size '
                                            'progress seq_to tracker extra_runs read_depth')
SyncJob.__doc__ = """What the write phase of one sync works with (:func:`run` fills it after its checks)."""


def _checked_options(engine, verify, update_img, cow_file, image):
    """Refuse a bad option before anything is read; returns the update-img path (``engine='upstream'``)."""
    if engine not in ENGINES:
        raise SyncError('engine must be one of %s, got %r.' % (', '.join(ENGINES), engine))
    if verify not in VERIFY:
        raise SyncError('verify must be one of %s, got %r.' % (', '.join(VERIFY), verify))
    if engine == 'upstream':
        update_img = update_img or shutil.which('update-img')
        if not update_img:
            raise SyncError('engine=upstream needs the update-img binary of dattobd, which is not installed.',
                            hint='Install the dattobd utilities, or use engine=python (the default).')
    for name, value in (('cow_file', cow_file), ('image', image)):
        if not value or not os.path.isabs(value):
            raise SyncError('%s must be an absolute path, got %r.' % (name, value))
    return update_img


def _image_meta(image, adopt, uuid, seq_from, size):
    """The image's snapfleet metadata; one without any is refused unless ``adopt`` (then it is made for it)."""
    meta = image_mod.load(image)
    if meta is not None:
        return meta
    if not adopt:
        raise SyncError('Image %s has no snapfleet metadata (%s): cannot tell which snapshot it holds.'
                        % (image, image_mod.sidecar_path(image)),
                        hint=('If the image is a copy of snapshot %d of this tracker (made with dd, say), set '
                              'adopt=true; otherwise take a full backup.' % seq_from), image=image)
    return image_mod.adopt_meta(uuid, seq_from, size)


def _planned_actions(job, plan, seq_from, summary):
    """What the sync does, in order (check mode reports it; a real run does it)."""
    sidecar = image_mod.sidecar_path(job.image)
    if plan == image_mod.START:
        actions = ['journal sync %d -> %d in %s' % (seq_from, job.seq_to, sidecar)]
    else:
        actions = ['resume interrupted sync %d -> %d journalled in %s' % (seq_from, job.seq_to, sidecar)]
    if job.engine == 'upstream':
        actions.append(shlex.join([job.update_img, job.device, job.cow_file, job.image]))
    else:
        actions.append('copy %d changed blocks (%d runs, %s) from %s into %s'
                       % (summary['blocks'], summary['runs'], _human(summary['blocks'] * BLOCK_SIZE),
                          job.device, job.image))
    actions.append('fsync %s' % job.image)
    if job.verify != 'none':
        what = 'the copied blocks' if job.verify == 'changed' else 'the whole image'
        actions.append('verify %s against %s' % (what, job.device))
    actions.append('record seq_id %d in %s' % (job.seq_to, sidecar))
    return actions


def _checked_cow(cow_file, size, tracker, minor):
    """Open ``cow_file`` and check its header against the snapshot (its index: ``cow.summary()``).

    Raises :class:`DattobdError` (``cow_damaged`` in the details of a file that the format shows
    to be damaged).
    """
    # Header checks first (a dirty file is refused below): the tracker's live COW file is dirty by
    # nature, and passing it by mistake deserves its own message.
    cow = cow_mod.CowFile(cow_file, device_size=size, require_clean=False)
    if cow.uuid != tracker.uuid.lower():
        raise SyncError('COW file %s belongs to snapshot series %s, but tracker %d is series %s.'
                        % (cow_file, cow.uuid, minor, tracker.uuid),
                        hint='Pass the previous COW file of this tracker.', cow_uuid=cow.uuid, uuid=tracker.uuid)
    if cow.seq_id == tracker.seq_id:
        raise SyncError('COW file %s is the live COW file of tracker %d (seq_id %d): it collects the changes made '
                        'since the current snapshot, not the ones the image lacks.' % (cow_file, minor, cow.seq_id),
                        hint=('Pass the COW file the tracker used before its last transition-to-snapshot (seq_id %d; '
                              'the snapshot module returns it as previous_cow_file).' % (tracker.seq_id - 1)),
                        cow_seq_id=cow.seq_id, seq_id=tracker.seq_id)
    if cow.seq_id != tracker.seq_id - 1 or cow.seq_id < 1:
        raise SyncError('COW file %s has seq_id %d but snapshot %d has seq_id %d: the snapshot does not immediately '
                        'follow the snapshot that created the COW file (needs seq_id %d).'
                        % (cow_file, cow.seq_id, minor, tracker.seq_id, tracker.seq_id - 1),
                        hint=('Sync from the COW file the tracker used right before the last transition-to-snapshot; '
                              'if it is lost, take a new full backup.'), cow_seq_id=cow.seq_id, seq_id=tracker.seq_id)
    if not cow.clean:
        cow = cow_mod.CowFile(cow_file, device_size=size)   # raises: not closed cleanly
    if not cow.index_only:
        # transition-to-snapshot requires an incremental tracker, whose COW file is index-only.
        raise cow_mod.CowError('COW file %s is damaged: it is not an index-only file (flags %s), yet the COW file a '
                               'tracker used before transition-to-snapshot always is.'
                               % (cow_file, cow_mod.flags_text(cow.flags)), hint=cow_mod.DAMAGED_HINT,
                               path=cow_file, flags=cow.flags, cow_damaged=True)
    return cow


def _nothing_written(exc, image):
    """``exc`` (raised before the first write) with the image's state appended to its message."""
    details = dict(exc.details)
    return type(exc)('%s Nothing was written to %s.' % (exc.msg.rstrip(), image), hint=exc.hint, **details)


SPACE_MARGIN = 1048576  # bytes kept free beyond the data (filesystem metadata of the image)


def hole_bytes(path, runs, block_size=BLOCK_SIZE):
    """Bytes of ``runs`` (``(start_block, n)``, ordered) that fall in holes of the sparse file ``path``.

    Writing them allocates space in the file's filesystem; blocks already allocated are overwritten
    in place. Uses ``SEEK_DATA``/``SEEK_HOLE``; returns None when the filesystem refuses them.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        end_of_file = os.fstat(fd).st_size
        total = 0
        for start, n in runs:
            pos, end = start * block_size, min((start + n) * block_size, end_of_file)
            while pos < end:
                try:
                    data = os.lseek(fd, pos, SEEK_DATA)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: only a hole after pos
                        return None
                    data = end
                if data > pos:
                    total += min(data, end) - pos
                    pos = min(data, end)
                    if pos >= end:
                        break
                pos = min(os.lseek(fd, pos, SEEK_HOLE), end)
        return total
    finally:
        os.close(fd)


def free_bytes(path):
    """Bytes this process may still allocate in the filesystem of ``path`` (root: reserved blocks too)."""
    vfs = os.statvfs(path)
    return (vfs.f_bfree if os.geteuid() == 0 else vfs.f_bavail) * vfs.f_frsize


def check_space(image, runs_factory, max_blocks):
    """Refuse, before anything is written, a copy that cannot fit in the image's filesystem.

    Only blocks landing in holes of the sparse image need new space. The cheap bound
    (``max_blocks`` whole blocks) is tried first; when space is short, the blocks of
    ``runs_factory()`` that fall in holes are counted (``SEEK_DATA``/``SEEK_HOLE``).
    """
    directory = os.path.dirname(image) or '.'
    free = free_bytes(directory)
    if free >= max_blocks * BLOCK_SIZE + SPACE_MARGIN:
        return
    need = hole_bytes(image, runs_factory())
    if need is None:
        return  # the filesystem cannot tell: the copy itself reports ENOSPC, journalled
    need += need // 64 + SPACE_MARGIN if need else 0
    if need > free:
        raise SyncError('Not enough space for the changed blocks in %s: the image must grow by %s, %s free.'
                        % (directory, _human(need), _human(free)),
                        hint='Free space on the backup storage (or move the image), then run again; nothing was '
                             'written.', need_bytes=need, free_bytes=free, image=image)


def _write_phase(result, meta, job):
    """Copy (the python engine, or update-img), fsync, verify as asked, then record the new seq_id (:class:`SyncJob`).
    """
    device, cow, cow_file, image, size, verify, engine, update_img, tracker, extra_runs = (
        job.device, job.cow, job.cow_file, job.image, job.size, job.verify, job.engine, job.update_img, job.tracker,
        job.extra_runs)
    summary_blocks = result['blocks']
    # The previous COW file's own blocks: copied (python engine) and compared (verify=changed).
    extra, notes = cow_file_runs((cow_file,), size)
    if extra_runs:
        extra = list(runs_mod.merge_sorted_runs(extra, extra_runs))
    started = time.monotonic()
    if engine == 'upstream':
        blocks = _upstream(update_img, device, cow_file, image, UPSTREAM_COPY_TIMEOUT)
        try:
            fsync_path(image)
        except OSError as exc:
            raise SyncError('fsync of %s failed: %s.' % (image, os.strerror(exc.errno)),
                            hint='Check the backup storage and run the sync again (it resumes).')
        if blocks != summary_blocks:
            raise SyncError('update-img copied %d blocks but the COW file lists %d.' % (blocks, summary_blocks),
                            hint='Run the sync again with engine=python.')
        result['seconds'] = time.monotonic() - started
    else:
        if notes:
            result['cow_extents_note'] = '; '.join(notes)
        result['cow_file_blocks'] = sum(n for dummy, n in extra)
        stats = copy_mod.copy_runs(device, image, runs_mod.merge_sorted_runs(cow.runs(), extra),
                                   method=job.method, buffer_size=job.buffer_size, progress=job.progress,
                                   src_size=size, read_depth=job.read_depth)
        result.update(blocks=stats.blocks, bytes=stats.bytes, runs=stats.runs, seconds=stats.seconds,
                      method=stats.method)
    secs = result['seconds']
    result['seconds'] = round(secs, 3)
    result['mb_per_s'] = round(result['bytes'] / 1048576.0 / secs, 2) if secs > 0 else None
    if verify == 'changed':
        bad = verify_mod.compare_runs(device, image, runs_mod.merge_sorted_runs(cow.runs(), extra), src_size=size)
        _verify_failed(verify_mod.classify_mismatches(bad, device, image, tracker, result, (cow_file,)), image, device,
                       'changed')
        result['verified'] = True
    elif verify == 'full':
        bad = verify_mod.compare_runs(device, image, [(0, blocks_of(size))], src_size=size)
        _verify_failed(verify_mod.classify_mismatches(bad, device, image, tracker, result, (cow_file,)), image, device, 'full')
        result['verified'] = True
    image_mod.complete_sync(image, meta, job.seq_to, blocks=result['blocks'], verified=result['verified'])


def cow_file_runs(paths, size):
    """Runs of the device blocks that hold the given COW files (FIEMAP), clipped to ``size``.

    The driver never tracks its own writes to a COW file, in either mode, so the final content of
    the previous COW file (its index, written when it is closed) is in no change list. Each sync
    copies those blocks from the new snapshot as well; otherwise the image keeps stale content
    there forever (free space for the filesystem, but a block-for-block difference). Returns
    ``(runs, notes)``; a file whose extents cannot be read is named in ``notes``.
    """
    ranges, notes = [], []
    for path in paths:
        try:
            ranges.extend(fiemap.extents(path))
        except (OSError, ValueError) as exc:
            notes.append('extents of %s unknown (%s)' % (path, exc))
    return runs_mod.ranges_to_runs(runs_mod.block_ranges(ranges), blocks_of(size)), notes


def change_list_runs(cow_files, size, extra_runs=None):
    """The change list of a copy from several COW files: the blocks they list, their own blocks
    (:func:`cow_file_runs`) and ``extra_runs``, as ordered coalesced ``(start, n)`` runs."""
    return runs_mod.merge_runs([list(cow_mod.CowFile(p, device_size=size).runs()) for p in cow_files]
                               + [cow_file_runs(cow_files, size)[0], sorted(tuple(r) for r in extra_runs or [])])


def cow_data_runs(path, used_bytes, size, margin=4 << 20):
    """Runs of the device blocks holding the first ``used_bytes`` (+ ``margin``) of COW file ``path``.

    While a tracker is a snapshot, the driver appends copied-on-write data to its COW file by
    writing the device blocks directly, untracked. At transition-to-incremental the file is cut
    back to its index, so those blocks become free space whose content (the COW data) is in no
    change list and in no COW file the next sync locates: the next sync must copy them as well.
    Read this right before the transition (``cow_size_current`` in ``/proc/datto-info``); the
    margin covers data appended in between.
    """
    ranges = fiemap.extents(path, logical_end=used_bytes + margin)
    return runs_mod.ranges_to_runs(runs_mod.block_ranges(ranges), blocks_of(size))


def tracker_of(device, timeout=10, reader=None):
    """The active tracker behind ``/dev/datto<N>`` or None (for verification masks only)."""
    try:
        minor = parse_snapshot(device)
        return (reader or procinfo.read)(timeout=timeout).by_minor(minor)
    except (DattobdError, OSError, ValueError):
        return None


def _verify_failed(bad, image, device, kind):
    if bad:
        raise SyncError('Verification (%s) failed: %d block(s) of %s differ from %s (first: %s).'
                        % (kind, len(bad), image, device, ', '.join(str(b) for b in bad[:10])),
                        hint=('The image is not trustworthy; the sync stays journalled as pending. Check the backup '
                              'storage (dmesg), then run the sync again.'), mismatched_blocks=bad[:100],
                        mismatches=len(bad))


# --- the sync module ----------------------------------------------------------------------------

ARGUMENT_SPEC = dict(
    snapshot=dict(type='str', required=True),
    cow_file=dict(type='path', required=True),
    image=dict(type='path', required=True),
    engine=dict(type='str', default='python', choices=list(ENGINES)),
    verify=dict(type='str', default='none', choices=list(VERIFY)),
    adopt=dict(type='bool', default=False),
    timeout=dict(type='int', default=60),
    update_img_path=dict(type='path'),
    read_depth=dict(type='int', default=copy_mod.DEFAULT_READ_DEPTH),
)
UNEXPECTED = dict(msg='Sync failed: %s.', actions=[])


def module_runner(module):
    """The ``sync`` module's work on its validated ``module.params``: the result of :func:`run`."""
    p = module.params
    if p['timeout'] <= 0:
        module.fail_json(msg='timeout must be a positive number of seconds, got %d.' % p['timeout'])
    update_img = None
    if p['engine'] == 'upstream':
        update_img = p['update_img_path'] or module.get_bin_path('update-img', opt_dirs=['/usr/local/bin'])
        if not update_img:
            module.fail_json(msg='engine=upstream needs the update-img binary of dattobd, which is not installed.',
                             hint='Install the dattobd utilities, or use engine=python (the default).',
                             actions=[])
    return run(p['snapshot'], p['cow_file'], p['image'], verify=p['verify'], engine=p['engine'],
               check_mode=module.check_mode, timeout=p['timeout'], adopt=p['adopt'], update_img=update_img,
               read_depth=p['read_depth'])
