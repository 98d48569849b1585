# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import errors


def test_to_result_with_hint_and_details():
    exc = errors.DattobdError('It broke.', hint='Fix it.', errno_name='EBUSY', cmd=['a'])
    assert exc.full_msg == 'It broke. Fix it.'
    assert exc.to_result() == {'msg': 'It broke. Fix it.', 'hint': 'Fix it.', 'errno_name': 'EBUSY', 'cmd': ['a']}
    assert str(exc) == 'It broke.'


def test_to_result_without_hint():
    exc = errors.DriverTimeout('Slow.')
    assert exc.full_msg == 'Slow.'
    assert exc.to_result() == {'msg': 'Slow.'}
    assert isinstance(exc, errors.DattobdError)


@pytest.mark.parametrize('num, name', [(-27, 'EFBIG'), (27, 'EFBIG'), (-2, 'ENOENT'), ('-22', 'EINVAL'),
                                       (None, None), ('x', None), (99999, 'E99999')])
def test_errno_name(num, name):
    assert errors.errno_name(num) == name


def test_errno_text():
    assert errors.errno_text(-28) == 'No space left on device'
    assert errors.errno_text(None) is None
    assert errors.errno_text('x') is None
