# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role snapfleet.dattobd.systemd: unit templates and the systemd-shutdown script (stub tools)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import os
import shutil
import subprocess

import jinja2
import pytest
import yaml

from ansible_collections.snapfleet.dattobd.plugins.filter import role_values

HERE = os.path.dirname(os.path.abspath(__file__))
ROLE = os.path.join(HERE, '..', '..', '..', 'roles', 'systemd')
SHUTDOWN = os.path.join(ROLE, 'files', 'snapfleet-dattobd-remount-ro.shutdown')
GOLDEN = os.path.join(HERE, '..', '..', 'fixtures', 'golden', 'datto-info')


def _vars(**over):
    with open(os.path.join(ROLE, 'defaults', 'main.yml')) as f:
        data = yaml.safe_load(f)
    data.update(ansible_managed='Ansible managed', __dattobd_systemd_backup_exec='/usr/bin/true')
    data.update(over)
    return data


def render(name, **over):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, 'templates')),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters['dirname'] = os.path.dirname  # as ansible's filters
    for fname, func in role_values.FilterModule().filters().items():
        env.filters['snapfleet.dattobd.' + fname] = func
    env.filters['bool'] = lambda v: v if isinstance(v, bool) else str(v).lower() in ('1', 'true', 'yes', 'on')
    return env.get_template(name).render(**_vars(**over))


def unit(text):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=('=',))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def test_boot_check_unit():
    u = unit(render('boot-check.service.j2'))
    assert u['Unit']['After'].split() == ['local-fs.target', 'systemd-remount-fs.service',
                                          'systemd-modules-load.service']
    s = u['Service']
    assert s['Type'] == 'oneshot'
    assert s['ExecStart'] == ('/usr/bin/python3 /usr/local/lib/snapfleet-dattobd/boot-check '
                              '--state-file /var/lib/snapfleet/dattobd/boot-check.json --settle 120')
    # the start timeout leaves the wait for pending volumes two minutes of room
    assert s['TimeoutStartSec'] == '240'
    s2 = unit(render('boot-check.service.j2', dattobd_systemd_boot_check_settle='0'))['Service']
    assert s2['ExecStart'].endswith(' --settle 0') and s2['TimeoutStartSec'] == '120'
    assert s['ReadWritePaths'] == '/var/lib/snapfleet/dattobd'
    for key, value in (('ProtectSystem', 'strict'), ('NoNewPrivileges', 'yes'), ('PrivateTmp', 'yes'),
                       ('PrivateNetwork', 'yes'), ('UMask', '0077')):
        assert s[key] == value
    assert 'PrivateDevices' not in s  # stat() of the tracked block devices needs the real /dev
    assert u['Install']['WantedBy'] == 'multi-user.target'


def test_backup_units():
    text = render('backup.service.j2', __dattobd_systemd_backup_exec='"/usr/bin/x" "50%%"',
                  dattobd_systemd_backup_read_write_paths=['/srv/backup', '/home'],
                  dattobd_systemd_backup_environment={'B': 'two words', 'A': 'x"y%'})
    u = unit(text)
    s = u['Service']
    assert s['ExecStart'] == '"/usr/bin/x" "50%%"'
    assert s['ReadWritePaths'] == '-/etc/datto/dla -/var/lib/snapfleet -/srv/backup -/home'
    envs = [ln for ln in text.splitlines() if ln.startswith('Environment=')]
    assert envs == ['Environment="A=x\\"y%%"', 'Environment="B=two words"']
    for key, value in (('ProtectSystem', 'full'), ('ProtectHome', 'read-only'), ('NoNewPrivileges', 'yes'),
                       ('PrivateTmp', 'yes'), ('UMask', '0077'), ('IOSchedulingClass', 'best-effort'),
                       ('Nice', '10'), ('TimeoutStartSec', '6h')):
        assert s[key] == value, key
    for forbidden in ('PrivateDevices', 'DevicePolicy', 'ProtectKernelLogs'):
        assert forbidden not in s  # raw device access and dmesg diagnostics
    t = unit(render('backup.timer.j2', dattobd_systemd_backup_on_calendar='*-*-* 02:00:00',
                    dattobd_systemd_backup_persistent=False))['Timer']
    assert (t['OnCalendar'], t['RandomizedDelaySec'], t['Persistent']) == ('*-*-* 02:00:00', '30min', 'false')


def test_force_mount2_dropins():
    assert unit(render('force-mount2-manager.conf.j2'))['Manager']['DefaultEnvironment'] == 'LIBMOUNT_FORCE_MOUNT2=always'
    assert unit(render('force-mount2-service.conf.j2'))['Service']['Environment'] == 'LIBMOUNT_FORCE_MOUNT2=always'


@pytest.mark.skipif(not shutil.which('systemd-analyze'), reason='systemd-analyze not installed')
def test_units_pass_systemd_analyze_verify(tmp_path):
    (tmp_path / 'snapfleet-dattobd-boot-check.service').write_text(
        render('boot-check.service.j2', dattobd_systemd_python='/bin/true', dattobd_systemd_libexec_dir='/bin'
               ).replace('/bin/boot-check', ''))
    (tmp_path / 'snapfleet-dattobd-backup.service').write_text(
        render('backup.service.j2', __dattobd_systemd_backup_exec='/bin/true "a b" 50%%'))
    (tmp_path / 'snapfleet-dattobd-backup.timer').write_text(render('backup.timer.j2'))
    (tmp_path / 'snapfleet-dattobd-quiesce.service').write_text(
        render('quiesce.service.j2', dattobd_systemd_python='/bin/true', dattobd_systemd_libexec_dir='/bin'
               ).replace('/bin/boot-check --quiesce', ''))
    units = sorted(str(p) for p in tmp_path.iterdir())
    proc = subprocess.run(['systemd-analyze', 'verify', '--man=no'] + units, capture_output=True, text=True, check=False)
    bad = [ln for ln in proc.stderr.splitlines()
           if 'snapfleet' in ln and ('Unknown' in ln or 'nvalid' in ln or 'ignoring' in ln.lower())]
    assert bad == []


# --- the systemd-shutdown script -------------------------------------------------------------

STUB = '''#!/bin/sh
echo "$(basename "$0") $* [FORCE=$LIBMOUNT_FORCE_MOUNT2]" >> "$STUB_LOG"
case "$(basename "$0") $*" in
  "mount -o remount,ro /") exit "${STUB_RO_RC:-0}" ;;
esac
exit 0
'''


@pytest.fixture
def sd(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for tool in ('mount', 'sync', 'sleep'):
        p = bindir / tool
        p.write_text(STUB)
        p.chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (bindir, os.environ['PATH']), STUB_LOG=str(tmp_path / 'calls'),
               SNAPFLEET_DATTOBD_KMSG=str(tmp_path / 'kmsg'), SNAPFLEET_DATTOBD_MOUNTS=str(tmp_path / 'mounts'),
               SNAPFLEET_DATTOBD_PROC=str(tmp_path / 'datto-info'))
    return dict(env=env, tmp=tmp_path)


def _golden(name):
    with open(os.path.join(GOLDEN, 'datto-info.%s.json' % name)) as f:
        return f.read()


ROOT_RW = 'sysfs /sys sysfs rw 0 0\n/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0\n'
ROOT_RO = '/dev/vda1 / ext4 rw 0 0\n/dev/vda1 / ext4 ro,relatime 0 0\n'   # last line wins

SHUTDOWN_CASES = [
    # (name, mounts, /proc sample or None, ro remount rc, expected calls, expected kmsg fragment)
    ('root still rw', ROOT_RW, 'state-3', '0',
     ['sync  [FORCE=always]', 'mount -o remount,ro / [FORCE=always]'], 'remounted / read-only (poweroff)'),
    ('root rw, first ro remount busy', ROOT_RW, None, '1',
     ['sync  [FORCE=always]', 'mount -o remount,ro / [FORCE=always]', 'sync  [FORCE=always]',
      'sleep 1 [FORCE=always]', 'mount -o remount,ro / [FORCE=always]'], 'cannot remount / read-only (poweroff)'),
    ('root ro, tracker dormant', ROOT_RO, 'state-1', '0', [], 'nothing to do (poweroff)'),
    ('root ro, no driver', ROOT_RO, None, '0', [], 'nothing to do (poweroff)'),
    ('root ro, tracker still active: driver missed it', ROOT_RO, 'state-2', '0',
     ['mount -o remount,rw / [FORCE=always]', 'sync  [FORCE=always]', 'mount -o remount,ro / [FORCE=always]'],
     'remounted / read-only again (poweroff)'),
    ('root ro, active snapshot', ROOT_RO, 'state-3', '0',
     ['mount -o remount,rw / [FORCE=always]', 'sync  [FORCE=always]', 'mount -o remount,ro / [FORCE=always]'],
     'still active'),
]


@pytest.mark.parametrize('name, mounts, sample, ro_rc, calls, kmsg', SHUTDOWN_CASES, ids=[c[0] for c in SHUTDOWN_CASES])
@pytest.mark.parametrize('shell', [s for s in ('sh', 'bash') if shutil.which(s)])
def test_shutdown_script(sd, shell, name, mounts, sample, ro_rc, calls, kmsg):
    (sd['tmp'] / 'mounts').write_text(mounts)
    if sample:
        (sd['tmp'] / 'datto-info').write_text(_golden(sample))
    sd['env']['STUB_RO_RC'] = ro_rc
    proc = subprocess.run([shell, SHUTDOWN, 'poweroff'], env=sd['env'], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    got = (sd['tmp'] / 'calls').read_text().splitlines() if (sd['tmp'] / 'calls').exists() else []
    assert got == calls
    text = (sd['tmp'] / 'kmsg').read_text() if (sd['tmp'] / 'kmsg').exists() else ''
    if kmsg:
        assert kmsg in text
    else:
        assert text == ''


def test_shutdown_script_syntax():
    assert subprocess.run(['sh', '-n', SHUTDOWN], check=False).returncode == 0
    with open(SHUTDOWN) as f:
        assert f.readline() == '#!/bin/sh\n'


@pytest.mark.skipif(not shutil.which('systemd-analyze'), reason='systemd-analyze not installed')
def test_systemd_analyze_check_catches_a_typo(tmp_path):
    """Control for the test above: the same filter does flag a misspelt directive."""
    bad = render('backup.service.j2').replace('ProtectSystem=full', 'ProtectSystm=full')
    (tmp_path / 'snapfleet-dattobd-backup.service').write_text(bad)
    proc = subprocess.run(['systemd-analyze', 'verify', '--man=no', str(tmp_path / 'snapfleet-dattobd-backup.service')],
                          capture_output=True, text=True, check=False)
    assert [ln for ln in proc.stderr.splitlines() if 'snapfleet' in ln and 'Unknown' in ln]
