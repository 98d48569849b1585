# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz every module's main() with generated arguments in a sandbox root with no driver.

The arguments come from the value pools of tests/unit/plugins/modules/fuzzing.py (the unit test
draws from the same pools with Hypothesis), here with random.Random(seed) for speed.

Usage: python benchmarks/fuzz_modules.py [--cases N] [--seed S] [--modules info,sync,...]
(from a checkout, in the development venv: . "$(bash tools/bootstrap)/bin/activate").

Prints, per module: cases, exit_json, fail_json, tracebacks, writes outside the sandbox (refused
and counted by the guard of tests/unit/plugins/modules/fuzzing.py), commands attempted (refused),
and the first few tracebacks. Exit status 1 when any traceback or outside write was seen, or when
the watched real host paths changed.
"""
from __future__ import absolute_import, division, print_function

import argparse
import importlib
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

importlib.import_module('tests.unit.conftest')  # makes ansible_collections.snapfleet.dattobd importable

from tests.unit.plugins.modules import fuzzing  # noqa: E402


def fuzz(name, cases, seed):
    """Run ``cases`` generated argument sets through module ``name``; counts and a few samples."""
    counts = dict(cases=0, exit_json=0, fail_json=0, tracebacks=0, outside_writes=0, commands=0)
    samples = []
    rng = random.Random('%s/%s' % (seed, name))
    with tempfile.TemporaryDirectory(prefix='snapfleet-fuzz-') as tmp:
        sandbox = fuzzing.Sandbox(tmp)
        for dummy in range(cases):
            args, check_mode = fuzzing.random_arguments(name, rng)
            before = (len(sandbox.outside), len(sandbox.commands))
            with sandbox:
                kind, detail = sandbox.run(name, args, check_mode)
            counts['cases'] += 1
            counts['tracebacks' if kind == 'traceback' else kind] += 1
            counts['outside_writes'] += len(sandbox.outside) - before[0]
            counts['commands'] += len(sandbox.commands) - before[1]
            if (kind == 'traceback' or len(sandbox.outside) > before[0]) and len(samples) < 3:
                samples.append((args, check_mode, detail if kind == 'traceback' else sandbox.outside[before[0]:]))
    return counts, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', type=int, default=10000, help='cases per module (default 10000)')
    ap.add_argument('--seed', type=int, default=0, help='seed of the generator (default 0: reproducible)')
    ap.add_argument('--modules', default=','.join(sorted(fuzzing.MODULES)))
    opts = ap.parse_args()
    names = [n for n in opts.modules.split(',') if n]
    before = fuzzing.listing()
    total = dict(cases=0, exit_json=0, fail_json=0, tracebacks=0, outside_writes=0, commands=0)
    header = ('module', 'cases', 'exit_json', 'fail_json', 'tracebacks', 'outside_writes', 'commands', 'seconds')
    print('%-9s %8s %10s %10s %11s %15s %9s %8s' % header)
    bad = []
    for name in names:
        t0 = time.monotonic()
        counts, samples = fuzz(name, opts.cases, opts.seed)
        dt = time.monotonic() - t0
        print('%-9s %8d %10d %10d %11d %15d %9d %8.1f' % (name, counts['cases'], counts['exit_json'],
                                                          counts['fail_json'], counts['tracebacks'],
                                                          counts['outside_writes'], counts['commands'], dt))
        sys.stdout.flush()
        for k in total:
            total[k] += counts[k]
        bad.extend((name,) + s for s in samples)
    print('%-9s %8d %10d %10d %11d %15d %9d' % ('total', total['cases'], total['exit_json'], total['fail_json'],
                                                total['tracebacks'], total['outside_writes'], total['commands']))
    changed = fuzzing.listing() ^ before
    print('watched host paths changed: %s' % (sorted(changed) if changed else 'none'))
    for name, args, check_mode, detail in bad:
        print('\n--- %s check_mode=%s args=%r\n%s' % (name, check_mode, args, detail))
    return 1 if total['tracebacks'] or total['outside_writes'] or changed else 0


if __name__ == '__main__':
    sys.exit(main())
