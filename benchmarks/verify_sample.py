# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost of the sampled verification outside the change list, as a fraction of the copy time.

Standard library only, no root. A ``--size`` file-backed volume (default 256 MiB of random data)
stands for the snapshot device and a copy of it for the image. For each change pattern (1 % and
10 % scattered 4 KiB blocks, 10 % in 1 MiB runs) a synthetic COW file lists the changed blocks;
the script times, with the caches of its own files dropped (``POSIX_FADV_DONTNEED``) before each
step:

  * ``copy``: the copy engine on the listed blocks (``copy.copy_runs``, as the sync runs it),
  * ``sample``: ``backup.Ops.verify_sample`` with the backup module's defaults
    (``verify_sample_budget`` 0.1 of the copy time as a hard cap, at least ``--min`` blocks, default
    1, at most 65536), and the same sample without the time stop (``uncapped``: what the size
    estimate alone would cost),

and prints the seconds, the blocks compared, the sample's time as a fraction of the copy time and
the bound of the chance that a lost section of 5 % escapes a sample of that size (``miss 5%``).
Each pattern also leaves a section of ``--lost`` percent of the volume stale outside the change
list: the sample must report it (``caught``). Usage::

    python3 benchmarks/verify_sample.py                    # 256 MiB
    python3 benchmarks/verify_sample.py --size 1G --seed 7 --dir /var/tmp
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import random
import shutil
import sys
import tempfile

from benchutil import drop  # pylint: disable=import-error

B = 4096
MIB = 1 << 20


def load_lib():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.abspath(os.path.join(here, '..', 'plugins', 'module_utils')))
    from _dattobd import backup, copy as copy_mod, cow as cow_mod, verify  # pylint: disable=import-outside-toplevel
    return backup, copy_mod, cow_mod, verify


def parse_size(text):
    text = text.strip().upper().rstrip('B').rstrip('I')
    mult = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if text[-1:] in 'KMG' else text) * mult)


def write_blocks(path, blocks, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        for b in blocks:
            os.pwrite(fd, data, b * B)
    finally:
        os.close(fd)


def patterns(nblocks, rng):
    def scattered(percent):
        return sorted(rng.sample(range(nblocks), nblocks * percent // 100))

    runs = []
    while len(runs) < nblocks // 10:
        start = rng.randrange(0, nblocks - 256)
        runs.extend(range(start, start + 256))
    return [('1% scattered', scattered(1)), ('10% scattered', scattered(10)),
            ('10% in 1 MiB runs', sorted(set(runs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--size', default='256M', help='volume size (default 256M)')
    ap.add_argument('--lost', type=float, default=5.0, help='percent of the volume left stale outside the list')
    ap.add_argument('--seed', type=int, default=1, help='seed of the sample and of the change patterns')
    ap.add_argument('--dir', default=None, help='where to put the files (default TMPDIR)')
    ap.add_argument('--min', type=int, default=None,
                    help='verify_sample_min (default the module\'s: 1, the time budget a hard cap)')
    args = ap.parse_args()
    backup, copy_mod, cow_mod, verify = load_lib()
    floor = verify.SAMPLE_MIN if args.min is None else args.min
    size = parse_size(args.size)
    nblocks = size // B
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix='snapfleet-verify-', dir=args.dir)
    try:
        snap, image = os.path.join(work, 'snap.dev'), os.path.join(work, 'data.img')
        with open(snap, 'wb') as handle:
            for dummy in range(size // MIB):
                handle.write(os.urandom(MIB))
        print('volume: %d MiB file-backed (%d blocks), lost section %.1f %%, seed %d, in %s'
              % (size // MIB, nblocks, args.lost, args.seed, work))
        print('%-18s %8s %8s | %7s %8s %8s %8s %8s | %8s %8s | %6s'
              % ('pattern', 'blocks', 'copy s', 'n', 'compared', 'sample s', 'fraction', 'miss 5%', 'uncap s', 'fraction',
                 'caught'))
        for name, changed in patterns(nblocks, rng):
            shutil.copyfile(snap, image)
            cow = os.path.join(work, 'c.cow')
            from cowwriter import load as load_cow_writer  # pylint: disable=import-outside-toplevel,import-error
            load_cow_writer()(cow, size, changed, seq_id=1)
            write_blocks(snap, changed, os.urandom(B))
            lost_n = int(nblocks * args.lost / 100)
            listed = set(changed)
            start = rng.randrange(0, nblocks - lost_n)
            lost = [b for b in range(start, start + lost_n) if b not in listed]
            write_blocks(snap, lost, os.urandom(B))
            runs = list(cow_mod.CowFile(cow, device_size=size).runs())
            drop(snap, image)
            stats = copy_mod.copy_runs(snap, image, runs, src_size=size)
            target, budget = verify.sample_target(stats.bytes, stats.seconds, verify.SAMPLE_BUDGET,
                                                  floor, verify.SAMPLE_MAX)
            drop(snap, image)
            out = backup.Ops().verify_sample(snap, image, [cow], None, target, args.seed, budget, floor)
            drop(snap, image)
            uncapped = backup.Ops().verify_sample(snap, image, [cow], None, target, args.seed, 1e9, floor)
            print('%-18s %8d %8.3f | %7d %8d %8.3f %7.1f%% %8.2g | %8.3f %7.1f%% | %6s'
                  % (name, stats.blocks, stats.seconds, out['sample_size'], out['blocks_compared'], out['seconds'],
                     100.0 * out['seconds'] / stats.seconds, out['miss_chance_5pct'], uncapped['seconds'],
                     100.0 * uncapped['seconds'] / stats.seconds, 'yes' if out['mismatches'] else 'NO'))
    finally:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
