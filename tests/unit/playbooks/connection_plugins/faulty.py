# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A local connection that injects faults into chosen module calls (playbook tests only).

``SNAPFLEET_FAULTS`` (JSON) maps an inventory host (its ``ansible_host``) to ``{module: fault}``;
a fault is ``{"nth": N, "unreachable": "message", "after": "down" | "back"}`` (the N-th call of the
module, default the first, loses the connection; ``down``: every later command on the host too,
as a host powered off; ``back``: the host answers again, as after a hard reset) or
``{"nth": N, "result": {...}}`` (the call returns that module result instead of running). Counts
and the "down" markers are kept in ``SNAPFLEET_FAULTS_DIR``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
    name: faulty
    short_description: local connection with injected faults (tests)
    description:
        - Runs on the controller like C(local), but loses the connection or returns a given result for chosen
          module calls.
    author: snapfleet maintainers (@snapfleet)
    options: {}
"""

import json
import os
import re

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection

# the command that runs a module (not the chmod or rm around it): <python> <tmp dir>/AnsiballZ_<module>.py
_MODULE_RE = re.compile(r'python\S* \S*/AnsiballZ_(\w+)\.py')


class Connection(LocalConnection):
    transport = 'faulty'

    def _fault_state(self):
        host = self._play_context.remote_addr
        faults = json.loads(os.environ.get('SNAPFLEET_FAULTS') or '{}').get(host) or {}
        return host, faults, os.environ.get('SNAPFLEET_FAULTS_DIR') or '/nonexistent'

    def exec_command(self, cmd, in_data=None, sudoable=True):
        host, faults, state = self._fault_state()
        down = os.path.join(state, '%s.down' % host)
        if os.path.exists(down):
            raise AnsibleConnectionFailure('Failed to connect to the host via faulty: %s is down' % host)
        found = _MODULE_RE.search(cmd if isinstance(cmd, str) else cmd.decode('utf-8', 'replace'))
        fault = faults.get(found.group(1)) if found else None
        if fault is not None:
            counter = os.path.join(state, '%s.%s.count' % (host, found.group(1)))
            count = 1
            if os.path.exists(counter):
                with open(counter) as f:
                    count = int(f.read()) + 1
            with open(counter, 'w') as f:
                f.write('%d' % count)
            if count == fault.get('nth', 1):
                if 'unreachable' in fault:
                    if fault.get('after', 'down') == 'down':
                        with open(down, 'w') as f:
                            f.write('down\n')
                    raise AnsibleConnectionFailure(fault['unreachable'])
                result = fault['result']
                return (1 if result.get('failed') else 0), json.dumps(result).encode('utf-8'), b''
        return super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
