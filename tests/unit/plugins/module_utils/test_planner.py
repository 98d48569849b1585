# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planner table: every (absent, state 0..5, failed) x (snapshot, incremental, absent) pair."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import planner
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.procinfo import Tracker

MIB = 1024 * 1024
BDEV = '/dev/vdb'


def trk(state, error=None, seq_id=3, cow='/.datto_0_3', max_cache=314572800, fallocate=25 * MIB, auto_expand=None):
    unverified = state & 4
    return Tracker(0, cow, BDEV, state, max_cache=max_cache, fallocate=None if unverified else fallocate,
                   seq_id=None if unverified else seq_id, error=error, auto_expand=auto_expand)


def wanted(state, **kw):
    base = dict(block_device=BDEV, mount_point='/data', device_size=256 * MIB)
    base.update(kw)
    return planner.Wanted(state, 0, **base)


SETUP = ('setup-snapshot', 0, BDEV, '/data/.datto_0_1', None, None)
TO_INC = ('transition-to-incremental', 0, None, None, None, None)
TO_SNAP = ('transition-to-snapshot', 0, None, '/data/.datto_0_4', None, 25)
DESTROY = ('destroy', 0, None, None, None, None)

# (current, wanted state, expected steps or refusal text, previous_cow_file, rebaseline_required)
TABLE = [
    ('absent', None, 'snapshot', [SETUP], None, False),
    ('absent', None, 'incremental', [SETUP, TO_INC], None, False),
    ('absent', None, 'absent', [], None, False),
    ('0 dormant inc', trk(0), 'snapshot', 'dormant', None, False),
    ('0 dormant inc', trk(0), 'incremental', [], None, False),
    ('0 dormant inc', trk(0), 'absent', [DESTROY], None, False),
    ('1 dormant snap', trk(1), 'snapshot', [], None, False),
    ('1 dormant snap', trk(1), 'incremental', 'dormant', None, False),
    ('1 dormant snap', trk(1), 'absent', [DESTROY], None, False),
    ('2 active inc', trk(2), 'snapshot', [TO_SNAP], '/data/.datto_0_3', False),
    ('2 active inc', trk(2), 'incremental', [], None, False),
    ('2 active inc', trk(2), 'absent', [DESTROY], None, False),
    ('3 active snap', trk(3), 'snapshot', [], None, False),
    ('3 active snap', trk(3), 'incremental', [TO_INC], None, False),
    ('3 active snap', trk(3), 'absent', [DESTROY], None, False),
    ('4 unverified inc', trk(4), 'snapshot', 'unverified', None, False),
    ('4 unverified inc', trk(4), 'incremental', [], None, False),
    ('4 unverified inc', trk(4), 'absent', [DESTROY], None, False),
    ('5 unverified snap', trk(5), 'snapshot', [], None, False),
    ('5 unverified snap', trk(5), 'incremental', 'unverified', None, False),
    ('5 unverified snap', trk(5), 'absent', [DESTROY], None, False),
    ('3 failed EFBIG', trk(3, -27), 'snapshot', 'EFBIG', None, False),
    ('3 failed EFBIG', trk(3, -27), 'incremental', 'EFBIG', None, False),
    ('3 failed EFBIG', trk(3, -27), 'absent', [DESTROY], None, False),
    ('4 failed ENOENT', trk(4, -2), 'snapshot', 'ENOENT', None, False),
    ('4 failed ENOENT', trk(4, -2), 'incremental', 'ENOENT', None, False),
    ('4 failed ENOENT', trk(4, -2), 'absent', [DESTROY], None, False),
    ('5 failed ENOENT', trk(5, -2), 'snapshot', 'has failed', None, False),
    ('5 failed ENOENT', trk(5, -2), 'absent', [DESTROY], None, False),
    ('2 failed EINVAL', trk(2, -22), 'snapshot', 'EINVAL', None, False),
]


@pytest.mark.parametrize('label, current, state, expected, previous, rebaseline', TABLE,
                         ids=['%s->%s' % (t[0], t[2]) for t in TABLE])
def test_plan_table(label, current, state, expected, previous, rebaseline):
    if isinstance(expected, str):
        with pytest.raises(planner.PlanRefused) as exc:
            planner.plan(current, wanted(state))
        assert expected in exc.value.msg
        assert exc.value.hint
        return
    result = planner.plan(current, wanted(state))
    assert [s.as_tuple() for s in result.steps] == expected
    assert result.previous_cow_file == previous
    assert result.rebaseline_required is rebaseline
    assert result.changed is bool(expected)
    assert result.mode_after == (None if state == 'absent' else state)


@pytest.mark.parametrize('current', [trk(3, -27), trk(4, -2), trk(5, -2), trk(2, -22), trk(0, -5)])
@pytest.mark.parametrize('state, tail', [('snapshot', [SETUP]), ('incremental', [SETUP, TO_INC])])
def test_rebaseline(current, state, tail):
    result = planner.plan(current, wanted(state, recover='rebaseline'))
    assert [s.as_tuple() for s in result.steps] == [DESTROY] + tail
    assert result.rebaseline_required is True
    assert result.new_cow_file == '/data/.datto_0_1'
    assert any('full backup' in n for n in result.notes)


def test_absent_dormant_and_failed_notes():
    assert any('left on disk' in n for n in planner.plan(trk(0), wanted('absent')).notes)
    assert any('failed' in n for n in planner.plan(trk(3, -27), wanted('absent')).notes)
    assert planner.plan(trk(3), wanted('absent')).notes == []


def test_rotation_never_reuses_names():
    existing = {'/data/.datto_0_4', '/data/.datto_0_4.1'}
    result = planner.plan(trk(2), wanted('snapshot', existing=existing))
    assert result.steps[0].cow_file == '/data/.datto_0_4.2'
    # current COW name collides with the template's next name: still a new name
    result = planner.plan(trk(2, cow='/.datto_0_4'), wanted('snapshot'))
    assert result.steps[0].cow_file == '/data/.datto_0_4.1'
    assert result.previous_cow_file == '/data/.datto_0_4'


def test_explicit_cow_file():
    result = planner.plan(trk(2), wanted('snapshot', cow_file='/data/next.cow', fallocate=100))
    assert result.steps[0].as_tuple() == ('transition-to-snapshot', 0, None, '/data/next.cow', None, 100)
    with pytest.raises(planner.PlanRefused, match='current COW file'):
        planner.plan(trk(2), wanted('snapshot', cow_file='/data/.datto_0_3'))
    with pytest.raises(planner.PlanRefused, match='already exists'):
        planner.plan(None, wanted('snapshot', cow_file='/data/x', existing={'/data/x'}))


def test_cow_dir_template_and_root_mount():
    result = planner.plan(None, wanted('snapshot', cow_dir='/data/sub', cow_name='cow-{seq}-{minor}'))
    assert result.steps[0].cow_file == '/data/sub/cow-1-0'
    result = planner.plan(trk(2, cow='/.datto-root'), wanted('snapshot', mount_point='/'))
    assert result.previous_cow_file == '/.datto-root'
    assert result.steps[0].cow_file == '/.datto_0_4'


def test_fallocate_sources():
    assert planner.plan(trk(2), wanted('snapshot', fallocate=7)).steps[0].fallocate == 7
    # no device size: the stored size (bytes -> MiB)
    assert planner.plan(trk(2, fallocate=30 * MIB), wanted('snapshot', device_size=None)).steps[0].fallocate == 30
    # tiny device: at least 1 MiB
    assert planner.plan(trk(2), wanted('snapshot', device_size=MIB)).steps[0].fallocate == 1
    with pytest.raises(planner.PlanRefused, match='preallocate'):
        planner.plan(trk(2, fallocate=0), wanted('snapshot', device_size=None))


def test_setup_options_and_cache():
    result = planner.plan(None, wanted('snapshot', cache_size=50, fallocate=20))
    assert result.steps[0].as_tuple() == ('setup-snapshot', 0, BDEV, '/data/.datto_0_1', 50, 20)
    assert result.steps[0].kwargs() == dict(minor=0, block_device=BDEV, cow_file='/data/.datto_0_1',
                                            cache_size=50, fallocate=20)
    # steady tracker: reconfigure only when the cache differs
    assert planner.plan(trk(3, max_cache=100), wanted('snapshot', cache_size=100)).steps == []
    assert planner.plan(trk(3), wanted('snapshot', cache_size=0)).steps == []
    steps = planner.plan(trk(3, max_cache=100), wanted('snapshot', cache_size=200)).steps
    assert [s.as_tuple() for s in steps] == [('reconfigure', 0, None, None, 200, None)]
    # dormant: no reconfigure
    assert planner.plan(trk(1, max_cache=100), wanted('snapshot', cache_size=200)).steps == []
    # transitions re-apply the cache size
    ops = planner.plan(trk(2), wanted('snapshot', cache_size=200)).ops()
    assert ops == ['transition-to-snapshot', 'reconfigure']
    ops = planner.plan(trk(3), wanted('incremental', cache_size=200)).ops()
    assert ops == ['transition-to-incremental', 'reconfigure']


@pytest.mark.parametrize('template, message', [
    ('.datto_{minor}', 'lacks {seq}'),
    ('{seq}_{uuid}', 'unknown fields'),
    ('dir/{seq}', 'plain file name'),
    ('{seq', 'not a valid template'),
    ('', 'non-empty'),
    (None, 'non-empty'),
])
def test_validate_cow_name(template, message):
    with pytest.raises(DattobdError, match=message.replace('{', r'\{').replace('}', r'\}')):
        planner.validate_cow_name(template)


def test_validate_cow_name_ok():
    assert planner.validate_cow_name('.datto_{minor}_{seq}') == '.datto_{minor}_{seq}'


def test_wanted_validation():
    with pytest.raises(DattobdError, match='state'):
        planner.Wanted('frozen', 0)
    with pytest.raises(DattobdError, match='recover'):
        planner.Wanted('snapshot', 0, recover='pray')


def test_no_cow_dir():
    with pytest.raises(planner.PlanRefused, match='directory'):
        planner.plan(None, planner.Wanted('snapshot', 0, block_device=BDEV))


def test_absolute_cow():
    assert planner.absolute_cow('/data', '/.x') == '/data/.x'
    assert planner.absolute_cow('/', '/.x') == '/.x'
    assert planner.absolute_cow(None, '/.x') == '/.x'
    assert planner.absolute_cow('/data', 'x') == '/data/x'
    assert planner.absolute_cow('/data', None) is None


def test_step_equality():
    a = planner.Step('destroy', 1)
    assert a == planner.Step('destroy', 1)
    assert a != planner.Step('destroy', 2)
    assert len({a, planner.Step('destroy', 1)}) == 1
    assert 'destroy' in repr(a)


def test_cache_size_zero_means_the_drivers_default():
    # The driver stores its cow_max_memory_default parameter for a tracker set up without -c.
    assert planner.plan(trk(3, max_cache=100 * MIB), wanted('snapshot', cache_size=0,
                                                            default_cache=100 * MIB)).steps == []
    steps = planner.plan(trk(3), wanted('snapshot', cache_size=0, default_cache=100 * MIB)).steps
    assert [s.as_tuple() for s in steps] == [('reconfigure', 0, None, None, 0, None)]
    # Unknown parameter: the driver's built-in default (300 MiB).
    assert planner.plan(trk(3, max_cache=planner.DEFAULT_CACHE),
                        wanted('snapshot', cache_size=0, default_cache=None)).steps == []
