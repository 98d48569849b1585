# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake host for the engine tests: a temporary root tree plus a scripted command runner."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shlex

KERNEL = '6.1.0-28-amd64'
OTHER_KERNEL = '6.1.0-30-amd64'
VERSION = '0.12.1'

STATUS_INSTALLED = 'dattobd/0.12.1, 6.1.0-28-amd64, x86_64: installed\n'
STATUS_OLD_INSTALLED = 'dattobd/0.12.0, 6.1.0-28-amd64, x86_64: installed\n'

TRACKER_JSON = {
    "version": "0.12.1",
    "devices": [{"minor": 0, "cow_file": "/.datto0", "block_device": "/dev/vdb1", "max_cache": 314572800,
                 "fallocate": 26214400, "seq_id": 1, "uuid": "0f7e5d3c2b1a49887766554433221100",
                 "version": 1, "nr_changed_blocks": 0, "state": 2}],
}


class FakeHost(object):
    """Files under ``root``; commands answered in order from ``script``."""

    def __init__(self, root):
        self.root = str(root)
        self.calls = []
        self.script = []

    def path(self, p):
        return os.path.join(self.root, p.lstrip('/'))

    def write(self, p, content):
        full = self.path(p)
        if not os.path.isdir(os.path.dirname(full)):
            os.makedirs(os.path.dirname(full))
        with open(full, 'w') as fh:
            fh.write(content)

    def mkdir(self, p):
        full = self.path(p)
        if not os.path.isdir(full):
            os.makedirs(full)

    def read(self, p):
        try:
            with open(self.path(p)) as fh:
                return fh.read()
        except IOError:
            return None

    # --- building blocks ---------------------------------------------------------------
    def kernel(self, release=KERNEL, headers=True):
        self.mkdir('/lib/modules/%s' % release)
        if headers:
            self.mkdir('/lib/modules/%s/build' % release)

    def source(self, version=VERSION, name='dattobd', header_version=None, dkms_conf=True, header=True):
        base = '/usr/src/dattobd-%s' % version
        self.mkdir(base)
        if dkms_conf:
            self.write(base + '/dkms.conf', 'PACKAGE_NAME="%s"\nPACKAGE_VERSION="%s"\nAUTOINSTALL="yes"\n'
                       % (name, version))
        if header:
            self.write(base + '/dattobd.h', '#define DATTOBD_VERSION "%s"\n' % (header_version or version))

    def load(self, version=VERSION, max_snap_devices=24, debug=0, trackers=False):
        self.write('/sys/module/dattobd/version', version + '\n')
        self.write('/sys/module/dattobd/parameters/max_snap_devices', '%d\n' % max_snap_devices)
        self.write('/sys/module/dattobd/parameters/debug', '%d\n' % debug)
        info = dict(TRACKER_JSON) if trackers else {"version": version, "devices": []}
        info['version'] = version
        self.write('/proc/datto-info', json.dumps(info))

    def unload(self):
        import shutil
        shutil.rmtree(self.path('/sys/module/dattobd'), ignore_errors=True)
        if os.path.exists(self.path('/proc/datto-info')):
            os.unlink(self.path('/proc/datto-info'))

    def expect(self, cmd, rc=0, out='', err='', effect=None):
        self.script.append((cmd, rc, out, err, effect))

    # --- runner replacement ---------------------------------------------------------------
    def run_timed(self, argv, timeout=60, env=None, data=None, cwd=None):
        cmd = shlex.join(argv)
        self.calls.append((cmd, timeout))
        if not self.script:
            raise AssertionError('unexpected command %r (nothing scripted)' % cmd)
        want, rc, out, err, effect = self.script.pop(0)
        if want != cmd:
            raise AssertionError('expected command %r, got %r' % (want, cmd))
        if effect:
            effect()
        return rc, out, err

    @property
    def commands(self):
        return [c for c, t in self.calls]
