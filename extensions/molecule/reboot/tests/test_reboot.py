# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host state after the reboot scenario (side effect: clean reboot, hard reset and rebaseline,
then a boot that skipped the reload script of the backed-up volume, which was reloaded late by
hand and backed up in full; verify then compared its image with a new snapshot and went back to
incremental):

* every tracker of vars/scenario.yml active in its mode at its minor, with its reload script;
* the boot integration: the initramfs of the running kernel holds the hook, the boot script,
  dbdctl and the module; the boot check unit is enabled and its last run (the last boot)
  flagged the skipped volume; the state file says so (late, rebaseline required);
* the backed-up volume's image is root-only and at the tracker's series and seq_id.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

import pytest

import sf_testinfra as sf
# The tests every scenario runs, on this module's WANT and IMAGES.
from sf_testinfra import (  # noqa: F401 pylint: disable=unused-import
    test_driver_loaded_and_installed, test_guest, test_image, test_no_other_tracker, test_reload_scripts, test_tracker_state)

SCENARIO = sf.Scenario(__file__)
TRACKERS = dict((t['device'], t) for t in SCENARIO.vars['__sf_trackers'])
VOLUME = SCENARIO.vars['__sf_volume']
STATE_FILE = SCENARIO.vars['__sf_state_file']
WANT = dict((t['device'], 'active ' + t['state']) for t in TRACKERS.values())
IMAGES = {VOLUME['device']: VOLUME['image']}
UNIT = 'snapfleet-dattobd-boot-check.service'
# roles/systemd and roles/initramfs defaults
LIBEXEC = '/usr/local/lib/snapfleet-dattobd'
SHUTDOWN_HOOK = '/usr/lib/systemd/system-shutdown/snapfleet-dattobd-remount-ro.shutdown'
MOUNT2_DROPINS = ('/etc/systemd/system.conf.d/snapfleet-dattobd-mount2.conf',
                  '/etc/systemd/system/systemd-remount-fs.service.d/snapfleet-dattobd-mount2.conf')
INITRAMFS_STATE_DIR = '/var/lib/snapfleet/dattobd'
# What the initramfs must hold besides the module and dbdctl, per generator and kind of hooks
# (roles/initramfs), and the command that lists it.
INITRAMFS_HOOKS = {
    'initramfs-tools': {
        'own': ['scripts/local-premount/snapfleet-dattobd', '(usr/)?sbin/snapfleet-dattobd-boot', 'etc/datto/dla/mnt'],
        'vendor': ['scripts/init-premount/dattobd', '(usr/)?sbin/datto_reload', 'etc/datto/dla/mnt'],
    },
    'dracut': {
        'own': [r'(usr/)?lib/dracut/hooks/pre-mount/01-snapfleet-dattobd-pre-mount\.sh', '(usr/)?sbin/snapfleet-dattobd-boot',
                'etc/datto/dla/mnt'],
        'vendor': [r'(usr/)?lib/dracut/hooks/pre-mount/01-dattobd\.sh', '(usr/)?sbin/datto_reload', 'etc/datto/dla/mnt'],
    },
}
INITRAMFS_LIST = {'initramfs-tools': 'lsinitramfs /boot/initrd.img-%s', 'dracut': 'lsinitrd -k %s'}

# The collection's own hooks on the host (roles/initramfs, hooks own), per generator.
OWN_HOOK_FILES = {
    'initramfs-tools': ('/etc/initramfs-tools/hooks/snapfleet-dattobd',
                        '/etc/initramfs-tools/scripts/local-premount/snapfleet-dattobd', LIBEXEC + '/snapfleet-dattobd-boot'),
    'dracut': ('/usr/lib/dracut/modules.d/90snapfleet-dattobd/module-setup.sh',
               '/usr/lib/dracut/modules.d/90snapfleet-dattobd/snapfleet-dattobd-pre-mount.sh', LIBEXEC + '/snapfleet-dattobd-boot'),
}


def check_executables(host, paths):
    for path in paths:
        f = host.file(path)
        assert f.is_file, '%s is missing' % path
        assert f.mode == 0o755 and f.user == 'root', '%s: mode %o, owner %s' % (path, f.mode, f.user)


@pytest.mark.driver
def test_tracker_minors(host, trackers):
    """Every volume is tracked at the minor converge (and the rebaseline of case 2) gave it."""
    got = dict((m, sf.tracker_of(host, trackers, m)['minor']) for m in TRACKERS)
    assert got == dict((m, t['minor']) for m, t in TRACKERS.items())


@pytest.mark.driver
def test_initramfs(host, trackers):
    """The initramfs of the running kernel (``lsinitramfs``, or ``lsinitrd`` on a dracut guest)
    lists the boot hook, the boot script, the mount point, the dattobd module of the running kernel
    and the dbdctl the reload scripts run; the role recorded the generator the guest has."""
    kernel = host.check_output('uname -r')
    stamp_path = '%s/initramfs-%s.json' % (INITRAMFS_STATE_DIR, kernel)
    sf.check_private(host, [stamp_path], INITRAMFS_STATE_DIR)
    stamp = json.loads(host.file(stamp_path).content_string)
    tool, hooks = stamp['tool'], stamp['hooks']
    want_tool = 'initramfs-tools' if host.file('/usr/sbin/update-initramfs').exists else 'dracut'
    assert tool == want_tool, '%s: tool %r on a guest with %s' % (stamp_path, tool, want_tool)
    assert hooks in INITRAMFS_HOOKS[tool], '%s: hooks %r' % (stamp_path, hooks)
    dbdctl = set(sf.reload_command(host.file('%s/%s%d' % (sf.RELOAD_DIR, sf.RELOAD_PREFIX, m)).content_string)[0]
                 for m in trackers)
    patterns = INITRAMFS_HOOKS[tool][hooks] + [
        r'(usr/)?lib/modules/%s/.*dattobd\.ko(\.[a-z0-9]+)?' % re.escape(kernel)] + [
        '(usr/)?' + re.escape(re.sub('^/(usr/)?', '', path)) for path in sorted(dbdctl)]
    if hooks == 'own':
        check_executables(host, OWN_HOOK_FILES[tool])
    listing = host.check_output(INITRAMFS_LIST[tool], kernel)
    missing = sf.initramfs_missing(listing, patterns)
    assert not missing, 'the initramfs of %s lacks %s' % (kernel, missing)


@pytest.mark.driver
def test_boot_integration_files(host):
    check_executables(host, [SHUTDOWN_HOOK, LIBEXEC + '/boot-check'])
    assert host.file('/etc/systemd/system/' + UNIT).is_file
    # LIBMOUNT_FORCE_MOUNT2 (dattobd_systemd_force_mount2: auto): only with util-linux 2.39 or newer.
    m = re.search(r'util-linux ([0-9]+)\.([0-9]+)', host.check_output('mount --version'))
    assert m, 'cannot read the util-linux version'
    want = (int(m.group(1)), int(m.group(2))) >= (2, 39)
    for path in MOUNT2_DROPINS:
        assert host.file(path).exists == want, '%s exists: %s, util-linux %s.%s' % (
            path, host.file(path).exists, m.group(1), m.group(2))


@pytest.mark.driver
def test_boot_check_unit(host):
    """Enabled for every boot; its last run (the last boot, whose initramfs skipped the reload
    script of the backed-up volume) failed with exit status 1."""
    assert host.check_output('systemctl is-enabled %s', UNIT) == 'enabled'
    props = dict(line.split('=', 1) for line in
                 host.check_output('systemctl show -p Result -p ExecMainStatus %s', UNIT).splitlines())
    assert props == {'Result': 'exit-code', 'ExecMainStatus': '1'}, props


@pytest.mark.driver
def test_boot_check_state(host):
    """The state file (rewritten by the check run by hand after the late reload, this boot):
    the backed-up volume was reloaded late and needs a full backup, the others came back."""
    sf.check_private(host, [STATE_FILE], STATE_FILE.rsplit('/', 1)[0])
    state = json.loads(host.file(STATE_FILE).content_string)
    assert state['schema'] == 1
    assert state['boot_id'] == host.file('/proc/sys/kernel/random/boot_id').content_string.strip()
    assert state['driver_loaded'] is True
    assert state['ok'] is False
    assert state['rebaseline_required'] == [VOLUME['minor']]
    assert state['undeclared_trackers'] == []
    statuses = dict((v['minor'], v['status']) for v in state['volumes'])
    want = dict((t['minor'], 'late' if t['minor'] == VOLUME['minor'] else 'ok') for t in TRACKERS.values())
    assert statuses == want, state['volumes']
    log = state['initramfs_log']
    assert log['completed'] is True and log['modprobe'] == 'ok', log
    assert log['scripts'] == dict(('%s%d' % (sf.RELOAD_PREFIX, m), 0) for m in want if m != VOLUME['minor']), log
