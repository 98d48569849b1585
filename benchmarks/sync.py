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
the format facts (10 % scattered 4 KiB blocks, 1 % scattered 4 KiB blocks, 10 % in contiguous
1 MiB runs), and for each:

  * ``snapfleet``: the whole ``sync.run`` (COW checks, journal, copy, fsync, metadata),
  * the copy engine alone at each ``--depths`` read depth (1 is the single-threaded engine, the
    variant kept for comparison); without ``--quick`` also without gap merging, without
    readahead, and with each I/O method alone (pread/preadv, sendfile, copy_file_range),
  * ``4k-pairs`` (not with ``--quick``): one 4 KiB pread+pwrite per changed block in Python
    (upstream's I/O pattern; a proxy, not the C binary), and ``update-img`` itself when installed.

The device's own limits, measured in the same run on the same device: ``fio`` random 4 KiB reads
(direct I/O, libaio) at queue depth 1 and 32 (the reference of the scattered sets), ``dd`` of the
whole device to /dev/null (sequential read) and ``dd`` into a file with fsync (sequential copy:
read, write and fsync as the engine does; the reference of the contiguous set). Every engine is printed as a ratio of its set's reference
and of the depth-1 engine. The load average is printed beside each set: on a shared machine,
figures taken under load are noise.

Caches are dropped for our own files only (``POSIX_FADV_DONTNEED`` on the device, the image and
the loop backing file, with the loop device in direct-I/O mode), never system-wide.

Real mode (``--real --minor N --cow PREVIOUS_COW --image IMAGE``): inside a guest with the real
driver, right after ``dbdctl transition-to-snapshot``: copies the image aside for update-img,
syncs IMAGE with snapfleet (``adopt`` when it has no metadata), runs update-img on the copy when
installed, times dd of ``/dev/datto<N>`` and fio on it; prints the same ratios. Then it compares
each image with ``/dev/datto<N>`` block by block outside the live COW file's extents (the mask of
the sync's verification, ``verify.mask_live_cow``): "identical outside the live COW file" with the
count of masked blocks, or the differing blocks. Every block the project copies beyond
update-img's list (the COW file's changed blocks) is accounted for by name and count: the old
COW file's own blocks (``cow_file_blocks``) and the regions passed with ``--extra-runs`` (the
after-reboot regions or untracked COW data the backup module adds); a block in which the two
images differ and that no name explains is reported as unexplained. Usage::

    python3 benchmarks/sync.py --size 1G            # CI mode, as root for a loop device
    python3 benchmarks/sync.py --size 256M --quick  # small and fast
    python3 sync.py --lib . --real --minor 0 --cow /data/.cow1 --image /backup/data.img
    # or let it write the change set and take the snapshot itself (tracker incremental, the image
    # at its seq_id), then go back to incremental: one command per set
    python3 sync.py --lib . --real --minor 0 --image /backup/data.img --set 10s --file /data/bench.bin \
        --new-cow /data/.bench-cow-1
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

from benchutil import drop  # pylint: disable=import-error

B = 4096
MIB = 1 << 20


def load_lib(path):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [path] if path else [os.path.join(here, '..', 'plugins', 'module_utils'), here]
    for c in candidates:
        if c and os.path.isdir(os.path.join(c, '_dattobd')):
            sys.path.insert(0, os.path.abspath(c))
            from _dattobd import copy as copy_mod, cow as cow_mod, image as image_mod, procinfo, sync as sync_mod
            from _dattobd import verify as verify_mod, fsmap as fsmap_mod, fileutil
            return copy_mod, cow_mod, image_mod, procinfo, sync_mod, verify_mod, fsmap_mod, fileutil
    sys.exit('cannot find the _dattobd package (looked in %s); pass --lib' % ', '.join(candidates))


def parse_size(text):
    text = text.strip().upper().rstrip('B').rstrip('I')
    mult = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}.get(text[-1:], 1)
    num = text[:-1] if text[-1:] in 'KMGT' else text
    return int(float(num) * mult)


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


SCATTERED_10 = '10% scattered 4 KiB'
SCATTERED_1 = '1% scattered 4 KiB'
CONTIGUOUS_10 = '10% contiguous runs'


def change_sets(nblocks, seed):
    """The three change sets: 10 % and 1 % of the blocks scattered, 10 % in 1 MiB runs."""
    rnd = random.Random(seed)
    sets = {}
    sets[SCATTERED_10] = rnd.sample(range(nblocks), max(1, nblocks // 10))
    sets[SCATTERED_1] = rnd.sample(range(nblocks), max(1, nblocks // 100))
    # 10 % in contiguous runs of 1 MiB (256 blocks) at random aligned places
    run = 256 if nblocks >= 256 * 20 else 16
    slots = rnd.sample(range(nblocks // run), max(1, nblocks // 10 // run))
    sets[CONTIGUOUS_10] = [s * run + i for s in slots for i in range(run)]
    return sets


REAL_SETS = {'10s': SCATTERED_10, '1s': SCATTERED_1, '10c': CONTIGUOUS_10}


def write_set_and_snapshot(args, procinfo):
    """Real mode with --set: write the set's blocks of --file (random data, fsync), then
    ``dbdctl transition-to-snapshot --new-cow``; the previous COW file (absolute) is returned."""
    if not (args.file and args.new_cow):
        raise SystemExit('--set needs --file and --new-cow')
    tracker = procinfo.read(timeout=10).by_minor(args.minor)
    if tracker is None or tracker.mode != 'incremental' or tracker.failed:
        raise SystemExit('--set needs the tracker of minor %d incremental (it is %s)'
                         % (args.minor, tracker.state_name if tracker else 'not there'))
    mount = run_cmd(['findmnt', '-n', '-o', 'TARGET', '--target', args.file]).stdout.strip()
    prev_cow = os.path.join(mount, tracker.cow_file.lstrip('/'))
    nblocks = os.path.getsize(args.file) // B
    blocks = sorted(change_sets(nblocks, args.seed)[REAL_SETS[args.set]])
    fd = os.open(args.file, os.O_WRONLY)
    try:
        for b in blocks:
            os.pwrite(fd, os.urandom(B), b * B)
        os.fsync(fd)
    finally:
        os.close(fd)
    r = run_cmd(['dbdctl', 'transition-to-snapshot', args.new_cow, str(args.minor)])
    if r.returncode != 0:
        raise SystemExit('dbdctl transition-to-snapshot failed: %s' % r.stderr.strip())
    print('%s: %d blocks of %s written (of %d), snapshot taken; the previous COW file is %s'
          % (REAL_SETS[args.set], len(blocks), args.file, nblocks, prev_cow))
    return prev_cow


def back_to_incremental(args):
    """After a --set run: the tracker back to incremental, the previous COW file removed."""
    r = run_cmd(['dbdctl', 'transition-to-incremental', str(args.minor)])
    print('dbdctl transition-to-incremental %d: %s' % (args.minor, 'ok' if r.returncode == 0 else r.stderr.strip()))
    if r.returncode == 0 and args.cow and os.path.exists(args.cow):
        os.remove(args.cow)


def loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def fio_read(device, depth, seconds, pattern='randread', bs='4k'):
    """MiB/s of fio reads on ``device`` (direct I/O, libaio, read-only), or None without fio."""
    fio = shutil.which('fio')
    if not fio or seconds <= 0:
        return None
    drop(device)
    r = run_cmd([fio, '--name=limit', '--filename=%s' % device, '--readonly', '--rw=%s' % pattern, '--bs=%s' % bs,
                 '--iodepth=%d' % depth, '--ioengine=libaio', '--direct=1', '--runtime=%d' % seconds, '--time_based',
                 '--output-format=json'])
    if r.returncode != 0:
        print('fio failed: %s' % r.stderr.strip()[-200:])
        return None
    data = json.loads(r.stdout[r.stdout.index('{'):])
    return data['jobs'][0]['read']['bw_bytes'] / MIB


def fio_limits(device, seconds):
    """The device's own limits for each kind of set, measured now: fio random 4 KiB reads at depth 1 and 32."""
    out = {'fio_4k_qd1': fio_read(device, 1, seconds), 'fio_4k_qd32': fio_read(device, 32, seconds),
           'loadavg': loadavg()}
    for key in ('fio_4k_qd1', 'fio_4k_qd32'):
        if out[key] is not None:
            out[key] = round(out[key], 1)
    return out


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
    ap.add_argument('--depths', default=None,
                    help='read depths of the copy engine to measure (default: 1 and the default depth; '
                         'without --quick also 4 and 32)')
    ap.add_argument('--fio-seconds', type=int, default=5, help='seconds of each fio measurement (0: no fio)')
    ap.add_argument('--real', action='store_true', help='real-driver mode (inside a guest)')
    ap.add_argument('--extra-runs', default=None,
                    help='real mode: JSON file {name: [[start, n], ...]} of more blocks to copy (after-reboot '
                         'regions, untracked COW data), accounted for by name')
    ap.add_argument('--update-img', default=None,
                    help='the update-img binary to compare with (default: the one on PATH; in CI mode, where no driver '
                         'runs, a build of it without its driver checks)')
    ap.add_argument('--depth', type=int, default=None,
                    help='real mode: the sync\'s read_depth (default: the engine\'s, adaptive)')
    ap.add_argument('--minor', type=int)
    ap.add_argument('--cow', help='real mode: the previous COW file (after transition-to-snapshot)')
    ap.add_argument('--image', help='real mode: the image at the COW file seq_id')
    ap.add_argument('--set', choices=sorted(REAL_SETS),
                    help='real mode: first write this change set into --file (10s/1s: 10 %%/1 %% of its 4 KiB '
                         'blocks scattered, 10c: 10 %% in 1 MiB runs) and take the snapshot (--new-cow); '
                         'the previous COW file is the tracker\'s, removed after the run')
    ap.add_argument('--file', help='real mode with --set: a file on the tracked volume (most of it)')
    ap.add_argument('--new-cow', help='real mode with --set: the COW file of the new snapshot')
    args = ap.parse_args()
    libs = load_lib(args.lib)
    upstream = args.update_img or shutil.which('update-img')
    if args.update_img and not os.access(args.update_img, os.X_OK):
        raise SystemExit('--update-img %s: not an executable file' % args.update_img)
    print('update-img: %s' % (upstream or 'not installed (figures for upstream are the 4k-pairs proxy only)'))
    if args.real:
        return real_mode(args, libs, upstream)
    return ci_mode(args, libs, upstream)


def depths_of(args, copy_mod):
    if args.depths:
        depths = [copy_mod.check_read_depth(d, 'a --depths value') for d in args.depths.split(',')]
    elif args.quick:
        depths = [1, copy_mod.DEFAULT_READ_DEPTH]
    else:
        depths = [1, 4, copy_mod.DEFAULT_READ_DEPTH, 32]
    return sorted(set(depths))


def reference_of(name, limits):
    """The device limit a set is measured against.

    Scattered sets: fio random 4 KiB reads at depth 32 (read only: the engine's writes and fsync
    count against it), or the sequential dd read without fio. The contiguous set: the sequential
    copy, ``dd bs=4M conv=fsync`` of the device into a file (read, write and fsync, as the engine).
    """
    if name == CONTIGUOUS_10:
        return 'dd copy', limits['dd_copy_mb_per_s']
    if limits.get('fio_4k_qd32'):
        return 'fio 4k qd32', limits['fio_4k_qd32']
    return 'dd read', limits['dd_read_only_mb_per_s']


def ci_mode(args, libs, upstream):
    copy_mod, cow_mod, image_mod, procinfo, sync_mod = libs[:5]
    size = parse_size(args.size) // B * B
    nblocks = size // B
    depths = depths_of(args, copy_mod)
    work = tempfile.mkdtemp(prefix='snapfleet-bench-', dir=args.dir)
    os.chmod(work, 0o700)
    loop = None
    results = {'size': size, 'mode': 'ci', 'sets': {}, 'update_img': upstream, 'depths': depths,
               'default_depth': copy_mod.DEFAULT_READ_DEPTH, 'loadavg_start': loadavg()}
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
        print('volume: %d MiB on %s; load average %s' % (size // MIB, results['device'], results['loadavg_start']))
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
        print('dd if=<device> of=<file> bs=4M conv=fsync: %.1f MiB/s (%.2f s)  <- sequential copy: the reference of '
              'the contiguous set' % (dd_mb, dd_s))
        limits = {'dd_read_only_mb_per_s': round(dd_read_only(device, size), 1), 'dd_copy_mb_per_s': round(dd_mb, 1)}
        print('dd if=<device> of=/dev/null bs=4M: %.1f MiB/s  (sequential read)' % limits['dd_read_only_mb_per_s'])
        limits.update(fio_limits(device, args.fio_seconds))
        if limits['fio_4k_qd32'] is None:
            print('fio: not measured (%s); the scattered sets are compared with dd instead'
                  % ('--fio-seconds 0' if args.fio_seconds <= 0 else 'not installed: apt-get install fio'))
        else:
            print('fio randread 4 KiB, direct, libaio: depth 1 %.1f MiB/s, depth 32 %.1f MiB/s  <- the reference of '
                  'the scattered sets (load average %s)' % (limits['fio_4k_qd1'], limits['fio_4k_qd32'],
                                                            limits['loadavg']))
        results['limits'] = limits
        print('')
        print('median of %d interleaved runs each; default read depth %d' % (args.repeat, copy_mod.DEFAULT_READ_DEPTH))
        header = ('change set', 'engine', 'blocks', 'seconds', 'MiB/s', 'x ref', 'x depth1', 'load')
        print('%-20s %-40s %7s %8s %8s %8s %8s %6s' % header)
        for name, blocks in change_sets(nblocks, args.seed).items():
            cow_path = os.path.join(work, 'cow')
            from cowwriter import load as load_cow_writer  # pylint: disable=import-outside-toplevel,import-error
            load_cow_writer()(cow_path, size, blocks, seq_id=1, uuid=uuid)
            runs = list(cow_mod.CowFile(cow_path, device_size=size).runs())
            nbytes = len(set(blocks)) * B
            ref_name, ref = reference_of(name, limits)
            row = {'blocks': len(set(blocks)), 'runs': len(runs), 'reference': ref_name, 'reference_mb_per_s': ref}

            def reset():
                image_mod.init(image, uuid, 1, size)
                drop(device)
                drop(image)
                drop(vol)

            def ours():
                t = time.monotonic()  # the whole call: COW checks and parse, journal, copy, fsync, metadata
                sync_mod.run(1, cow_path, image, procinfo_reader=lambda timeout=10: info)
                return time.monotonic() - t

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

            engines = [('snapfleet', 'whole sync (default)', ours),
                       ('copy_adaptive', 'copy: adaptive, up to depth %d (default)' % copy_mod.DEFAULT_READ_DEPTH,
                        engine('auto'))]
            for depth in depths:
                label = 'copy: depth %d%s' % (depth, ' (one read at a time)' if depth == 1 else ', fixed')
                engines.append(('copy_depth_%d' % depth, label, engine('auto', read_depth=depth, adapt=False)))
            if not args.quick:
                engines += [('copy_no_merge', 'copy: default, no gap merge', engine('auto', merge_gap=0)),
                            ('copy_no_ra', 'copy: default, no readahead', engine('auto', readahead=0)),
                            ('copy_pread', 'copy: pread only', engine('pread')),
                            ('copy_sendfile', 'copy: sendfile only', engine('sendfile')),
                            ('copy_copy_file_range', 'copy: copy_file_range', engine('copy_file_range')),
                            ('4k_pairs', '4k pairs (python proxy)', pairs)]
            if upstream:
                engines.append(('update_img', 'update-img', upstream_run))
            times = dict((key, []) for key, label, fn in engines)
            failed = {}
            row['loadavg'] = loadavg()
            for dummy in range(args.repeat):
                for key, label, fn in engines:  # interleaved, so cache drift hits every engine alike
                    if key in failed:
                        continue
                    reset()
                    try:
                        times[key].append(fn())
                    except Exception as exc:  # report and go on: a method may not work on block devices
                        failed[key] = str(exc).rsplit('(first: ', maxsplit=1)[-1].split(')')[0][:60]
            row['loadavg_end'] = loadavg()
            load = '%s-%s' % (row['loadavg'], row['loadavg_end'])
            for key, label, fn in engines:
                if key not in failed:
                    row[key] = round(mbps(nbytes, sorted(times[key])[len(times[key]) // 2]), 1)
            base = row.get('copy_depth_1')
            first = True
            for key, label, fn in engines:
                if key in failed:
                    row[key] = None
                    print('%-20s %-40s FAILED: %s' % (name if first else '', label, failed[key]))
                else:
                    secs = sorted(times[key])[len(times[key]) // 2]
                    print('%-20s %-40s %7d %8.2f %8.1f %8.2f %8s %6s'
                          % (name if first else '', label, row['blocks'], secs, row[key], row[key] / ref,
                             '%.2f' % (row[key] / base) if base else '-', load if first else ''))
                first = False
            for key, label, value in (('fio_4k_qd1', 'fio 4k random, depth 1', limits.get('fio_4k_qd1')),
                                      ('fio_4k_qd32', 'fio 4k random, depth 32', limits.get('fio_4k_qd32')),
                                      ('dd_read_only_mb_per_s', 'dd sequential read', limits['dd_read_only_mb_per_s']),
                                      ('dd_copy_mb_per_s', 'dd sequential copy (fsync)', limits['dd_copy_mb_per_s'])):
                if value:
                    print('%-20s %-40s %7s %8s %8.1f %8.2f %8s %6s' % ('', label, '', '', value, value / ref,
                                                                       '%.2f' % (value / base) if base else '-', ''))
            default_key = 'copy_adaptive'
            row['x_ref'] = round(row[default_key] / ref, 3) if row.get(default_key) else None
            row['x_depth1'] = round(row[default_key] / base, 3) if row.get(default_key) and base else None
            row['x_dd'] = round(row['snapfleet'] / dd_mb, 3) if row.get('snapfleet') else None
            results['sets'][name] = row
    finally:
        if loop:
            run_cmd(['losetup', '-d', loop])
        shutil.rmtree(work, ignore_errors=True)
    results['loadavg_end'] = loadavg()
    print('')
    for name, row in results['sets'].items():
        extra = ''
        if row.get('update_img') and row.get('snapfleet'):
            extra = ', %.2fx update-img' % (row['snapfleet'] / row['update_img'])
        print('%-20s copy (adaptive, up to depth %d) = %sx %s, %sx depth 1; whole sync %sx full-copy dd%s (load average '
              '%s-%s)' % (name, copy_mod.DEFAULT_READ_DEPTH, row['x_ref'], row['reference'], row['x_depth1'], row['x_dd'],
                          extra, row['loadavg'], row['loadavg_end']))
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    return 0


def blocks_of_runs(runs):
    return set(b for start, n in runs for b in range(start, start + n))


def account(update_img_runs, named_runs, differing):
    """Account for every block copied beyond update-img's list, by name and count.

    ``update_img_runs``: the COW file's changed blocks (what update-img copies); ``named_runs``:
    ordered ``[(name, runs)]`` of the blocks the project copies as well (a block is counted under
    the first name holding it); ``differing``: the blocks in which the project's image and
    update-img's differ. Returns ``{'beyond': [(name, blocks copied beyond the list)],
    'differing': [(name, differing blocks it explains)], 'unexplained': [blocks]}``: a differing
    block is explained only by a name whose blocks update-img does not copy.
    """
    listed = blocks_of_runs(update_img_runs)
    seen = set(listed)
    beyond, owner = [], {}
    for name, runs in named_runs:
        mine = blocks_of_runs(runs) - seen
        seen |= mine
        beyond.append((name, len(mine)))
        for blk in mine:
            owner[blk] = name
    explained = dict((name, 0) for name, dummy in named_runs)
    unexplained = []
    for blk in sorted(differing):
        if blk in owner:
            explained[owner[blk]] += 1
        else:
            unexplained.append(blk)
    return {'beyond': beyond, 'differing': [(name, explained[name]) for name, dummy in named_runs],
            'unexplained': unexplained}


def compare_outside_live_cow(verify_mod, device, image, size, tracker, free_map):
    """``(differing blocks, masked block count, differing blocks the filesystem reports free, note)``.

    ``image`` against ``device``, block by block. The mask is the sync verification's
    (``verify.mask_live_cow``): the live COW file's extents. Of the other differing blocks, those the
    snapshot's filesystem reports unallocated (``verify.mask_unallocated`` with ``free_map``, the
    device's ``fsmap.FreeMap``) are counted apart: deleted data, whose content means nothing to the
    filesystem (a full backup leaves them as holes); the backup scenario's check accepts them too.
    """
    whole = [(0, (size + B - 1) // B)]
    bad = verify_mod.compare_runs(device, image, whole, src_size=size)
    others, masked, note = verify_mod.mask_live_cow(bad, tracker)
    others, free = verify_mod.mask_unallocated(others, device, free_map)
    return others, len(masked), free, note


def describe_comparison(label, others, masked, free, note):
    where = 'outside the live COW file (%d masked block(s))' % masked
    if free:
        where += ' and the %d unallocated block(s) that differ (free in the snapshot\'s filesystem, first: %s)' % (
            len(free), ', '.join(str(b) for b in free[:5]))
    if not others:
        text = '%s: identical %s' % (label, where)
    else:
        text = '%s: %d allocated block(s) differ %s; first: %s' % (
            label, len(others), where, ', '.join(str(b) for b in others[:10]))
    return text + ('; %s' % note if note else '')


def load_extra_runs(path):
    """``[(name, [(start, n)])]`` from a JSON file ``{name: [[start, n], ...]}`` (ordered by name)."""
    if not path:
        return []
    with open(path) as f:
        data = json.load(f)
    return [(str(name), sorted((int(a), int(n)) for a, n in runs)) for name, runs in sorted(data.items())]


def real_mode(args, libs, upstream):
    copy_mod, cow_mod, image_mod, procinfo, sync_mod, verify_mod, fsmap_mod, fileutil = libs
    if args.minor is not None and args.set:
        args.cow = write_set_and_snapshot(args, procinfo)
    if args.minor is None or not args.cow or not args.image:
        raise SystemExit('--real needs --minor, --cow and --image (or --set)')
    device = sync_mod.SNAPSHOT_DEVICE % args.minor
    size = copy_mod.size_of(device)
    extra = load_extra_runs(args.extra_runs)
    work = tempfile.mkdtemp(prefix='snapfleet-bench-', dir=args.dir or os.path.dirname(args.image))
    os.chmod(work, 0o700)
    results = {'mode': 'real', 'size': size, 'minor': args.minor, 'update_img': upstream, 'loadavg_start': loadavg(),
               'read_depth': copy_mod.DEFAULT_READ_DEPTH}
    try:
        up_image = os.path.join(work, 'image.update-img')
        if upstream:
            shutil.copy(args.image, up_image)
        dd_mb, dd_s = dd_read(device, os.path.join(work, 'dd.out'), size)
        results['dd_mb_per_s'] = round(dd_mb, 1)
        print('dd of %s: %.1f MiB/s (%.2f s)' % (device, dd_mb, dd_s))
        limits = fio_limits(device, args.fio_seconds)
        results['limits'] = limits
        if limits['fio_4k_qd32'] is not None:
            print('fio randread 4 KiB on %s: depth 1 %.1f MiB/s, depth 32 %.1f MiB/s'
                  % (device, limits['fio_4k_qd1'], limits['fio_4k_qd32']))
        cow_list = list(cow_mod.CowFile(args.cow, device_size=size).runs())
        named = [("the old COW file's own blocks", sync_mod.cow_file_runs((args.cow,), size)[0])] + extra
        drop(device)
        drop(args.image)
        extra_runs = sorted(r for dummy, runs in extra for r in runs)
        depth = copy_mod.DEFAULT_READ_DEPTH if args.depth is None else args.depth
        copies = []
        real_copy_runs = copy_mod.copy_runs

        def copy_runs(*a, **kw):  # the copy's statistics (the adaptive depth's choices), not in sync's result
            copies.append(real_copy_runs(*a, **kw))
            return copies[-1]

        copy_mod.copy_runs = copy_runs
        try:
            t = time.monotonic()  # the whole call, as update-img's is timed whole
            res = sync_mod.run(args.minor, args.cow, args.image, adopt=image_mod.load(args.image) is None,
                               extra_runs=extra_runs, read_depth=depth)
            whole = time.monotonic() - t
        finally:
            copy_mod.copy_runs = real_copy_runs
        if copies and copies[-1].probes:
            print('adaptive depth: %d of the scattered spans read by the threads; measured (threads s, alone s, '
                  'threads chosen): %s' % (copies[-1].pooled_spans, copies[-1].probes))
        ours = mbps(res['bytes'], whole)
        results.update(snapfleet=round(ours, 1), snapfleet_seconds=round(whole, 3), copy_seconds=res['seconds'],
                       blocks=res['blocks'], runs=res['runs'], depth=depth)
        ref = limits.get('fio_4k_qd32')
        label = 'up to %d, adaptive' % depth if depth > 1 else '1'
        versus = ', %.2fx fio 4k qd32' % (ours / ref) if ref else ''
        figures = (label, res['blocks'], res['runs'], whole, res['seconds'], ours, ours / dd_mb, versus)
        print('snapfleet sync (read depth %s): %d blocks in %d runs, %.2f s (the copy with its fsync %.2f s), '
              '%.1f MiB/s = %.2fx dd%s' % figures)
        tracker = sync_mod.tracker_of(device)
        free_map = fsmap_mod.free_map(device)
        others, masked, free, note = compare_outside_live_cow(verify_mod, device, args.image, size, tracker, free_map)
        print(describe_comparison('snapfleet image vs %s' % device, others, masked, free, note))
        results['snapfleet_vs_snapshot'] = {'differing': len(others), 'masked': masked, 'unallocated_differing': len(free)}
        if upstream:
            drop(device)
            drop(up_image)
            t = time.monotonic()
            r = run_cmd([upstream, device, args.cow, up_image])
            secs = time.monotonic() - t
            print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip())
            t = time.monotonic()
            fileutil.fsync_path(up_image)  # not timed against us: update-img itself never fsyncs
            up_fsync = time.monotonic() - t
            up = mbps(res['bytes'], secs)
            results.update(update_img_mb_per_s=round(up, 1), update_img_seconds=round(secs, 3),
                           update_img_fsync_seconds=round(up_fsync, 3), x_update_img=round(ours / up, 2))
            print('update-img: %.2f s (its image then fsynced in %.2f s, not counted), %.1f MiB/s; snapfleet = %.2fx '
                  'update-img' % (secs, up_fsync, up, ours / up))
            up_others, up_masked, up_free, up_note = compare_outside_live_cow(verify_mod, device, up_image, size, tracker,
                                                                              free_map)
            print(describe_comparison('update-img image vs %s' % device, up_others, up_masked, up_free, up_note))
            if up_others:
                why = account(cow_list, named, up_others)
                print('  of which (blocks update-img does not copy): %s; unexplained: %d'
                      % ('; '.join('%s: %d' % item for item in why['differing']), len(why['unexplained'])))
            results['update_img_vs_snapshot'] = {'differing': len(up_others), 'masked': up_masked,
                                                 'unallocated_differing': len(up_free)}
            differing = verify_mod.compare_runs(args.image, up_image, [(0, (size + B - 1) // B)], src_size=size)
            acc = account(cow_list, named, differing)
            print('blocks copied beyond update-img\'s list (%d changed blocks): %s'
                  % (sum(n for dummy, n in cow_list),
                     '; '.join('%s: %d' % item for item in acc['beyond']) or 'none'))
            print('the two images differ in %d block(s): %s; unexplained: %d%s'
                  % (len(differing), '; '.join('%s: %d' % item for item in acc['differing']) or 'none',
                     len(acc['unexplained']),
                     ' (first: %s)' % ', '.join(str(b) for b in acc['unexplained'][:10]) if acc['unexplained'] else ''))
            results['accounting'] = {'beyond': dict(acc['beyond']), 'differing': dict(acc['differing']),
                                     'unexplained': len(acc['unexplained']), 'images_differ_in': len(differing)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.set:
            back_to_incremental(args)
    results['loadavg_end'] = loadavg()
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
