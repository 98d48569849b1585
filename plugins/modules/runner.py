#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: runner
short_description: Install the host-local backup runner (snapfleet-dattobd) and its configuration
version_added: 0.1.0
author: snapfleet maintainers (@snapfleet)
description:
  - "Writes C(snapfleet-dattobd) (O(path)): one Python 3 file, standard library only, that runs the backup cycles
    of this host without Ansible. It is a zipapp of the collection's own library, built from the files this module
    brought to the host, so it runs exactly the cycle of M(snapfleet.dattobd.backup) and writes the same backup
    records and metrics: the fleet report reads host-scheduled and controller-driven runs alike."
  - "Writes its configuration (O(config), JSON, root-only C(0600) in a C(0700) directory): the backup options of
    every volume (O(volumes), over O(defaults)). Every volume is checked with the backup module's own argument spec
    and validation first; a bad one fails the task and nothing is written."
  - "C(snapfleet-dattobd backup) runs one cycle per configured volume (C(--volume NAME) for some, C(--full) for a
    full backup, C(--check) for the plan only). It refuses to start while another cycle holds the lock of a volume,
    and ends with a non-zero exit status and a one-line reason on any failure (C(1) a cycle failed, C(2) bad
    arguments or configuration, C(75) another cycle is running). C(snapfleet-dattobd status [--json]) shows the
    driver's trackers and the last cycle of every backup record. The P(snapfleet.dattobd.systemd#role) role's timer
    runs C(snapfleet-dattobd backup)."
  - Idempotent; the runner is rewritten only when its content (the library, the interpreter) or the configuration
    changed.
extends_documentation_fragment:
  - snapfleet.dattobd.attributes
  - snapfleet.dattobd.attributes.PLATFORM
  - snapfleet.dattobd.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Checks the configuration and reports the files it would write or remove in RV(actions), writing nothing.
  diff_mode:
    support: full
    details:
      - The configuration before and after, and the SHA-256 of the runner before and after.
options:
  state:
    description: V(present) writes the runner and its configuration, V(absent) removes both.
    type: str
    choices: [present, absent]
    default: present
  path:
    description: Where the runner is written (mode C(0755)).
    type: path
    default: /usr/local/sbin/snapfleet-dattobd
  config:
    description:
      - Where its configuration is written (mode C(0600), the directory C(0700) when created). The runner reads
        this path unless given C(--config).
    type: path
    default: /etc/snapfleet/dattobd/backup.json
  volumes:
    description:
      - The volumes the runner backs up, each a dictionary of options of M(snapfleet.dattobd.backup)
        (C(device) and C(image) at least) except C(full) and C(run_boot_id), which each run sets.
      - Each volume needs its own image and name.
    type: list
    elements: dict
    default: []
  defaults:
    description: Backup options shared by every volume (a volume's own value wins).
    type: dict
    default: {}
  python:
    description: The interpreter of the runner's C(#!) line. Default is the one running this module.
    type: path
  ping_url:
    description:
      - The O(snapfleet.dattobd.backup#module:ping_url) of the runner's runs, written into the configuration's
        defaults. It is an option of its own so that it is not logged (nor shown in the diff), unlike
        O(defaults).
    type: str
notes:
  - The runner needs Python 3 on the host, nothing else; it runs as root.
seealso:
  - module: snapfleet.dattobd.backup
'''

EXAMPLES = r'''
- name: Install the host-local runner for two volumes
  snapfleet.dattobd.runner:
    defaults:
      state_dir: /var/lib/snapfleet/dattobd/backups
      verify: changed
    volumes:
      - device: /data
        image: /backup/data.img
      - device: /dev/vdc
        image: /backup/vdc.img
        pre_hooks:
          - argv: [/usr/sbin/fsfreeze, --freeze, /srv]

- name: Remove it
  snapfleet.dattobd.runner:
    state: absent
'''

RETURN = r'''
actions:
  description: What was done (in check mode, what would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["write /usr/local/sbin/snapfleet-dattobd (zipapp, 612345 bytes, sha256 3f5a..., mode 0755)"]
path:
  description: The runner's path.
  returned: always
  type: str
config:
  description: The configuration's path.
  returned: always
  type: str
sha256:
  description: SHA-256 of the runner as wanted (null for O(state=absent)).
  returned: always
  type: str
volumes:
  description: Names of the configured volumes (a volume's O(snapfleet.dattobd.backup#module:name), else its image file name).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import hostapp
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import moduleapi


def main():
    moduleapi.run(AnsibleModule, hostapp.argument_spec(), hostapp.module_runner, hostapp.UNEXPECTED,
                  defaults=dict(actions=[]), supports_check_mode=True)


if __name__ == '__main__':
    main()
