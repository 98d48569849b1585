# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Other snapshot drivers beside dattobd: loaded, module files, DKMS, packages."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

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


def test_stray_cow_files_on_a_real_directory(tmp_path):
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import devices
    mnt = tmp_path / 'mnt'
    (mnt / 'cow').mkdir(parents=True)
    for name in ('.datto_0_1', '.datto_0_2', '.datto_3_1', '.datto_x_1', 'cow/.datto_0_4', 'cow/.datto_0_5'):
        (mnt / name).write_text('x')
    os.symlink(str(tmp_path / 'elsewhere'), str(mnt / '.datto_0_6'))
    host = devices.Host()
    host.lstat = os.lstat
    m = str(mnt)
    strays = hygiene.stray_cow_files(host, m, ['/.datto_0_2', '/cow/.datto_0_5'], '.datto_{minor}_{seq}',
                                     protected=[m + '/.datto_3_1'])
    assert strays == [m + '/.datto_0_1', m + '/cow/.datto_0_4']
    actions, errors = hygiene.remove_files(strays, check_mode=True)
    assert actions == ['remove %s' % p for p in strays] and os.path.exists(strays[0])
    actions, errors = hygiene.remove_files(strays + [m + '/.datto_0_99'])  # a vanished file is no error
    assert errors == [] and not os.path.exists(strays[0]) and os.path.exists(m + '/.datto_0_2')
    assert os.path.islink(m + '/.datto_0_6')
    assert hygiene.cow_pattern('cow_{minor}_{seq}.x').match('cow_1_22.x')
    assert not hygiene.cow_pattern('cow_{minor}_{seq}.x').match('cowX1_22.x')


def test_pending_cow_files_reads_backup_records(tmp_path):
    (tmp_path / 'a.json').write_text(json.dumps({'pending_cow_files': [{'path': '/data/.datto_0_5'}, '/x/.datto_1_2']}))
    (tmp_path / 'b.json').write_text('not json')
    (tmp_path / 'c.txt').write_text('{}')
    assert hygiene.pending_cow_files(str(tmp_path)) == ['/data/.datto_0_5', '/x/.datto_1_2']
    assert hygiene.pending_cow_files(str(tmp_path / 'missing')) == []
