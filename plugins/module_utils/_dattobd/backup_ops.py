# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host operations of the backup cycle (:class:`Ops`): everything a cycle does on the host.

The cycle (backup.py) reaches the host only through one :class:`Ops`; tests replace it (or some of
its methods). :func:`check_destination` is the destination check of the readiness checks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import random
import shlex
import stat
import time

from . import backup_record as records
from . import boot_state
from . import compare_copy as compare_mod
from . import copy as copy_mod
from . import cow as cow_mod
from . import fiemap
from . import fsmap
from . import hygiene
from . import image as image_mod
from . import planner
from . import procinfo
from . import reload as reload_mod
from . import runs as runs_mod
from . import sync as sync_mod
from . import tracker as tracker_mod
from . import verify as verify_mod
from .constants import BLOCK_SIZE, blocks_of
from .errors import DattobdError
from .runner import c_env, run_timed
from .runs import merge_runs
from . import wedge


class Ops(object):
    """Everything a cycle does on the host; tests replace methods."""

    def __init__(self, module=None, timeout=60, dbdctl_path=None, tracker_ctx=None,
                 read_depth=copy_mod.DEFAULT_READ_DEPTH):
        self.module = module
        self.timeout = timeout
        self.read_depth = read_depth
        self.dbdctl_path = dbdctl_path
        self.tracker_ctx = tracker_ctx
        # (device, FreeMap) of the last full copy's snapshot, for verify_copy to mask with
        self._free_map = None

    def tracker_ensure(self, device, state, **kwargs):
        from . import tracker as tracker_mod  # A's library; imported late so tests can run without it
        return tracker_mod.ensure(self.tracker_ctx or self.module, device, state, timeout=self.timeout,
                                  dbdctl_path=self.dbdctl_path, **kwargs)

    def check_driver(self):
        """Raise ``errors.DriverWedged`` when a driver call timed out earlier in this boot (wedge.py)."""
        wedge.check()

    def leftover_cow_files(self, device, cow_name, cow_dir, keep, state_dir, reload_dir=None):
        """COW files earlier trackers left on the filesystem of ``device`` (a re-baseline, a destroy).

        Regular files in the filesystem's root and ``cow_dir`` named like the collection's COW files
        (``cow_name``, any minor and seq), except: the COW file of every live tracker
        (/proc/datto-info; every tracker's, to be safe), every COW file a boot reload script in
        ``reload_dir`` names, every COW file a backup record in ``state_dir`` still lists as pending,
        and ``keep`` (absolute paths). Nothing when the driver is not loaded or the device not mounted.
        """
        from . import devices as devices_mod
        host = devices_mod.Host()
        dev = devices_mod.resolve(device, host)
        mount_point = dev.mount_point
        if not mount_point:
            return []
        info = procinfo.read(timeout=min(self.timeout, 30))
        if not info.loaded:
            return []
        named = [t.cow_file for t in info.devices if t.cow_file]
        scripts = reload_mod.scan(reload_dir or reload_mod.DEFAULT_DIR) or []
        named += [s.get('cow_file') for s in scripts if s.get('cow_file')]
        dirs = []
        if cow_dir and cow_dir.startswith(mount_point.rstrip('/') + '/'):
            dirs.append(cow_dir[len(mount_point.rstrip('/')):])
        protected = list(keep or []) + hygiene.pending_cow_files(state_dir)
        return hygiene.stray_cow_files(host, mount_point, named, cow_name or planner.DEFAULT_COW_NAME, dirs=dirs,
                                       protected=protected)

    def read_tracker(self, minor):
        info = procinfo.read(timeout=min(self.timeout, 30))
        return info.by_minor(minor) if info.loaded else None

    def snapshot_device(self, minor):
        return sync_mod.SNAPSHOT_DEVICE % minor

    def sync(self, snapshot, cow_file, image, verify, extra_runs=None):
        return sync_mod.run(snapshot, cow_file, image, verify=verify, timeout=self.timeout, extra_runs=extra_runs,
                            read_depth=self.read_depth)

    def untracked_runs(self, path, minor):
        """Blocks of the data the driver wrote into COW file ``path`` of tracker ``minor`` (``sync.cow_data_runs``)."""
        tracker = self.read_tracker(minor)
        if tracker is None or tracker.cow_size_current is None:
            raise DattobdError('tracker %s shows no COW file size' % minor)
        return sync_mod.cow_data_runs(path, tracker.cow_size_current, copy_mod.size_of(self.snapshot_device(minor)))

    def cow_usage(self, minor):
        """``(used, size)`` in bytes of the live COW file of snapshot ``minor`` (/proc/datto-info), or None.

        ``size`` is ``cow_size_current`` (the preallocated file, grown by auto-expand); ``used`` the
        header and index (``cow.data_offset_for`` the device size) and one block per block copied
        on write (``nr_changed_blocks``). None when the driver shows neither (an older driver).
        """
        tracker = self.read_tracker(minor)
        if tracker is None or tracker.cow_size_current is None or tracker.nr_changed_blocks is None:
            return None
        size = copy_mod.size_of(self.snapshot_device(minor))
        return cow_mod.data_offset_for(size) + tracker.nr_changed_blocks * BLOCK_SIZE, tracker.cow_size_current

    def _skip_map(self, src, sparse):
        """The :class:`fsmap.FreeMap` of ``src`` for a full copy or a comparison (``sparse='filesystem'``), or None.

        The snapshot does not change during the cycle: ``verify_copy`` masks with the same map."""
        free = None
        if sparse == 'filesystem':
            free = fsmap.free_map(src, timeout=max(self.timeout, 600), size=copy_mod.size_of(src))
        self._free_map = (src, free) if free is not None and free.known else None
        return free

    @staticmethod
    def _sparse_info(free, stats):
        """The result's ``sparse``: what was used and why."""
        if free is not None and free.known:
            info = {'method': 'filesystem', 'fstype': free.fstype, 'unallocated_blocks': stats.skipped_blocks}
        else:
            info = {'method': 'zeros', 'fstype': free.fstype if free is not None else None}
            if free is not None:
                info['note'] = free.note + '; only all-zero blocks stay holes'
        info['zero_blocks'] = stats.zero_blocks
        return info

    def full_copy(self, src, dst, sparse='filesystem'):
        """Copy ``src`` into the sparse file ``dst``; with ``sparse='filesystem'`` the blocks its filesystem
        reports unallocated are skipped (fsmap.py). The result has ``sparse``: what was used and why."""
        free = self._skip_map(src, sparse)
        stats = copy_mod.full_copy(src, dst, sparse=True, skip_runs=free.runs if free is not None else None)
        out = stats.to_dict()
        out['sparse'] = self._sparse_info(free, stats)
        return out

    def compare_copy(self, src, image, sparse='filesystem'):
        """Make ``image`` (of the size of ``src``) equal to ``src``, writing only the blocks that differ
        (compare_copy.py); with ``sparse='filesystem'`` the blocks the filesystem reports unallocated are
        neither read nor written. Refused first when the image's holes cannot fit in its filesystem."""
        free = self._skip_map(src, sparse)
        skip = free.runs if free is not None and free.known else None
        nblocks = blocks_of(copy_mod.size_of(src))
        wanted = list(runs_mod.complement(skip, nblocks)) if skip else [(0, nblocks)]
        sync_mod.check_space(image, lambda: wanted, sum(n for dummy, n in wanted))
        stats = compare_mod.compare_copy(src, image, skip_runs=skip, read_depth=self.read_depth)
        out = stats.to_dict()
        out['sparse'] = self._sparse_info(free, stats)
        out['sparse'].pop('zero_blocks')  # a comparison writes zero blocks that differ: there are none to count
        return out

    def union_copy(self, src, cow_files, image, verify, extra_runs=None):
        """Copy the union of the changed blocks of ``cow_files`` (and ``extra_runs``) from ``src`` into ``image``."""
        size = copy_mod.size_of(src)
        runs = sync_mod.change_list_runs(cow_files, size, extra_runs)
        sync_mod.check_space(image, lambda: runs, sum(n for dummy, n in runs))
        stats = copy_mod.copy_runs(src, image, runs, src_size=size, read_depth=self.read_depth)
        verified = False
        if verify != 'none':
            bad = verify_mod.compare_runs(src, image, runs, src_size=size)
            if bad:
                bad = verify_mod.classify_mismatches(bad, src, image, sync_mod.tracker_of(src, self.timeout),
                                                     cow_files=cow_files)
            if bad:
                raise DattobdError('Verification failed: %d block(s) of %s differ from %s (first: %s).'
                                   % (len(bad), image, src, ', '.join(str(b) for b in bad[:10])),
                                   hint='Check the backup storage (dmesg), then run the backup again (it resumes).')
            verified = True
        out = stats.to_dict()
        out.update(runs=len(runs), verified=verified)
        return out

    def verify_copy(self, src, image, cow_files=()):
        """Compare the whole ``image`` with ``src``; blocks that change between two reads are ignored.

        The snapshot device shows the live blocks of its own COW file (the driver does not COW its
        own writes), so those may differ without the copy being wrong; they are returned as
        ``unstable_blocks``. The blocks of ``cow_files`` (the COW files an incremental copy read)
        are masked as the sync masks them. Raises :class:`DattobdError` for any stable mismatch.
        """
        size = copy_mod.size_of(src)
        nblocks = blocks_of(size)
        bad = verify_mod.compare_runs(src, image, [(0, nblocks)], src_size=size)
        info = {}
        known = self._free_map
        stable = verify_mod.classify_mismatches(bad, src, image, sync_mod.tracker_of(src, self.timeout), info,
                                                cow_files=tuple(cow_files),
                                                free_map=known[1] if known and known[0] == src else None) if bad else []
        if stable:
            raise DattobdError('Verification failed: %d block(s) of %s differ from %s (first: %s).'
                               % (len(stable), image, src, ', '.join(str(b) for b in stable[:10])),
                               hint='Check the backup storage (dmesg); the next run takes a full backup again.',
                               mismatched_blocks=stable[:100])
        return {'verified': True, 'unstable_blocks': info.get('verify_unstable_blocks', []),
                'masked_blocks': info.get('verify_masked_blocks', 0),
                'unallocated_blocks': info.get('verify_unallocated_blocks', 0)}

    def free_map_of(self, src):
        """The :class:`fsmap.FreeMap` of the snapshot ``src``, read once per cycle (the snapshot does not change)."""
        if self._free_map is None or self._free_map[0] != src:
            free = fsmap.free_map(src, timeout=max(self.timeout, 600), size=copy_mod.size_of(src))
            self._free_map = (src, free)
        return self._free_map[1]

    def verify_sample(self, src, image, cow_files, extra_runs, target, seed, budget_seconds, minimum,
                      clock=time.monotonic):
        """Compare a uniform random sample of the allocated blocks of ``src`` OUTSIDE the change list with ``image``.

        Parameters: the two files, the change list (two parts), the sample's size, seed, time and minimum, and the
        clock tests set (hence nine).

        The change list is what the cycle copied: the blocks ``cow_files`` list, their own blocks
        and ``extra_runs``. Blocks the snapshot's filesystem reports free are not candidates;
        mismatches are masked as every verification masks them (``verify.classify_mismatches``: the
        live COW file, ``cow_files``, blocks that change between two reads). ``target`` blocks are
        drawn with ``random.Random(seed)`` (verify.py) and compared in batches sized to what is left
        of ``budget_seconds`` (``verify.next_batch``: a hard cap; at least ``minimum`` are compared).
        Returns the figures; the caller fails the cycle when ``mismatches`` is not 0.
        """
        began = clock()
        size = copy_mod.size_of(src)
        nblocks = blocks_of(size)
        free = self.free_map_of(src)
        changed = sync_mod.change_list_runs(cow_files, size, extra_runs)
        holes = merge_runs([free.runs, changed]) if free.known else changed
        candidates = list(runs_mod.complement(holes, nblocks))
        blocks = verify_mod.pick(candidates, target, random.Random(seed))
        ready = clock()
        compared, bad = 0, []
        while True:
            now = clock()
            step = verify_mod.next_batch(compared, len(blocks), minimum, now - began, budget_seconds,
                                         (now - ready) / compared if compared else None)
            if not step:
                break
            batch = merge_runs([[(b, 1)] for b in blocks[compared:compared + step]])
            bad.extend(verify_mod.compare_runs(src, image, batch, src_size=size, drop_cache=False, drop_runs=True,
                                               readahead=True))
            compared += step
        info = {}
        stable = verify_mod.classify_mismatches(sorted(bad), src, image, sync_mod.tracker_of(src, self.timeout), info,
                                                cow_files=tuple(cow_files),
                                                free_map=free if free.known else None) if bad else []
        out = {'seed': seed, 'sample_size': len(blocks), 'blocks_compared': compared,
               'candidate_blocks': sum(n for dummy, n in candidates), 'change_list_blocks': sum(n for dummy, n in changed),
               'allocation': 'filesystem' if free.known else 'every block (%s)' % free.note,
               'mismatches': len(stable), 'mismatched_blocks': stable[:100],
               'unstable_blocks': info.get('verify_unstable_blocks', []),
               'masked_blocks': info.get('verify_masked_blocks', 0),
               'budget_seconds': budget_seconds, 'seconds': round(clock() - began, 3),
               'setup_seconds': round(ready - began, 3),
               'miss_chance_5pct': verify_mod.miss_chance(0.05, compared),
               'miss_chance_1pct': verify_mod.miss_chance(0.01, compared)}
        if info.get('verify_mask_note'):
            out['mask_note'] = info['verify_mask_note']
        return out

    def mark_unverified(self, image, msg):
        """Note in the image metadata that the image failed verification (the next cycle is full)."""
        meta = image_mod.load(image)
        if meta is not None:
            image_mod.mark_verify_failed(image, meta, msg)

    def cow_header(self, path):
        cow = cow_mod.CowFile(path, require_clean=False)
        return {'uuid': cow.uuid, 'seq_id': cow.seq_id}

    def device_facts(self, device):
        from . import devices as devices_mod
        dev = devices_mod.resolve(device)
        names = [n for n in (dev.path, dev.stable_name, dev.given) if n]
        return {'rdev': dev.rdev, 'size': dev.size, 'names': names}

    def size_of(self, path):
        return copy_mod.size_of(path)

    def run_hook(self, argv, timeout, env=None):
        return run_timed(argv, timeout=timeout, env=c_env(env))

    def unlink(self, path):
        os.unlink(path)

    def rename(self, src, dst):
        os.rename(src, dst)

    def exists(self, path):
        return os.path.lexists(path)

    def load_meta(self, image):
        return image_mod.load(image)

    def init_meta(self, image, uuid, seq_id, size):
        return image_mod.init(image, uuid, seq_id, size)

    def remove_meta(self, image):
        path = image_mod.sidecar_path(image)
        if os.path.lexists(path):
            os.unlink(path)

    def begin_rebaseline(self, image, meta, uuid, seq_id, reason):
        return image_mod.begin_rebaseline(image, meta, uuid, seq_id, reason)

    def begin_union(self, image, meta, uuid, seq_from, seq_to, cow_files):
        return image_mod.begin_sync(image, meta, uuid, seq_from, seq_to, ','.join(cow_files), None)

    def complete_union(self, image, meta, seq_to, blocks, verified):
        return image_mod.complete_sync(image, meta, seq_to, blocks=blocks, verified=verified)

    def check_destination(self, image, device_rdev, size, need_full, check_free_space):
        check_destination(image, device_rdev, size, need_full, check_free_space)

    def find_record(self, state_dir, image):
        return records.find_record(state_dir, image)

    def migrate_record(self, state_dir, image):
        return records.migrate_record(state_dir, image)

    def lock(self, state_dir, image):
        return records.lock(state_dir, image)

    def unlock(self, fd):
        records.unlock(fd)

    def save_record(self, state_dir, image, record):
        return records.save_record(state_dir, image, record)

    def boot_check(self, path):
        return boot_state.read_boot_check(path)

    def boot_id(self):
        return boot_state.read_boot_id()

    def allocated_only(self, src, runs, live_cow=None):
        """``(runs, dropped)``: ``runs`` without the blocks the filesystem on ``src`` reports unallocated
        (``fsmap.free_map``; none when that map is unknown) and without those of the live COW file
        ``live_cow`` (the snapshot shows them as they are now; the next cycle copies that file)."""
        holes = []
        free = self.free_map_of(src)
        if free.known:
            holes.append(free.runs)
        if live_cow:
            holes.append(runs_mod.ranges_to_runs(fiemap.file_ranges(live_cow)))
        kept = runs_mod.subtract(runs, merge_runs(holes)) if holes else list(runs)
        return kept, sum(n for dummy, n in runs) - sum(n for dummy, n in kept)

    def mount_map(self, src, cow_files=()):
        """The blocks the filesystem on ``src`` writes while it is mounted (``fsmap.mount_map``), with the
        inode and block map of each of ``cow_files`` (paths on the live filesystem)."""
        inodes = [os.stat(path).st_ino for path in cow_files]
        return fsmap.mount_map(src, timeout=max(self.timeout, 600), size=copy_mod.size_of(src), inodes=inodes)


def check_destination(image, device_rdev=None, size=None, need_full=False, check_free_space=True):
    """Refuse an image others can access, on the traced filesystem, of the wrong size, or without room."""
    if not image or not os.path.isabs(image):
        raise DattobdError('image must be an absolute path, got %r.' % (image,))
    parent = os.path.dirname(image)
    if not os.path.isdir(parent):
        raise DattobdError('The image directory %s does not exist.' % parent,
                           hint='Create it root-only first: install -d -m 0700 -o root %s' % shlex.quote(parent))
    image_mod.check_private(image)
    st = os.stat(parent)
    if device_rdev is not None and st.st_dev == device_rdev:
        raise DattobdError('The image %s is on the filesystem being backed up: every write into the image would be '
                           'tracked as a change of the volume itself.' % image,
                           hint='Put images on another filesystem (a backup disk or a network mount).')
    if os.path.exists(image):
        ist = os.stat(image)
        if not stat.S_ISREG(ist.st_mode):
            raise DattobdError('The image path %s exists and is not a regular file.' % image)
        if size is not None and not need_full and ist.st_size != size:
            raise DattobdError('The image %s is %d bytes but the volume is %d bytes.' % (image, ist.st_size, size),
                               hint='It belongs to another volume; move it away or set full: true.')
    if need_full and check_free_space and size:
        vfs = os.statvfs(parent)
        free = vfs.f_bavail * vfs.f_frsize
        if free < size:
            raise DattobdError('Not enough free space in %s for a full image: %d bytes free, the volume is %d bytes.'
                               % (parent, free, size),
                               hint=('Free space (or set check_free_space: false if the volume is mostly empty: '
                                     'the image is sparse).'), free_bytes=free, size=size)
