# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Other snapshot drivers beside dattobd: loaded, module files, DKMS, packages."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hygiene, kernels
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError


def make_host(tmp_path, answers=None, bins=()):
    answers = answers or {}

    def run(argv, timeout):
        return answers.get(argv[0], (1, '', 'no'))

    return kernels.Host(run, lambda n: n if n in bins else None, root=str(tmp_path))


def write(tmp_path, rel, text='x'):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_clean_host_has_no_conflicts(tmp_path):
    write(tmp_path, 'proc/modules', 'dattobd 131072 0 - Live 0x0 (OE)\next4 1007616 2 - Live 0x0\n')
    write(tmp_path, 'lib/modules/6.1.0-57-amd64/updates/dkms/dattobd.ko')
    host = make_host(tmp_path, {'dpkg-query': (1, '', 'dpkg-query: no packages found matching veeamsnap\n')},
                     bins=('dpkg-query',))
    assert hygiene.conflicts(host, 'dattobd/0.12.1, 6.1.0-57-amd64, x86_64: installed\n') == []
    hygiene.refuse_conflicts([])


@pytest.mark.parametrize('where', ['loaded', 'module', 'dkms', 'deb', 'rpm'])
def test_each_source_is_detected(tmp_path, where):
    answers, bins, dkms = {}, (), None
    if where == 'loaded':
        write(tmp_path, 'proc/modules', 'snapapi26 118784 0 - Live 0x0 (POE)\n')
        key = 'snapapi'
    elif where == 'module':
        write(tmp_path, 'lib/modules/5.14.0-427.el9.x86_64/weak-updates/veeam/blksnap.ko.xz')
        key = 'blksnap'
    elif where == 'dkms':
        dkms = 'veeamsnap/6.0.3.1221, 6.1.0-57-amd64, x86_64: installed\ndattobd/0.12.1: added\n'
        key = 'veeamsnap'
    elif where == 'deb':
        answers['dpkg-query'] = (1, 'ii  elastio-snap-utils\nun  veeamsnap\n', 'dpkg-query: no packages found\n')
        bins = ('dpkg-query',)
        key = 'elastio_snap'
    else:
        answers['rpm'] = (1, 'package veeamsnap is not installed\nkmod-veeamsnap\n', '')
        bins = ('rpm',)
        key = 'veeamsnap'
    found = hygiene.conflicts(make_host(tmp_path, answers, bins), dkms)
    assert [c['driver'] for c in found] == [key]
    c = found[0]
    assert c['loaded'] is (where == 'loaded')
    assert bool(c['modules']) is (where == 'module') and bool(c['dkms']) is (where == 'dkms')
    assert bool(c['packages']) is (where in ('deb', 'rpm'))
    with pytest.raises(DattobdError, match=c['product'].split(' ')[0]) as exc:
        hygiene.refuse_conflicts(found)
    assert exc.value.details['conflicts'] == found
