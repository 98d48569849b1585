# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.snapfleet.dattobd.plugins.filter.backup_record import FilterModule, backup_record_name
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as bk


def test_names_are_the_modules():
    image = '/backup/a b/data.img'
    assert FilterModule().filters()['backup_record_name'] is backup_record_name
    assert backup_record_name(image) == bk.record_name(image)
    assert backup_record_name(image, kind='lock') == bk.lock_name(image)
    assert backup_record_name(image, kind='legacy') == 'backup_a_b_data.img.json'


@pytest.mark.parametrize('image, kind', [('data.img', 'record'), (None, 'record'), ('/x.img', 'json')])
def test_refused(image, kind):
    with pytest.raises(AnsibleFilterError):
        backup_record_name(image, kind=kind)
