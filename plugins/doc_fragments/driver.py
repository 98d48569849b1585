# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by the modules that talk to the dattobd driver."""

    DOCUMENTATION = r'''
options:
  timeout:
    description:
      - Seconds to wait for each C(dbdctl) call and each read of C(/proc/datto-info).
      - dattobd 0.12.x can wedge (every ioctl and C(/proc/datto-info) read blocks forever after a
        successful C(expand-cow-file)); the module then fails with a clear message instead of
        hanging the play (M(snapfleet.dattobd.info) reports it instead).
      - The first call that times out marks the driver wedged until the next boot (a marker under
        C(/run/snapfleet-dattobd), keyed by the boot id). No further driver call is made in this module
        call, and every later call of this boot fails at once with the same reason, without a timeout.
        Only a hard reset clears a wedged driver (a clean reboot hangs); see docs/troubleshooting.md.
    type: int
    default: 60
  dbdctl_path:
    description:
      - Path of the C(dbdctl) binary. By default it is looked up in C(PATH) and the usual
        system directories.
    type: path
'''
