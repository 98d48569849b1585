# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report at fleet scale: the report step and the page load in headless Chromium.

Builds a synthetic fleet (``--hosts`` hosts, 1 to 3 volumes each, a backup record with a 20-cycle
history per volume, a few percent of hosts with problems: unreachable, failed, stale, tracker
lost, kernel gate), then times, each ``--repeat`` times (median):

- the report step: ``fleet_report`` + JSON (``json.dumps``) + ``fleet_report_html`` +
  ``fleet_report_junit`` + ``fleet_report_markdown`` (what the playbooks' report play computes);
- the page load in headless Chromium: the page plus a probe script that, on ``load``, forces a
  layout and writes ``performance.now()`` (and DOMContentLoaded, and the time to sort the table
  by a column and to filter it to the problems) into the DOM, read back with ``--dump-dom``; and
  the wall-clock time of a ``--screenshot`` run (browser start included: an upper bound).

Usage (from a checkout, with the dev venv: Jinja2 is ansible-core's)::

    python3 benchmarks/report.py --hosts 5000 --repeat 3 --out /tmp/report-bench
    python3 benchmarks/report.py --hosts 2 --lab --out /tmp/report-lab     # the 2-host lab fleet

``--out`` keeps the pages, the JUnit and Markdown files and the screenshots (1400x1000).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = '2026-12-05T06:00:00Z'

PROBE = """<script>
window.addEventListener('load', function () {
  var out = {};
  document.body.offsetHeight;
  out.layout_ms = performance.now();
  var nav = performance.getEntriesByType('navigation')[0];
  out.dcl_ms = nav ? nav.domContentLoadedEventEnd : null;
  out.rows = document.querySelectorAll('#vt tbody tr').length;
  var t = performance.now();
  document.querySelectorAll('#vt th')[3].click();
  document.body.offsetHeight;
  out.sort_ms = performance.now() - t;
  t = performance.now();
  var st = document.getElementById('st');
  st.value = 'problems';
  st.dispatchEvent(new Event('change'));
  document.body.offsetHeight;
  out.filter_ms = performance.now() - t;
  out.shown = document.getElementById('shown').textContent;
  var d = document.createElement('pre');
  d.id = 'bench';
  d.textContent = JSON.stringify(out);
  document.body.appendChild(d);
});
</script>
"""


def import_filter():
    """fleet_report from this checkout, importable as ansible_collections.snapfleet.dattobd."""
    stage = tempfile.mkdtemp(prefix='report-bench-')
    os.makedirs(os.path.join(stage, 'ansible_collections', 'snapfleet'))
    os.symlink(os.path.dirname(HERE), os.path.join(stage, 'ansible_collections', 'snapfleet', 'dattobd'))
    sys.path.insert(0, stage)
    from ansible_collections.snapfleet.dattobd.plugins.filter import fleet_report  # pylint: disable=import-outside-toplevel
    return fleet_report, stage


def stamp(hours_ago):
    base = time.mktime(time.strptime(NOW, '%Y-%m-%dT%H:%M:%SZ'))
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.localtime(base - hours_ago * 3600))


def history(rng, cycles=20, fail_every=0):
    out = []
    for n in range(cycles):
        ok = not (fail_every and n % fail_every == fail_every - 1)
        entry = {'finished': stamp(24 * (cycles - n) - 22), 'result': 'ok' if ok else 'failed', 'mode': 'incremental'}
        if ok:
            size = int(rng.lognormvariate(17, 1.2))
            entry.update(blocks=size // 4096, bytes=size, read_bytes=size, seconds=round(size / 9e7, 2),
                         cycle_seconds=round(3 + size / 8e7 + rng.random() * 4, 2))
        else:
            entry['step'] = 'copy'
        out.append(entry)
    return out


def synthetic_fleet(count, seed=7, lab=False):
    """{host: collected} as the status playbook collects it; a few percent of hosts with problems."""
    rng = random.Random(seed)
    hosts = {}
    for i in range(count):
        name = ('lab-%d' % (i + 1)) if lab else 'node-%05d.dc%d.example.net' % (i, i % 4)
        roll = rng.random()
        if not lab and roll < 0.01:
            msg = 'Failed to connect to the host via ssh: ssh: connect to host %s port 22: No route to host' % name
            hosts[name] = {'unreachable': True, 'msg': msg}
            continue
        nvol = 2 if lab else rng.choice((1, 2, 2, 3))
        trackers, records = [], []
        for v in range(nvol):
            dev = '/dev/vd%s' % 'bcd'[v]
            hist = history(rng, 10 if lab else 20, fail_every=0 if lab else rng.choice((0, 0, 0, 7)))
            last = [e for e in hist if e['result'] == 'ok'][-1]
            rec = {'name': ['data', 'db', 'logs'][v], 'device': dev, 'minor': v,
                   'image': '/backup/%s/%s.img' % (name, ['data', 'db', 'logs'][v]), 'last_result': 'ok',
                   'finished': last['finished'], 'last_success': last['finished'], 'mode': 'incremental',
                   'blocks': last['blocks'], 'bytes': last['bytes'], 'read_bytes': last['read_bytes'],
                   'seconds': last['seconds'], 'mb_per_s': round(last['bytes'] / 1048576.0 / max(last['seconds'], 0.01), 2),
                   'cycle_seconds': last['cycle_seconds'], 'next_run': 'incremental', 'image_state': 'complete',
                   'history': hist, 'full_verify_every_days': 30,
                   'last_full_epoch': time.mktime(time.strptime(stamp(24 * rng.randint(1, 28)), '%Y-%m-%dT%H:%M:%SZ'))}
            tracker = {'minor': v, 'block_device': dev, 'state': 2, 'seq_id': 20 + v}
            if not lab and 0.01 <= roll < 0.015 and v == 0:
                rec.update(last_result='failed', msg='copy failed: [Errno 5] Input/output error', next_run='resume',
                           image_state='resumable')
            if not lab and 0.015 <= roll < 0.025 and v == 0:
                old = stamp(24 * rng.randint(2, 9))
                rec.update(last_success=old, finished=old)
            if not lab and 0.025 <= roll < 0.028 and v == 0:
                tracker.update(error=-27, error_name='EFBIG')
                rec['next_run'] = 'full'
            trackers.append(tracker)
            records.append(rec)
        gate = {'running': '6.1.0-40-amd64', 'next_boot': '6.1.0-40-amd64', 'next_boot_ok': True,
                'kernels': [{'release': '6.1.0-40-amd64', 'build': True, 'loads': True, 'reason': ''}]}
        if not lab and 0.028 <= roll < 0.030:
            gate = {'running': '6.1.0-40-amd64', 'next_boot': '6.1.0-41-amd64', 'next_boot_ok': False,
                    'kernels': [{'release': '6.1.0-41-amd64', 'build': False, 'loads': None,
                                 'reason': 'no kernel headers for 6.1.0-41-amd64'}]}
        hosts[name] = {'unreachable': False, 'failed': False, 'msg': '',
                       'info': {'loaded': True, 'version': '0.12.1', 'trackers': trackers, 'kernel_gate': gate},
                       'records': records}
    return hosts


def report_step(fr, fleet):
    """One run of what the report play computes; returns (seconds per part, outputs)."""
    parts = {}
    t0 = time.perf_counter()
    report = fr.fleet_report(fleet, generated=NOW, stale_hours=26)
    parts['fleet_report'] = time.perf_counter() - t0
    t = time.perf_counter()
    text = json.dumps(report)  # the playbooks write it with to_json (compact)
    parts['json'] = time.perf_counter() - t
    t = time.perf_counter()
    page = fr.fleet_report_html(report)
    parts['html'] = time.perf_counter() - t
    t = time.perf_counter()
    junit = fr.fleet_report_junit(report)
    parts['junit'] = time.perf_counter() - t
    t = time.perf_counter()
    md = fr.fleet_report_markdown(report)
    parts['markdown'] = time.perf_counter() - t
    parts['total'] = time.perf_counter() - t0
    return parts, {'json': text, 'html': page, 'xml': junit, 'md': md}


def chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name):
            return shutil.which(name)
    return None


def browser_args(exe, profile):
    return [exe, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
            '--user-data-dir=%s' % profile, '--window-size=1400,1000']


def page_load(exe, page_path, workdir):
    probe_path = page_path.replace('.html', '.probe.html')
    with open(page_path, encoding='utf-8') as handle:
        page = handle.read()
    with open(probe_path, 'w', encoding='utf-8') as handle:
        handle.write(page.replace('</body>', PROBE + '</body>'))
    profile = tempfile.mkdtemp(dir=workdir)
    env = dict(os.environ, HOME=workdir)
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(browser_args(exe, profile) + ['--dump-dom', 'file://' + probe_path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300, env=env, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r'<pre id="bench">(.*?)</pre>', proc.stdout.decode('utf-8', 'replace'))
    if not found:
        raise RuntimeError('no probe result from chromium: %s' % proc.stderr.decode('utf-8', 'replace')[-800:])
    out = json.loads(found.group(1).replace('&quot;', '"'))
    out['dump_dom_wall_s'] = wall
    # every chromium process: browser start, parse, script, layout, the dump
    out['chromium_cpu_s'] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def screenshot(exe, page_path, png, workdir):
    profile = tempfile.mkdtemp(dir=workdir)
    t = time.perf_counter()
    subprocess.run(browser_args(exe, profile) + ['--screenshot=%s' % png, 'file://' + page_path],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                   env=dict(os.environ, HOME=workdir), check=False)
    return time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hosts', type=int, default=5000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--lab', action='store_true', help='a small healthy lab fleet (2 volumes per host, 10 cycles)')
    parser.add_argument('--out', help='keep the outputs and screenshots here')
    parser.add_argument('--limit', type=float, default=3.0, help='seconds each step must stay under')
    args = parser.parse_args()
    fr, stage = import_filter()
    workdir = tempfile.mkdtemp(prefix='report-bench-run-')
    out_dir = args.out or workdir
    os.makedirs(out_dir, exist_ok=True)
    try:
        fleet = synthetic_fleet(args.hosts, lab=args.lab)
        runs = []
        for dummy in range(args.repeat):
            cpu = time.process_time()
            parts, outputs = report_step(fr, fleet)
            parts['total_cpu'] = time.process_time() - cpu
            runs.append(parts)
        median = dict((k, statistics.median(r[k] for r in runs)) for k in runs[0])
        stem = os.path.join(out_dir, 'report-%d' % args.hosts)
        for ext, text in outputs.items():
            with open('%s.%s' % (stem, ext), 'w', encoding='utf-8') as handle:
                handle.write(text)
        result = {'hosts': args.hosts, 'volumes': json.loads(outputs['json'])['summary']['volumes'],
                  'report_step_s': dict((k, round(v, 3)) for k, v in median.items()),
                  'sizes_bytes': dict((ext, len(text.encode('utf-8'))) for ext, text in outputs.items())}
        exe = chromium()
        if exe:
            loads = [page_load(exe, stem + '.html', workdir) for dummy in range(args.repeat)]
            result['page'] = dict((k, round(statistics.median(x[k] for x in loads), 1 if k.endswith('ms') else 3))
                                  for k in ('layout_ms', 'dcl_ms', 'sort_ms', 'filter_ms', 'dump_dom_wall_s', 'chromium_cpu_s'))
            result['page']['rows'] = loads[0]['rows']
            result['page']['after_filter'] = loads[0]['shown']
            result['screenshot_wall_s'] = round(screenshot(exe, stem + '.html', stem + '.png', workdir), 3)
            result['screenshot'] = stem + '.png'
        else:
            result['page'] = 'chromium not installed'
        result['within_limit'] = bool(median['total'] < args.limit and (
            not exe or result['page']['layout_ms'] < args.limit * 1000))
        print(json.dumps(result, indent=2))
        return 0 if result['within_limit'] else 1
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
