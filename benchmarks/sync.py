# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throughput of snapfleet's sync against upstream update-img and dd, same device, same run.

Standard library only. It needs the collection's ``plugins/module_utils/_dattobd`` package: by
default next to this script's parent (a checkout), or pass ``--lib DIR`` (a directory holding
``_dattobd/``), so the pair can be copied into a VM guest as is.

CI mode (default): a ``--size`` volume (default 1 GiB) of random data, attached to a loop device
when run as root (``--no-loop`` uses the file directly), three synthetic COW files written from
the format facts (10 % scattered 4 KiB blocks, 10 % in contiguous runs, 50 % mixed), and for each:

  * ``snapfleet``: the whole ``sync.run`` (COW checks, journal, copy, fsync, metadata),
  * the copy engine alone: the default (auto), without gap merging, without readahead, and with
    each I/O method alone (pread/preadv, sendfile, copy_file_range),
  * ``4k-pairs``: one 4 KiB pread+pwrite per changed block in Python (upstream's I/O pattern;
    a proxy, not the C binary), and ``update-img`` itself when installed,
  * ``dd``: sequential read of the whole device into a file (``bs=4M conv=fsync``).

Caches are dropped for our own files only (``POSIX_FADV_DONTNEED`` on the device, the image and
the loop backing file, with the loop device in direct-I/O mode), never system-wide.

Real mode (``--real --minor N --cow PREVIOUS_COW --image IMAGE``): inside a guest with the real
driver, right after ``dbdctl transition-to-snapshot``: copies the image aside for update-img,
syncs IMAGE with snapfleet (``adopt`` when it has no metadata), runs update-img on the copy when
installed, and dd of ``/dev/datto<N>``; prints the same ratios. Usage::

    python3 benchmarks/sync.py --size 1G            # CI mode, as root for a loop device
    python3 benchmarks/sync.py --size 64M --quick   # small and fast
    python3 sync.py --lib . --real --minor 0 --cow /data/.cow1 --image /backup/data.img
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

B = 4096
MIB = 1 << 20


def load_lib(path):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [path] if path else [os.path.join(here, '..', 'plugins', 'module_utils'), here]
    for c in candidates:
        if c and os.path.isdir(os.path.join(c, '_dattobd')):
            sys.path.insert(0, os.path.abspath(c))
            from _dattobd import copy as copy_mod, cow as cow_mod, image as image_mod, procinfo, sync as sync_mod
            return copy_mod, cow_mod, image_mod, procinfo, sync_mod
    sys.exit('cannot find the _dattobd package (looked in %s); pass --lib' % ', '.join(candidates))


def parse_size(text):
    text = text.strip().upper().rstrip('B').rstrip('I')
    mult = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}.get(text[-1:], 1)
    num = text[:-1] if text[-1:] in 'KMGT' else text
    return int(float(num) * mult)


def drop(path):
    """Drop the clean cached pages of one file or block device."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    os.close(fd)


def run_cmd(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          env=dict(os.environ, LC_ALL='C'), **kw)


def make_volume(path, size, seed):
    rnd = random.Random(seed)
    pool = os.urandom(16 * MIB)
    with open(path, 'wb') as f:
        done = 0
        while done < size:
            n = min(4 * MIB, size - done)
            off = rnd.randrange(0, len(pool) - n + 1) // B * B
            f.write(pool[off:off + n])
            done += n
        f.flush()
        os.fsync(f.fileno())


def change_sets(nblocks, seed):
    rnd = random.Random(seed)
    ten = nblocks // 10
    sets = {}
    sets['10% scattered 4 KiB'] = rnd.sample(range(nblocks), ten)
    # 10 % in contiguous runs of 1 MiB (256 blocks) at random aligned places
    run = 256 if nblocks >= 256 * 20 else 16
    slots = rnd.sample(range(nblocks // run), max(1, ten // run))
    sets['10% contiguous runs'] = [s * run + i for s in slots for i in range(run)]
    # 50 %: half scattered single blocks, half runs of 1..512 blocks
    chosen = set()
    target = nblocks // 2
    while len(chosen) < target // 2:
        chosen.add(rnd.randrange(nblocks))
    while len(chosen) < target:
        start = rnd.randrange(nblocks)
        for b in range(start, min(nblocks, start + rnd.randint(1, 512))):
            chosen.add(b)
            if len(chosen) >= target:
                break
    sets['50% mixed'] = sorted(chosen)
    return sets


def four_k_pairs(src, dst, runs):
    """Upstream's I/O pattern in Python: one 4 KiB pread + pwrite per changed block, no fsync."""
    s = os.open(src, os.O_RDONLY)
    d = os.open(dst, os.O_WRONLY)
    n = 0
    try:
        for start, count in runs:
            for b in range(start, start + count):
                os.pwrite(d, os.pread(s, B, b * B), b * B)
                n += 1
    finally:
        os.close(s)
        os.close(d)
    return n


def mbps(nbytes, secs):
    return nbytes / MIB / secs if secs > 0 else float('nan')


def dd_read(device, scratch, size):
    """dd of the whole device into a file (read + write + fsync), the full-copy bandwidth."""
    drop(device)
    t = time.monotonic()
    r = run_cmd(['dd', 'if=%s' % device, 'of=%s' % scratch, 'bs=4M', 'conv=fsync'])
    secs = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit('dd failed: %s' % r.stderr)
    os.unlink(scratch)
    return mbps(size, secs), secs


def dd_read_only(device, size):
    drop(device)
    t = time.monotonic()
    r = run_cmd(['dd', 'if=%s' % device, 'of=/dev/null', 'bs=4M'])
    secs = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit('dd failed: %s' % r.stderr)
    return mbps(size, secs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--size', default='1G', help='volume size in CI mode (default 1G; e.g. 64M for CI)')
    ap.add_argument('--dir', default=None, help='scratch directory (default: a new one under $TMPDIR)')
    ap.add_argument('--no-loop', action='store_true', help='use a plain file instead of a loop device')
    ap.add_argument('--quick', action='store_true', help='skip the per-method and 4k-pairs measurements')
    ap.add_argument('--seed', type=int, default=4776)
    ap.add_argument('--repeat', type=int, default=3, help='runs per engine (the median is printed)')
    ap.add_argument('--lib', default=None, help='directory holding the _dattobd package')
    ap.add_argument('--json', action='store_true', help='print the figures as JSON at the end')
    ap.add_argument('--real', action='store_true', help='real-driver mode (inside a guest)')
    ap.add_argument('--minor', type=int)
    ap.add_argument('--cow', help='real mode: the previous COW file (after transition-to-snapshot)')
    ap.add_argument('--image', help='real mode: the image at the COW file seq_id')
    args = ap.parse_args()
    libs = load_lib(args.lib)
    upstream = shutil.which('update-img')
    print('update-img: %s' % (upstream or 'not installed (figures for upstream are the 4k-pairs proxy only)'))
    if args.real:
        return real_mode(args, libs, upstream)
    return ci_mode(args, libs, upstream)


def ci_mode(args, libs, upstream):
    copy_mod, cow_mod, image_mod, procinfo, sync_mod = libs
    size = parse_size(args.size) // B * B
    nblocks = size // B
    work = tempfile.mkdtemp(prefix='snapfleet-bench-', dir=args.dir)
    os.chmod(work, 0o700)
    loop = None
    results = {'size': size, 'mode': 'ci', 'sets': {}, 'update_img': upstream}
    try:
        vol = os.path.join(work, 'volume')
        make_volume(vol, size, args.seed)
        device = vol
        if not args.no_loop and os.geteuid() == 0 and shutil.which('losetup'):
            r = run_cmd(['losetup', '--find', '--show', '--direct-io=on', '--read-only', vol])
            if r.returncode == 0:
                loop = r.stdout.strip()
                device = loop
            else:
                print('losetup failed (%s); using the file' % r.stderr.strip())
        results['device'] = 'loop device (direct I/O)' if loop else 'regular file'
        print('volume: %d MiB on %s' % (size // MIB, results['device']))
        image = os.path.join(work, 'image')
        shutil.copy(vol, image)
        os.chmod(image, 0o600)
        uuid = '5a' * 16
        snap_link = os.path.join(work, 'snap1')
        os.symlink(device, snap_link)
        sync_mod.SNAPSHOT_DEVICE = os.path.join(work, 'snap%d')
        tracker = procinfo.Tracker(minor=1, cow_file='/c', block_device='/dev/x', state=3, seq_id=2, uuid=uuid)
        info = procinfo.ProcInfo(loaded=True, version='bench', devices=[tracker])
        dd_mb, dd_s = dd_read(device, os.path.join(work, 'dd.out'), size)
        results['dd_mb_per_s'] = round(dd_mb, 1)
        print('dd if=<device> of=<file> bs=4M conv=fsync: %.1f MiB/s (%.2f s)  <- the "x dd" reference'
              % (dd_mb, dd_s))
        results['dd_read_only_mb_per_s'] = round(dd_read_only(device, size), 1)
        print('dd if=<device> of=/dev/null bs=4M: %.1f MiB/s (read only, for scale)' % results['dd_read_only_mb_per_s'])
        print('')
        print('median of %d interleaved runs each' % args.repeat)
        print('%-22s %-28s %8s %9s %9s %8s' % ('change set', 'engine', 'blocks', 'seconds', 'MiB/s', 'x dd'))
        for name, blocks in change_sets(nblocks, args.seed).items():
            cow_path = os.path.join(work, 'cow')
            cow_mod.write_cow(cow_path, size, blocks, seq_id=1, uuid=uuid)
            runs = list(cow_mod.CowFile(cow_path, device_size=size).runs())
            nbytes = len(set(blocks)) * B
            row = {'blocks': len(set(blocks)), 'runs': len(runs)}

            def reset():
                image_mod.init(image, uuid, 1, size)
                drop(device)
                drop(image)
                drop(vol)

            def ours():
                res = sync_mod.run(1, cow_path, image, procinfo_reader=lambda timeout=10: info)
                return res['seconds']

            def engine(method, **kw):
                def fn():
                    return copy_mod.copy_runs(device, image, runs, method=method, **kw).seconds
                return fn

            def pairs():
                t = time.monotonic()
                four_k_pairs(device, image, runs)
                return time.monotonic() - t

            def upstream_run():
                t = time.monotonic()
                r = run_cmd([upstream, sync_mod.SNAPSHOT_DEVICE % 1, cow_path, image])
                if r.returncode != 0 or r.stderr.strip() or ', 0 errors' not in r.stdout:
                    raise RuntimeError('update-img failed: %s %s' % (r.stdout[-200:], r.stderr[-200:]))
                return time.monotonic() - t

            engines = [('snapfleet', 'snapfleet sync', ours)]
            if not args.quick:
                engines += [('copy_auto', 'copy: auto (default)', engine('auto')),
                            ('copy_no_merge', 'copy: auto, no gap merge', engine('auto', merge_gap=0)),
                            ('copy_no_ra', 'copy: auto, no readahead', engine('auto', readahead=0)),
                            ('copy_plain', 'copy: auto, neither', engine('auto', readahead=0, merge_gap=0)),
                            ('copy_pread', 'copy: pread only', engine('pread')),
                            ('copy_sendfile', 'copy: sendfile only', engine('sendfile')),
                            ('copy_copy_file_range', 'copy: copy_file_range', engine('copy_file_range')),
                            ('4k_pairs', '4k pairs (python proxy)', pairs)]
            if upstream:
                engines.append(('update_img', 'update-img', upstream_run))
            times = dict((key, []) for key, label, fn in engines)
            failed = {}
            for dummy in range(args.repeat):
                for key, label, fn in engines:  # interleaved, so cache drift hits every engine alike
                    if key in failed:
                        continue
                    reset()
                    try:
                        times[key].append(fn())
                    except Exception as exc:  # report and go on: a method may not work on block devices
                        failed[key] = str(exc).rsplit('(first: ', maxsplit=1)[-1].split(')')[0][:60]
            first = True
            for key, label, fn in engines:
                if key in failed:
                    row[key] = None
                    print('%-22s %-28s FAILED: %s' % (name if first else '', label, failed[key]))
                else:
                    secs = sorted(times[key])[len(times[key]) // 2]
                    row[key] = round(mbps(nbytes, secs), 1)
                    print('%-22s %-28s %8d %9.2f %9.1f %8.2f' % (name if first else '', label, row['blocks'], secs,
                                                                 row[key], row[key] / dd_mb))
                first = False
            row['x_dd'] = round(row['snapfleet'] / dd_mb, 3)
            if row.get('4k_pairs'):
                row['x_4k_pairs'] = round(row['snapfleet'] / row['4k_pairs'], 2)
            results['sets'][name] = row
    finally:
        if loop:
            run_cmd(['losetup', '-d', loop])
        shutil.rmtree(work, ignore_errors=True)
    print('')
    for name, row in results['sets'].items():
        extra = ''
        if 'x_4k_pairs' in row:
            extra = ', %.2fx the 4k-pairs proxy' % row['x_4k_pairs']
        if row.get('update_img'):
            extra += ', %.2fx update-img' % (row['snapfleet'] / row['update_img'])
        print('%-22s snapfleet = %.2fx dd%s' % (name, row['x_dd'], extra))
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    return 0


def real_mode(args, libs, upstream):
    copy_mod, cow_mod, image_mod, procinfo, sync_mod = libs
    if args.minor is None or not args.cow or not args.image:
        raise SystemExit('--real needs --minor, --cow and --image')
    device = sync_mod.SNAPSHOT_DEVICE % args.minor
    size = copy_mod.size_of(device)
    work = tempfile.mkdtemp(prefix='snapfleet-bench-', dir=args.dir or os.path.dirname(args.image))
    os.chmod(work, 0o700)
    results = {'mode': 'real', 'size': size, 'minor': args.minor, 'update_img': upstream}
    try:
        up_image = os.path.join(work, 'image.update-img')
        if upstream:
            shutil.copy(args.image, up_image)
        dd_mb, dd_s = dd_read(device, os.path.join(work, 'dd.out'), size)
        results['dd_mb_per_s'] = round(dd_mb, 1)
        print('dd of %s: %.1f MiB/s (%.2f s)' % (device, dd_mb, dd_s))
        drop(device)
        drop(args.image)
        res = sync_mod.run(args.minor, args.cow, args.image, adopt=image_mod.load(args.image) is None)
        results['snapfleet'] = res['mb_per_s']
        results['blocks'] = res['blocks']
        results['runs'] = res['runs']
        print('snapfleet sync: %d blocks in %d runs, %.2f s, %.1f MiB/s = %.2fx dd'
              % (res['blocks'], res['runs'], res['seconds'], res['mb_per_s'] or 0, (res['mb_per_s'] or 0) / dd_mb))
        if upstream:
            drop(device)
            drop(up_image)
            t = time.monotonic()
            r = run_cmd([upstream, device, args.cow, up_image])
            secs = time.monotonic() - t
            print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip())
            up = mbps(res['bytes'], secs)
            results['update_img_mb_per_s'] = round(up, 1)
            print('update-img: %.2f s, %.1f MiB/s; snapfleet = %.2fx update-img' % (secs, up, res['mb_per_s'] / up))
            same = run_cmd(['cmp', '-s', args.image, up_image]).returncode == 0
            print('images identical: %s' % same)
            results['identical'] = same
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
