# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bounded cycle history of a backup record (read by the fleet report's charts)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import history
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from .test_backup import FakeOps, META1, REC_OK, params


def test_appended_keeps_the_last_cycles_only():
    record = {}
    for n in range(history.LENGTH + 5):
        record['history'] = history.appended(record, finished='2026-01-%02dT00:00:00Z' % (n % 28 + 1), result='ok',
                                             mode='incremental', figures={'blocks': n, 'bytes': n * 4096,
                                                                          'read_bytes': n * 4096, 'seconds': 0.5},
                                             cycle_seconds=1.5)
    assert len(record['history']) == history.LENGTH
    assert [e['blocks'] for e in record['history']] == list(range(5, history.LENGTH + 5))
    assert record['history'][-1] == {'finished': record['history'][-1]['finished'], 'result': 'ok',
                                     'mode': 'incremental', 'blocks': history.LENGTH + 4,
                                     'bytes': (history.LENGTH + 4) * 4096, 'read_bytes': (history.LENGTH + 4) * 4096,
                                     'seconds': 0.5, 'cycle_seconds': 1.5}


@pytest.mark.parametrize('old', [None, 'garbage', [1, None, {'result': 'ok'}], {'a': 1}])
def test_appended_tolerates_a_damaged_history(old):
    out = history.appended({'history': old}, finished='t', result='failed', mode='full', step='copy')
    assert out[-1] == {'finished': 't', 'result': 'failed', 'mode': 'full', 'step': 'copy'}
    assert all(isinstance(e, dict) for e in out)


def test_a_cycle_appends_one_entry_and_a_failure_one_without_figures():
    ops = FakeOps(meta=META1, record=dict(REC_OK, history=[{'finished': 'x', 'result': 'ok'}]))
    result = bk.run_cycle(params(), ops=ops)
    hist = ops.saved[-1]['history']
    assert len(hist) == 2 and hist[0] == {'finished': 'x', 'result': 'ok'}
    assert hist[-1]['result'] == 'ok' and hist[-1]['mode'] == result['mode']
    assert hist[-1]['bytes'] == result['bytes'] and hist[-1]['cycle_seconds'] == result['cycle_seconds']
    failing = FakeOps(meta=META1, record=dict(REC_OK, history=hist, bytes=999, blocks=3),
                      fail={'sync': DattobdError('COW unreadable')})
    with pytest.raises(bk.BackupError):
        bk.run_cycle(params(), ops=failing)
    hist = failing.saved[-1]['history']
    assert len(hist) == 3
    assert hist[-1]['result'] == 'failed' and hist[-1]['step'] == 'copy'
    assert 'bytes' not in hist[-1]  # the previous cycle's figures are not this cycle's
