# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""First (full) backup of a used volume: filesystem-aware sparse copy against all-zero detection.

A volume that has been in use holds old data in its free blocks. The backup module's full copy
with ``sparse=filesystem`` asks the filesystem which blocks are unallocated (fsmap.py: dumpe2fs,
xfs_db) and neither reads nor writes them; ``sparse=zeros`` reads every block and only leaves
all-zero ones as holes, so it copies the old data as well.

For ext4 and XFS: a ``--size`` volume file (default 1 GiB) is first filled with random "old
data", then formatted without discard (the old data stays in the free blocks) and populated with
``--used`` percent (default 10) of fresh files, all without root (``mkfs -d`` / protofile). Both
modes copy it (caches of the files dropped with ``POSIX_FADV_DONTNEED`` before each run) and the
script prints seconds, MiB/s of the volume, bytes read and written, and the space the image takes.
The images are checked with ``e2fsck -fn`` / ``xfs_repair -n``.

    python3 benchmarks/full_copy.py                 # 1 GiB, 10 % used
    python3 benchmarks/full_copy.py --size 256M --used 30
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchutil import drop  # pylint: disable=import-error

MIB = 1 << 20


def load_lib():
    here = os.path.dirname(os.path.abspath(__file__))
    lib = os.path.join(here, '..', 'plugins', 'module_utils')
    sys.path.insert(0, os.path.abspath(lib))
    from _dattobd import copy as copy_mod, fsmap  # pylint: disable=import-outside-toplevel
    return copy_mod, fsmap


def size_arg(text):
    units = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def make_volume(work, fstype, size, used_pct):
    vol = os.path.join(work, '%s.vol' % fstype)
    with open(vol, 'wb') as handle:           # old data everywhere
        left = size
        while left:
            n = min(left, 4 * MIB)
            handle.write(os.urandom(n))
            left -= n
    tree = os.path.join(work, 'tree-' + fstype)
    os.mkdir(tree)
    want = size * used_pct // 100
    files, i = [], 0
    while want > 0:
        n = min(want, 32 * MIB)
        path = os.path.join(tree, 'f%03d' % i)
        with open(path, 'wb') as handle:
            handle.write(os.urandom(n))
        files.append(path)
        want -= n
        i += 1
    if fstype == 'ext4':
        subprocess.run(['mkfs.ext4', '-q', '-F', '-E', 'nodiscard', '-d', tree, vol], check=True)
    else:
        proto = os.path.join(work, 'proto')
        with open(proto, 'w') as handle:
            handle.write('/dev/null\n0 0\nd--755 0 0\n')
            for path in files:
                handle.write('%s ---644 0 0 %s\n' % (os.path.basename(path), path))
            handle.write('$\n')
        subprocess.run(['mkfs.xfs', '-q', '-f', '-K', '-p', proto, vol], check=True)
    shutil.rmtree(tree)
    return vol


def check(fstype, image):
    argv = ['e2fsck', '-fn', image] if fstype == 'ext4' else ['xfs_repair', '-n', '-f', image]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    return 'clean' if res.returncode == 0 else 'FAILED rc %d' % res.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--size', type=size_arg, default=1 << 30, help='volume size (default 1G)')
    ap.add_argument('--used', type=int, default=10, help='percent of the volume in files (default 10)')
    ap.add_argument('--fs', action='append', choices=['ext4', 'xfs'], help='filesystems (default both)')
    ap.add_argument('--dir', help='work directory (default a temporary one; needs about 3x --size)')
    args = ap.parse_args()
    copy_mod, fsmap = load_lib()
    work = tempfile.mkdtemp(prefix='snapfleet-fullcopy-', dir=args.dir)
    try:
        print('volume %d MiB, %d %% in files, free blocks full of old data' % (args.size // MIB, args.used))
        header = ('fs', 'sparse', 'seconds', 'MiB/s', 'read MiB', 'write MiB', 'image MiB', 'image check')
        print('%-5s %-10s %8s %9s %10s %10s %10s  %s' % header)
        for fstype in args.fs or ['ext4', 'xfs']:
            if shutil.which('mkfs.' + fstype) is None:
                print('%-5s skipped: mkfs.%s not installed' % (fstype, fstype))
                continue
            if fstype == 'xfs' and args.size < 300 * MIB:
                print('%-5s skipped: mkfs.xfs needs a volume of at least 300 MiB' % fstype)
                continue
            vol = make_volume(work, fstype, args.size, args.used)
            for mode in ('zeros', 'filesystem'):
                image = os.path.join(work, '%s-%s.img' % (fstype, mode))
                drop(vol)
                started = time.monotonic()
                skip = None
                if mode == 'filesystem':
                    fmap = fsmap.free_map(vol, size=args.size)
                    if not fmap.known:
                        print('%-5s %-10s no free-block map: %s' % (fstype, mode, fmap.note))
                        continue
                    skip = fmap.runs
                stats = copy_mod.full_copy(vol, image, skip_runs=skip)
                secs = time.monotonic() - started
                print('%-5s %-10s %8.2f %9.1f %10.1f %10.1f %10.1f  %s'
                      % (fstype, mode, secs, args.size / MIB / secs, stats.read_bytes / MIB, stats.bytes / MIB,
                         os.stat(image).st_blocks * 512 / MIB, check(fstype, image)))
                os.unlink(image)
            os.unlink(vol)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
