# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""No traceback, ever: every module's main() with generated arguments (valid-looking and hostile:
wrong types, Unicode digits, negative and huge numbers, relative paths, paths with newlines, empty
strings, missing required options) in a sandbox root with no driver ends in exit_json or fail_json,
and writes nothing outside the sandbox (see fuzzing.py). benchmarks/fuzz_modules.py runs 10,000 per
module."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from hypothesis import HealthCheck, given, settings

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import validation

from . import fuzzing

CASES = 200


@pytest.fixture(scope='module')
def host_before():
    return fuzzing.listing()


class _Spec(Exception):
    pass


def _argument_spec(name, monkeypatch):
    """The argument spec module ``name``'s main() gives to make_module."""
    def capture(module_class, argument_spec, **kwargs):
        raise _Spec(argument_spec)
    monkeypatch.setattr(validation, 'make_module', capture)
    with pytest.raises(_Spec) as info:
        fuzzing.MODULES[name].main()
    return info.value.args[0]


@pytest.mark.parametrize('name', sorted(fuzzing.MODULES))
def test_the_generator_knows_every_option(name, monkeypatch):
    """A new option (the backup module's verification options) is fuzzed too, with values of its type."""
    spec = _argument_spec(name, monkeypatch)
    assert sorted(fuzzing.KINDS[name]) == sorted(spec)
    for option, kind in fuzzing.KINDS[name].items():
        declared = spec[option].get('type', 'str')
        if declared in ('int', 'float', 'bool'):
            assert kind == declared, (option, kind, declared)


@pytest.mark.parametrize('name', sorted(fuzzing.MODULES))
def test_module_main_never_tracebacks_nor_writes_outside(name, tmp_path_factory, host_before):
    sandbox = fuzzing.Sandbox(str(tmp_path_factory.mktemp('fuzz-%s' % name)))
    seen = {'exit_json': 0, 'fail_json': 0}

    @settings(max_examples=CASES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzzing.arguments(name))
    def one(case):
        args, check_mode = case
        with sandbox:
            kind, detail = sandbox.run(name, args, check_mode)
        assert kind in ('exit_json', 'fail_json'), detail
        assert sandbox.outside == [], sandbox.outside
        seen[kind] += 1

    one()
    assert sum(seen.values()) >= CASES
    assert sandbox.commands == []
    assert fuzzing.listing() == host_before


def test_the_guard_refuses_and_counts_a_write_outside(tmp_path):
    """The guard is real: a write outside the sandbox is refused (EACCES) and counted."""
    sandbox = fuzzing.Sandbox(str(tmp_path / 'box'))
    outside = tmp_path / 'outside.txt'
    with sandbox:
        with pytest.raises(OSError):
            open(str(outside), 'w')
        with open(str(tmp_path / 'box' / 'inside.txt'), 'w') as f:
            f.write('ok')
    assert not outside.exists() and len(sandbox.outside) == 1
    assert (tmp_path / 'box' / 'inside.txt').read_text() == 'ok'


def test_the_guard_refuses_commands(tmp_path):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import runner
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
    sandbox = fuzzing.Sandbox(str(tmp_path / 'box'))
    with sandbox:
        with pytest.raises(DattobdError, match='Cannot run'):
            runner.run_timed(['true'])
    assert sandbox.commands == [['true']]
