# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The helpers of the Molecule scenarios' testinfra tests (extensions/molecule/resources/tests/
sf_testinfra.py), without a guest: golden /proc/datto-info samples, reload scripts as the
collection writes them, and a fake testinfra host serving files and command outputs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import os
import tarfile

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as rl

from ..conftest import load_script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..', '..', '..')
GOLDEN = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'datto-info')


sf = load_script(os.path.join(ROOT, 'extensions', 'molecule', 'resources', 'tests', 'sf_testinfra.py'), 'sf_testinfra')


def golden(name):
    with open(os.path.join(GOLDEN, name)) as handle:
        return handle.read()


# --- state names ---------------------------------------------------------------------------------

@pytest.mark.parametrize('name, want', [
    ('datto-info.state-0.json', 'dormant incremental'),
    ('datto-info.state-1.json', 'dormant snapshot'),
    ('datto-info.state-2.json', 'active incremental'),
    ('datto-info.state-3.json', 'active snapshot'),
    ('datto-info.state-4.json', 'unverified incremental'),
    ('datto-info.state-5.json', 'unverified snapshot'),
    ('datto-info.state-3-error.json', 'active snapshot'),
])
def test_state_name_of_golden_samples(name, want):
    version, devices = sf.parse_datto_info(golden(name))
    assert version == '0.12.1'
    assert [sf.state_name(d['state']) for d in devices] == [want]


@pytest.mark.parametrize('state', [6, 7, -1, 8, True, '3', None])
def test_state_name_rejects_what_the_driver_never_prints(state):
    assert sf.state_name(state).startswith('invalid state')


def test_parse_datto_info_empty_and_garbage():
    assert sf.parse_datto_info(golden('datto-info.empty.json')) == ('0.12.1', [])
    with pytest.raises(ValueError):
        sf.parse_datto_info('{"version": "0.12.1"}')
    with pytest.raises(ValueError):
        sf.parse_datto_info('not json')


def test_check_tracker_refuses_a_failed_or_other_state():
    _v, (dev,) = sf.parse_datto_info(golden('datto-info.state-3.json'))
    sf.check_tracker(dev, 'active snapshot')
    with pytest.raises(AssertionError, match='is active snapshot, want active incremental'):
        sf.check_tracker(dev, 'active incremental')
    _v, (failed,) = sf.parse_datto_info(golden('datto-info.state-3-error.json'))
    with pytest.raises(AssertionError, match='error -27'):
        sf.check_tracker(failed, 'active snapshot')


# --- dkms, initramfs, source version ------------------------------------------------------------

def test_dkms_states_both_formats():
    text = ('dattobd/0.12.1, 6.1.0-28-amd64, x86_64: installed\n'
            'dattobd/0.11.0: added\n'
            'zfs/2.1.11, 6.1.0-28-amd64, x86_64: installed\n'
            'dattobd, 0.10.0, 5.10.0-9-amd64, x86_64: built\n'
            'dattobd/0.12.1, 6.12.0-1-amd64, x86_64: installed (Original modules exist)\n')
    assert sf.dkms_states(text) == [('0.12.1', '6.1.0-28-amd64', 'installed'), ('0.11.0', None, 'added'),
                                    ('0.10.0', '5.10.0-9-amd64', 'built'), ('0.12.1', '6.12.0-1-amd64', 'installed')]
    assert sf.dkms_states('') == []


def test_initramfs_missing():
    listing = '\n'.join(['.', 'scripts/local-premount/snapfleet-dattobd', 'usr/sbin/snapfleet-dattobd-boot',
                         'usr/lib/modules/6.1.0-28-amd64/updates/dkms/dattobd.ko.xz', 'etc/datto/dla/mnt',
                         'bin -> usr/bin', './usr/local/bin/dbdctl'])
    patterns = ['scripts/local-premount/snapfleet-dattobd', '(usr/)?sbin/snapfleet-dattobd-boot', 'etc/datto/dla/mnt',
                r'(usr/)?lib/modules/6\.1\.0-28-amd64/.*dattobd\.ko(\.[a-z0-9]+)?', '(usr/)?local/bin/dbdctl', 'bin']
    assert sf.initramfs_missing(listing, patterns) == []
    assert sf.initramfs_missing(listing, [r'(usr/)?lib/modules/6\.12\.0/.*dattobd\.ko', 'etc/datto/dla']) == [
        r'(usr/)?lib/modules/6\.12\.0/.*dattobd\.ko', 'etc/datto/dla']


def test_initramfs_missing_reads_an_lsinitrd_listing():
    """dracut's lsinitrd lists ``ls -l`` lines: the path is the last field."""
    listing = '\n'.join([
        'Image: /boot/initrd.img-6.1.0-57-amd64: 31M',
        '========================================================================',
        'drwxr-xr-x   2 root     root            0 Dec  6 15:00 etc/datto/dla/mnt',
        'lrwxrwxrwx   1 root     root            7 Dec  6 15:00 bin -> usr/bin',
        '-rwxr-xr-x   1 root     root         1234 Dec  6 15:00 usr/lib/dracut/hooks/pre-mount/01-snapfleet-dattobd-pre-mount.sh',
        '-rw-r--r--   1 root     root        90123 Dec  6 15:00 usr/lib/modules/6.1.0-57-amd64/updates/dkms/dattobd.ko'])
    patterns = [r'(usr/)?lib/dracut/hooks/pre-mount/01-snapfleet-dattobd-pre-mount\.sh', 'etc/datto/dla/mnt', 'bin',
                r'(usr/)?lib/modules/6\.1\.0-57-amd64/.*dattobd\.ko(\.[a-z0-9]+)?', '(usr/)?sbin/snapfleet-dattobd-boot']
    assert sf.initramfs_missing(listing, patterns) == ['(usr/)?sbin/snapfleet-dattobd-boot']
    # A path is matched whole: neither a prefix of it nor a name inside a longer one.
    assert sf.initramfs_missing(listing, ['etc/datto/dla', 'dattobd-pre-mount\\.sh']) == [
        'etc/datto/dla', 'dattobd-pre-mount\\.sh']


def test_source_version(tmp_path):
    tree = tmp_path / 'dattobd-0.12.1'
    (tree / 'src').mkdir(parents=True)
    (tree / 'src' / 'dattobd.h').write_text('#define DATTOBD_VERSION "0.12.1"\n')
    assert sf.source_version(str(tree)) == '0.12.1'
    tarball = tmp_path / 'dattobd.tar.gz'
    with tarfile.open(str(tarball), 'w:gz') as tar:
        data = b'#define DATTOBD_VERSION "0.12.2"\n'
        info = tarfile.TarInfo('dattobd-0.12.2/src/dattobd.h')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert sf.source_version(str(tarball)) == '0.12.2'
    assert sf.source_version(str(tmp_path / 'missing')) is None
    assert sf.source_version('') is None


# --- reload scripts ------------------------------------------------------------------------------

UUID_DEV = '/dev/disk/by-uuid/0b6c2d4e-1111-2222-3333-444455556666'


def _tracker(name='datto-info.state-3.json'):
    _v, (dev,) = sf.parse_datto_info(golden(name))
    return dev


def test_reload_script_as_the_collection_writes_it():
    tracker = _tracker()
    argv = sf.reload_command(rl.render(0, UUID_DEV, '/datto-relative.cow', 'snapshot', dbdctl='/usr/local/bin/dbdctl'))
    assert argv == ['/usr/local/bin/dbdctl', 'reload-snapshot', UUID_DEV, '/datto-relative.cow', '0']
    assert sf.reload_problems(argv, tracker, '/dev/vdb') == []
    with_cache = sf.reload_command(rl.render(0, UUID_DEV, '/datto-relative.cow', 'snapshot', cache_size=4096))
    assert sf.reload_problems(with_cache, tracker, '/dev/vdb') == []


@pytest.mark.parametrize('minor, device, cow, mode, resolved, problem', [
    (0, UUID_DEV, '/datto-relative.cow', 'incremental', '/dev/vdb', "want 'reload-snapshot'"),
    (1, UUID_DEV, '/datto-relative.cow', 'snapshot', '/dev/vdb', 'the tracker is minor 0'),
    (0, UUID_DEV, '/other.cow', 'snapshot', '/dev/vdb', 'the tracker uses'),
    (0, UUID_DEV, '/datto-relative.cow', 'snapshot', '/dev/vdc', 'the tracker traces'),
    (0, '/dev/vdb', '/datto-relative.cow', 'snapshot', '/dev/vdb', 'exists in early boot'),
    (0, '/dev/mapper/vg-data', '/datto-relative.cow', 'snapshot', '/dev/vdc', 'the tracker traces'),
])
def test_reload_problems_name_each_mismatch(minor, device, cow, mode, resolved, problem):
    argv = sf.reload_command(rl.render(minor, device, cow, mode))
    problems = sf.reload_problems(argv, _tracker(), resolved)
    assert len(problems) == 1 and problem in problems[0], problems


def test_incremental_tracker_wants_reload_incremental():
    argv = sf.reload_command(rl.render(0, UUID_DEV, '/datto-relative.cow', 'incremental'))
    tracker = _tracker('datto-info.state-2.json')
    assert sf.reload_problems(argv, dict(tracker, minor=0, cow_file='/datto-relative.cow', block_device='/dev/vdb'),
                              '/dev/vdb') == []


@pytest.mark.parametrize('text, message', [
    ('/usr/bin/dbdctl reload-snapshot /dev/vdb /c 0\n', 'not #!/bin/sh'),
    ('#!/bin/sh\n# nothing\n', 'found 0'),
    ('#!/bin/sh\n/usr/bin/dbdctl reload-snapshot a b 0\n/usr/bin/dbdctl reload-snapshot a b 1\n', 'found 2'),
])
def test_reload_command_refuses_other_shapes(text, message):
    with pytest.raises(ValueError, match=message):
        sf.reload_command(text)


def test_reload_problems_refuses_wrong_word_counts():
    assert 'expected 5 or 7 words' in sf.reload_problems(['dbdctl', 'reload-snapshot'], _tracker(), '/dev/vdb')[0]
    argv = ['dbdctl', 'reload-snapshot', '-x', 'y', UUID_DEV, '/datto-relative.cow', '0']
    problems = sf.reload_problems(argv, _tracker(), '/dev/vdb')
    assert any('-c <bytes>' in p for p in problems) and any('absolute path to dbdctl' in p for p in problems)


# --- host checks on a fake testinfra host --------------------------------------------------------

class FakeFile(object):
    def __init__(self, host, path):
        self.host = host
        self.path = path
        self.entry = host.files.get(path)

    @property
    def exists(self):
        return self.entry is not None

    @property
    def is_file(self):
        return self.exists and self.entry[0] == 'file'

    @property
    def is_directory(self):
        return self.exists and self.entry[0] == 'dir'

    @property
    def mode(self):
        return self.entry[1]

    @property
    def user(self):
        return 'root'

    @property
    def content_string(self):
        return self.entry[2]

    @property
    def size(self):
        return len(self.entry[2])

    def listdir(self):
        prefix = self.path.rstrip('/') + '/'
        return sorted(p[len(prefix):] for p in self.host.files if p.startswith(prefix) and '/' not in p[len(prefix):])


class FakeHost(object):
    """Files as ``{path: (kind, mode, content)}``, commands as ``{command line: output}``."""

    def __init__(self, files, commands):
        self.files = files
        self.commands = commands

    def file(self, path):
        return FakeFile(self, path)

    def check_output(self, command, *args):
        line = command % args
        assert line in self.commands, 'unexpected command %r' % line
        return self.commands[line]

    def run_test(self, command, *args):
        """testinfra's run_test: a result whose rc is 0 or 1 (never a bool)."""
        return FakeResult(0 if self.check_output(command, *args) == 'true' else 1)


class FakeResult(object):
    def __init__(self, rc):
        self.rc = rc


def _host(script_mode=0o700, script_minor=0, extra=None):
    tracker = _tracker()
    files = {
        '/etc/datto/dla': ('dir', 0o700, None),
        '/etc/datto/dla/reload_snapfleet_%d' % script_minor: (
            'file', script_mode, rl.render(script_minor, UUID_DEV, tracker['cow_file'], 'snapshot')),
        '/etc/datto/dla/reload_other': ('file', 0o755, '#!/bin/sh\n'),
        '/usr/bin/dbdctl': ('file', 0o755, ''),
        '/proc/datto-info': ('file', 0o444, golden('datto-info.state-3.json')),
        '/backup': ('dir', 0o700, None),
        '/backup/data.img': ('file', 0o600, 'x' * 4096),
        '/backup/data.img.snapfleet.json': ('file', 0o600, json.dumps(
            {'format': 1, 'uuid': tracker['uuid'], 'seq_id': tracker['seq_id'], 'pending': None})),
    }
    files.update(extra or {})
    commands = {
        'realpath -e -- %s' % UUID_DEV: '/dev/vdb',
        'realpath -e -- /dev/vdb': '/dev/vdb',
        'findmnt -n -o SOURCE --target /data': '/dev/vdb',
    }
    return FakeHost(files, commands), {0: tracker}


def test_host_checks_pass_on_a_consistent_host():
    host, trackers = _host()
    assert sf.read_trackers(host) == trackers
    assert sf.check_reload_scripts(host, trackers)[0][1] == 'reload-snapshot'
    tracker = sf.tracker_of(host, trackers, '/data')
    assert tracker['minor'] == 0
    sf.check_image(host, '/backup/data.img', tracker, 4096)


@pytest.mark.parametrize('kwargs, message', [
    ({'script_mode': 0o600}, 'mode 600'),
    ({'script_minor': 1}, 'reload scripts'),
    ({'extra': {'/etc/datto/dla': ('dir', 0o755, None)}}, 'mode 755'),
    ({'extra': {'/etc/datto/dla/reload_snapfleet_4': ('file', 0o700, '#!/bin/sh\n')}}, 'reload scripts'),
])
def test_reload_script_checks_fail(kwargs, message):
    host, trackers = _host(**kwargs)
    with pytest.raises(AssertionError, match=message):
        sf.check_reload_scripts(host, trackers)


@pytest.mark.parametrize('extra, size, message', [
    ({'/backup/data.img': ('file', 0o644, 'x' * 4096)}, 4096, 'mode 644'),
    ({'/backup': ('dir', 0o755, None)}, 4096, 'mode 755'),
    ({}, 8192, 'the volume has 8192'),
    ({'/backup/data.img.snapfleet.json': ('file', 0o600, json.dumps(
        {'uuid': '7cfe1ba010044b7d9ff31c95b455891f', 'seq_id': 1, 'pending': {'seq_id_to': 2}}))}, 4096, 'pending'),
    ({'/backup/data.img.snapfleet.json': ('file', 0o600, json.dumps(
        {'uuid': '7cfe1ba0-1004-4b7d-9ff3-1c95b455891f', 'seq_id': 0, 'pending': None}))}, 4096, 'seq_id 0'),
    ({'/backup/data.img.snapfleet.json': ('file', 0o600, json.dumps(
        {'uuid': 'ffff', 'seq_id': 1, 'pending': None}))}, 4096, 'series ffff'),
])
def test_image_checks_fail(extra, size, message):
    host, trackers = _host(extra=extra)
    with pytest.raises(AssertionError, match=message):
        sf.check_image(host, '/backup/data.img', trackers[0], size)


def test_tracker_of_needs_exactly_one_tracker():
    host, trackers = _host()
    host.commands['findmnt -n -o SOURCE --target /other'] = '/dev/vdc'
    host.commands['realpath -e -- /dev/vdc'] = '/dev/vdc'
    with pytest.raises(AssertionError, match='0 trackers trace it'):
        sf.tracker_of(host, trackers, '/other')


def _driver_host(**changes):
    files = {
        '/sys/module/dattobd/version': ('file', 0o444, '0.12.1\n'),
        '/proc/datto-info': ('file', 0o444, golden('datto-info.state-3.json')),
        '/etc/modules-load.d/dattobd.conf': ('file', 0o644, '# managed\ndattobd\n'),
    }
    commands = {
        'uname -r': '6.1.0-28-amd64',
        'modinfo -F version dattobd': '0.12.1',
        'dkms status -m dattobd': 'dattobd/0.12.1, 6.1.0-28-amd64, x86_64: installed',
        'test -c /dev/datto-ctl': 'true',
    }
    for key, value in changes.items():
        if key in files:
            files[key] = ('file', 0o444, value)
        else:
            commands[key] = value
    return FakeHost(files, commands)


def test_check_driver_passes_on_a_consistent_host(monkeypatch, tmp_path):
    monkeypatch.delenv('DATTOBD_SOURCE', raising=False)
    sf.check_driver(_driver_host())
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'dattobd.h').write_text('#define DATTOBD_VERSION "0.12.1"\n')
    monkeypatch.setenv('DATTOBD_SOURCE', str(tmp_path))
    sf.check_driver(_driver_host())
    with pytest.raises(AssertionError, match='the source is 0.12.2'):
        sf.check_driver(_driver_host(), version='0.12.2')


@pytest.mark.parametrize('change, message', [
    ({'modinfo -F version dattobd': '0.12.0'}, 'versions differ'),
    ({'/sys/module/dattobd/version': '0.11.0\n'}, 'versions differ'),
    ({'dkms status -m dattobd': 'dattobd/0.12.1, 6.1.0-27-amd64, x86_64: installed'}, 'dkms status'),
    ({'dkms status -m dattobd': 'dattobd/0.12.1, 6.1.0-28-amd64, x86_64: built'}, 'dkms status'),
    ({'test -c /dev/datto-ctl': 'false'}, 'not a character device'),
    ({'/etc/modules-load.d/dattobd.conf': '# dattobd-not\n'}, 'loaded at boot'),
])
def test_check_driver_fails(monkeypatch, change, message):
    monkeypatch.delenv('DATTOBD_SOURCE', raising=False)
    with pytest.raises(AssertionError, match=message):
        sf.check_driver(_driver_host(**change))


# --- the real-driver gate -----------------------------------------------------------------------

class FakeItem(object):
    def __init__(self, keywords):
        self.keywords = keywords
        self.markers = []

    def add_marker(self, marker):
        self.markers.append(marker)


@pytest.mark.parametrize('real, reason, skipped', [
    ('1', '', False),
    ('0', 'DATTOBD_SOURCE is not set', True),
    (None, None, True),
])
def test_driver_tests_skipped_without_the_real_driver(monkeypatch, real, reason, skipped):
    for name, value in (('SNAPFLEET_TESTINFRA_REAL', real), ('SNAPFLEET_TESTINFRA_SKIP_REASON', reason)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    driver, guest = FakeItem({'driver': True}), FakeItem({})
    sf.pytest_collection_modifyitems(None, [driver, guest])
    assert guest.markers == []
    assert bool(driver.markers) == skipped
    if skipped:
        assert driver.markers[0].kwargs['reason'].startswith('real-driver check: ')
        assert (reason or 'did not run against the real driver') in driver.markers[0].kwargs['reason']


def test_scenario_data_of_every_scenario():
    for name in ('default', 'backup', 'reboot', 'fleet', 'faults', 'lvm', 'restore'):
        scenario = sf.Scenario(os.path.join(ROOT, 'extensions', 'molecule', name, 'tests', 'test_%s.py' % name))
        assert scenario.name == name
        assert scenario.disks(), name
        assert scenario.disks(scenario.platforms[-1]['name']) == scenario.platforms[-1]['disks']
    with pytest.raises(AssertionError, match='no platform'):
        scenario.disks('nope')


def test_check_guest_leaves_blank_disks_alone():
    """A disk with ``fs: none`` (the lvm scenario's physical volumes) has no mount point of its own."""
    files = {'/proc/cmdline': ('file', 0o444, 'BOOT_IMAGE=/vmlinuz root=/dev/vda1 console=ttyS0,115200\n'),
             '/lib/modules/6.1.0-x/build': ('dir', 0o755, None)}
    commands = {'uname -r': '6.1.0-x', 'findmnt -rn -o TARGET,FSTYPE': '/ ext4\n/backup ext4\n/data-lvext4 ext4'}
    host = FakeHost(files, commands)
    sf.check_guest(host, [{'name': 'pv1', 'size': '384M', 'fs': 'none'}, {'name': 'backup', 'fs': 'ext4', 'mount': '/backup'}])
    with pytest.raises(AssertionError, match='/data-xfs is not mounted as xfs'):
        sf.check_guest(host, [{'name': 'pv1', 'fs': 'none'}, {'name': 'x', 'fs': 'xfs', 'mount': '/data-xfs'}])
    lvm = sf.Scenario(os.path.join(ROOT, 'extensions', 'molecule', 'lvm', 'tests', 'test_lvm.py'))
    assert [d['name'] for d in lvm.disks() if d.get('fs') == 'none'] == ['pv1', 'pv2', 'pv3']
