# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the Molecule scenarios' testinfra tests (``<scenario>/tests/test_*.py``).

Each scenario's ``conftest.py`` puts this directory on ``sys.path`` and imports the pytest hooks
and fixtures below; its test module imports the tests every scenario runs (the last section) and
adds its own from the checks. Run on the controller by the last play of each
scenario's ``verify.yml`` (``resources/tasks/testinfra.yml``), or by hand::

    python -m pytest -p no:cacheprovider -rs -q --hosts=ansible://all \\
        --ansible-inventory="$MOLECULE_INVENTORY_FILE" extensions/molecule/<scenario>/tests

The expectations are derived from dattobd's documented interfaces (``/proc/datto-info`` state
bits, the reload script format of the boot hook), not from the collection's own parsers: a
verifier that reused the code under test would agree with its bugs.

The scenario's data (``molecule.yml`` platforms, ``vars/scenario.yml``) is read from the
directory above the test file (:class:`Scenario`). Environment (set by
``resources/tasks/testinfra.yml`` from ``resources/tasks/gate.yml``):

* ``SNAPFLEET_TESTINFRA_REAL``: ``1`` when the scenario ran against the real driver; otherwise
  every test marked ``driver`` is skipped with ``SNAPFLEET_TESTINFRA_SKIP_REASON``.
* ``DATTOBD_SOURCE``: the dattobd source the engine was built from; its ``src/dattobd.h``
  gives the version the loaded module must have.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shlex
import tarfile

import pytest
import yaml

STATE_SNAPSHOT = 1
STATE_ACTIVE = 2
STATE_UNVERIFIED = 4

RELOAD_DIR = '/etc/datto/dla'
RELOAD_PREFIX = 'reload_snapfleet_'
RELOAD_COMMANDS = {'snapshot': 'reload-snapshot', 'incremental': 'reload-incremental'}
# Names of a volume that exist in early boot and do not depend on probe order (dattobd.md 5.2).
STABLE_PREFIXES = ('/dev/disk/', '/dev/mapper/', '/dev/md/')
CTL_DEVICE = '/dev/datto-ctl'
PROC_INFO = '/proc/datto-info'
SYS_VERSION = '/sys/module/dattobd/version'

_VERSION_RE = re.compile(r'DATTOBD_VERSION\s+"([^"]+)"')
# dkms 3.x "dattobd/0.12.1, 6.1.0-28-amd64, x86_64: installed" and 2.x "dattobd, 0.12.1, ...".
_DKMS_RE = re.compile(r'^(?P<name>[^/,\s]+)(?:/|,\s*)(?P<version>[^,:\s]+)'
                      r'(?:,\s*(?P<kernel>[^,:\s]+)(?:,\s*(?P<arch>[^:\s]+))?)?:\s*(?P<state>[A-Za-z-]+)')


# --- pure helpers (unit-tested in tests/unit/extensions/test_sf_testinfra.py) ----------------

def state_name(state):
    """The name of a raw ``sd_state`` of /proc/datto-info: ``active snapshot``, ``dormant
    incremental``, ``unverified snapshot``... (bit0 snapshot, bit1 active, bit2 unverified).

    Unverified trackers are never active: a value with both bits is not a driver state.
    """
    if isinstance(state, bool) or not isinstance(state, int) or not 0 <= state <= 5:
        return 'invalid state %r' % (state,)
    mode = 'snapshot' if state & STATE_SNAPSHOT else 'incremental'
    if state & STATE_UNVERIFIED:
        phase = 'unverified'
    elif state & STATE_ACTIVE:
        phase = 'active'
    else:
        phase = 'dormant'
    return '%s %s' % (phase, mode)


def parse_datto_info(text):
    """``(version, [device dict, ...])`` of the text of /proc/datto-info (strict JSON: the paths
    of the scenarios hold no characters the driver would leave unescaped)."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get('devices'), list):
        raise ValueError('no "devices" list in %r' % (text[:200],))
    return data.get('version'), data['devices']


def dkms_states(status_text, name='dattobd'):
    """``[(version, kernel, state), ...]`` of the text of ``dkms status``."""
    out = []
    for line in (status_text or '').splitlines():
        m = _DKMS_RE.match(line.strip())
        if m and m.group('name') == name:
            out.append((m.group('version'), m.group('kernel'), m.group('state').lower()))
    return out


def reload_command(text):
    """The argv of the one command of a reload script, after checking its shape: ``#!/bin/sh``
    first, then comments and exactly one command line. Raises ValueError otherwise."""
    lines = text.split('\n')
    if lines[0] != '#!/bin/sh':
        raise ValueError('first line %r is not #!/bin/sh' % (lines[0],))
    commands = [line for line in lines[1:] if line.strip() and not line.lstrip().startswith('#')]
    if len(commands) != 1:
        raise ValueError('expected one command line, found %d: %r' % (len(commands), commands))
    return shlex.split(commands[0])


def reload_problems(argv, tracker, block_device_resolved):
    """What is wrong with the argv of a reload script for ``tracker`` (a /proc/datto-info device);
    ``block_device_resolved`` is the realpath of the script's block device on the host.
    Expected: ``<dbdctl> reload-snapshot|reload-incremental [-c <bytes>] <stable block device name>
    <COW file relative to the mount point> <minor>`` with the mode of the tracker's state."""
    problems = []
    if len(argv) not in (5, 7):
        return ['expected 5 or 7 words (dbdctl, command, [-c bytes], device, COW file, minor), got %r' % (argv,)]
    want_cmd = RELOAD_COMMANDS['snapshot' if tracker['state'] & STATE_SNAPSHOT else 'incremental']
    if os.path.basename(argv[0]) != 'dbdctl' or not argv[0].startswith('/'):
        problems.append('%r is not an absolute path to dbdctl' % (argv[0],))
    if argv[1] != want_cmd:
        problems.append('command %r, but the tracker is in %s: want %r' % (argv[1], state_name(tracker['state']), want_cmd))
    if len(argv) == 7 and (argv[2] != '-c' or not argv[3].isdigit()):
        problems.append('expected "-c <bytes>" after the command, got %r' % (argv[2:4],))
    device, cow, minor = argv[-3:]
    if not device.startswith(STABLE_PREFIXES):
        problems.append('block device %r is not a name that exists in early boot and stays from boot to boot '
                        '(%s...)' % (device, ', '.join(STABLE_PREFIXES)))
    if block_device_resolved != tracker['block_device']:
        problems.append('block device %r is %r, the tracker traces %r' % (device, block_device_resolved, tracker['block_device']))
    if cow != tracker['cow_file']:
        problems.append('COW file %r, the tracker uses %r' % (cow, tracker['cow_file']))
    if minor != str(tracker['minor']):
        problems.append('minor %r, the tracker is minor %d' % (minor, tracker['minor']))
    return problems


def initramfs_missing(listing, patterns):
    """The regular expressions of ``patterns`` that match no path of an ``lsinitramfs`` listing
    (a path per line, which may start with ``./``) or an ``lsinitrd`` one (``ls -l`` lines: the path
    is the last field); a symlink may end with `` -> target``. As roles/initramfs checks it."""
    missing = []
    for pattern in patterns:
        if not re.search(r'(?m)(^|[ \t])(\./)?' + pattern + r'( -> .*)?$', listing):
            missing.append(pattern)
    return missing


def source_version(source):
    """DATTOBD_VERSION of a dattobd source tree or tarball (``src/dattobd.h``), else None."""
    if not source:
        return None
    text = None
    if os.path.isdir(source):
        path = os.path.join(source, 'src', 'dattobd.h')
        if os.path.isfile(path):
            with open(path) as handle:
                text = handle.read()
    elif os.path.isfile(source) and tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            for member in tar:
                if member.isfile() and re.search(r'(^|/)src/dattobd\.h$', member.name):
                    text = tar.extractfile(member).read().decode('utf-8', 'replace')
                    break
    m = _VERSION_RE.search(text or '')
    return m.group(1) if m else None


def normalize_uuid(value):
    return str(value or '').replace('-', '').lower()


# --- scenario data (controller side) -------------------------------------------------------------

class Scenario(object):
    """The Molecule scenario of a test file (``<scenario>/tests/test_*.py``): its ``molecule.yml``
    platforms and its ``vars/scenario.yml`` (empty when it has none)."""

    def __init__(self, test_file):
        self.dir = os.path.dirname(os.path.dirname(os.path.abspath(test_file)))
        self.name = os.path.basename(self.dir)
        self.molecule = self._load('molecule.yml') or {}
        self.vars = self._load(os.path.join('vars', 'scenario.yml')) or {}

    def _load(self, relative):
        path = os.path.join(self.dir, relative)
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return yaml.safe_load(handle)

    @property
    def platforms(self):
        return self.molecule.get('platforms') or []

    def disks(self, name=None):
        """The extra disks of platform ``name`` (default: the first platform)."""
        for item in self.platforms:
            if name is None or item.get('name') == name:
                return item.get('disks') or []
        raise AssertionError('no platform %r in %s/molecule.yml' % (name, self.dir))


def real_driver():
    return os.environ.get('SNAPFLEET_TESTINFRA_REAL') == '1'


# --- pytest hooks and fixtures (imported by each scenario's conftest.py) --------------------------

def pytest_configure(config):
    config.addinivalue_line('markers', 'driver: needs the real dattobd driver in the guest (skipped without it)')


def pytest_collection_modifyitems(config, items):
    if real_driver():
        return
    reason = os.environ.get('SNAPFLEET_TESTINFRA_SKIP_REASON') or 'the scenario did not run against the real driver'
    skip = pytest.mark.skip(reason='real-driver check: %s' % reason.strip())
    for item in items:
        if 'driver' in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    """``mount`` runs a test once per volume of the module's ``WANT``, ``image_mount`` once per
    volume of its ``IMAGES`` (see :func:`test_tracker_state`, :func:`test_image`)."""
    for name, attr in (('mount', 'WANT'), ('image_mount', 'IMAGES')):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, sorted(getattr(metafunc.module, attr)))


@pytest.fixture(scope='module')
def scenario(request):
    return Scenario(request.module.__file__)


@pytest.fixture(scope='module')
def hostname(host):
    """The inventory name of the guest (the platform name of molecule.yml)."""
    return host.backend.get_hostname()


@pytest.fixture(scope='module')
def trackers(host):
    """The devices of /proc/datto-info by minor (read once per test module and host)."""
    return read_trackers(host)


# --- host checks ---------------------------------------------------------------------------------

def read_trackers(host):
    info = host.file(PROC_INFO)
    assert info.exists, '%s does not exist: the dattobd module is not loaded' % PROC_INFO
    _version, devices = parse_datto_info(info.content_string)
    return dict((d['minor'], d) for d in devices)


def realpath(host, path):
    return host.check_output('realpath -e -- %s', path)


def tracker_of(host, trackers, mount):
    """The tracker of the volume mounted at ``mount``: its block device is ``findmnt -n -o SOURCE
    --target <mount>`` resolved with realpath. Fails unless exactly one tracker traces it."""
    source = realpath(host, host.check_output('findmnt -n -o SOURCE --target %s', mount))
    found = [t for t in trackers.values() if realpath(host, t['block_device']) == source]
    assert len(found) == 1, '%s (%s): %d trackers trace it: %s' % (mount, source, len(found), trackers)
    return found[0]


def check_tracker(tracker, want):
    """``want``: ``active snapshot`` or ``active incremental``; a failed tracker never passes."""
    assert 'error' not in tracker, 'minor %d failed: error %s (%s)' % (tracker['minor'], tracker['error'], tracker)
    assert state_name(tracker['state']) == want, 'minor %d is %s, want %s' % (
        tracker['minor'], state_name(tracker['state']), want)


def check_driver(host, version=None):
    """The module is loaded with one version everywhere (sysfs, /proc/datto-info, modinfo), the
    one of DATTOBD_SOURCE when given; DKMS has it installed for the running kernel; the control
    device is a character device; the module is loaded at boot (modules-load.d)."""
    kernel = host.check_output('uname -r')
    sys_version = host.file(SYS_VERSION).content_string.strip()
    proc_version, _devices = parse_datto_info(host.file(PROC_INFO).content_string)
    mod_version = host.check_output('modinfo -F version dattobd')
    assert sys_version == proc_version == mod_version, (
        'versions differ: sysfs %r, /proc/datto-info %r, modinfo %r' % (sys_version, proc_version, mod_version))
    want = version or source_version(os.environ.get('DATTOBD_SOURCE'))
    if want:
        assert sys_version == want, 'loaded dattobd %s, the source is %s' % (sys_version, want)
    states = dkms_states(host.check_output('dkms status -m dattobd'))
    assert (sys_version, kernel, 'installed') in states, (
        'dkms status -m dattobd: no "%s, %s: installed" in %s' % (sys_version, kernel, states))
    assert host.run_test('test -c %s', CTL_DEVICE).rc == 0, '%s is not a character device' % CTL_DEVICE
    load = host.file('/etc/modules-load.d/dattobd.conf')
    assert load.exists and 'dattobd' in load.content_string.split(), 'dattobd is not loaded at boot (modules-load.d)'


def check_reload_scripts(host, trackers):
    """Exactly one reload script of ours per tracker, mode 0700 root-owned in a 0700 directory,
    running the reload command of the tracker's mode on its device, COW file and minor."""
    directory = host.file(RELOAD_DIR)
    assert directory.is_directory and directory.mode == 0o700 and directory.user == 'root', (
        '%s: mode %o, owner %s' % (RELOAD_DIR, directory.mode, directory.user))
    ours = sorted(name for name in directory.listdir() if name.startswith(RELOAD_PREFIX))
    assert ours == sorted('%s%d' % (RELOAD_PREFIX, m) for m in trackers), (
        'reload scripts %s for trackers %s' % (ours, sorted(trackers)))
    commands = {}
    for minor, tracker in sorted(trackers.items()):
        script = host.file('%s/%s%d' % (RELOAD_DIR, RELOAD_PREFIX, minor))
        assert script.is_file and script.mode == 0o700 and script.user == 'root', (
            '%s: mode %o, owner %s' % (script.path, script.mode, script.user))
        argv = reload_command(script.content_string)
        problems = reload_problems(argv, tracker, realpath(host, argv[-3]))
        assert not problems, '%s: %s' % (script.path, '; '.join(problems))
        assert host.file(argv[0]).is_file and host.file(argv[0]).mode & 0o100, '%s is not executable' % argv[0]
        commands[minor] = argv
    return commands


def check_private(host, paths, directory):
    """``paths`` are root-only files (0600) in the root-only directory ``directory`` (0700)."""
    parent = host.file(directory)
    assert parent.is_directory and parent.mode == 0o700 and parent.user == 'root', (
        '%s: mode %o, owner %s' % (directory, parent.mode, parent.user))
    for path in paths:
        f = host.file(path)
        assert f.is_file and f.mode == 0o600 and f.user == 'root', '%s: exists %s, mode %o, owner %s' % (
            path, f.exists, f.mode if f.exists else 0, f.user if f.exists else '-')


def check_image(host, image, tracker, size):
    """A backup image: 0600 with its sidecar in a 0700 directory, the size of the volume, no
    sync pending, and the series and seq_id of the tracker (the next backup is incremental)."""
    sidecar = image + '.snapfleet.json'
    check_private(host, [image, sidecar], os.path.dirname(image))
    assert host.file(image).size == size, '%s: %d bytes, the volume has %d' % (image, host.file(image).size, size)
    meta = json.loads(host.file(sidecar).content_string)
    assert meta.get('pending') is None, '%s: a sync is pending: %s' % (sidecar, meta.get('pending'))
    assert normalize_uuid(meta.get('uuid')) == normalize_uuid(tracker.get('uuid')), (
        '%s: series %s, the tracker %s' % (sidecar, meta.get('uuid'), tracker.get('uuid')))
    assert meta.get('seq_id') == tracker.get('seq_id'), '%s: seq_id %s, the tracker %s' % (
        sidecar, meta.get('seq_id'), tracker.get('seq_id'))


def volume_size(host, mount):
    return int(host.check_output('blockdev --getsize64 %s', host.check_output('findmnt -n -o SOURCE --target %s', mount)))


def check_guest(host, disks):
    """The guest booted its own boot loader with the serial console, the running kernel's headers
    are installed, and every extra disk of molecule.yml is mounted with its file system (a blank
    disk, ``fs: none``, is the scenario's to use)."""
    cmdline = host.file('/proc/cmdline').content_string.split()
    assert any(w.startswith('BOOT_IMAGE=') for w in cmdline), 'not booted by GRUB: %s' % cmdline
    assert 'console=ttyS0' in cmdline or any(w.startswith('console=ttyS0,') for w in cmdline), (
        'no serial console: %s' % cmdline)
    kernel = host.check_output('uname -r')
    assert host.file('/lib/modules/%s/build' % kernel).is_directory, 'no headers for %s' % kernel
    mounts = set(tuple(line.split()) for line in host.check_output('findmnt -rn -o TARGET,FSTYPE').splitlines())
    for disk in disks:
        if disk.get('fs', 'ext4') == 'none':
            continue
        want = (disk['mount'], disk.get('fs', 'ext4'))
        assert want in mounts, '%s is not mounted as %s: %s' % (want[0], want[1], sorted(mounts))


def backup_volumes(scenario):
    """``(WANT, IMAGES)`` of a scenario whose ``dattobd_backup_volumes`` end incremental."""
    volumes = scenario.vars['dattobd_backup_volumes']
    return (dict((v['device'], 'active incremental') for v in volumes),
            dict((v['device'], v['image']) for v in volumes))


# --- the tests every scenario runs (imported by its test module, which defines WANT: the state
# name of each mount's tracker, and IMAGES: the backup image of each mount, possibly empty) --------

def test_guest(host, hostname, scenario):
    check_guest(host, scenario.disks(hostname))


@pytest.mark.driver
def test_driver_loaded_and_installed(host):
    check_driver(host)


@pytest.mark.driver
def test_tracker_state(request, host, trackers, mount):
    check_tracker(tracker_of(host, trackers, mount), request.module.WANT[mount])


@pytest.mark.driver
def test_no_other_tracker(request, trackers):
    assert len(trackers) == len(request.module.WANT), 'trackers %s for volumes %s' % (
        trackers, sorted(request.module.WANT))


@pytest.mark.driver
def test_reload_scripts(host, trackers):
    check_reload_scripts(host, trackers)


@pytest.mark.driver
def test_image(request, host, trackers, image_mount):
    check_image(host, request.module.IMAGES[image_mount], tracker_of(host, trackers, image_mount),
                volume_size(host, image_mount))
