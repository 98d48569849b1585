# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A local connection that injects faults into chosen module calls (playbook tests only).

``SNAPFLEET_FAULTS`` (JSON) maps an inventory host (its ``ansible_host``) to ``{module: fault}``;
a fault is ``{"nth": N, "unreachable": "message", "after": "down" | "back"}`` (the N-th call of the
module, default the first, loses the connection; ``down``: every later command on the host too,
as a host powered off; ``back``: the host answers again, as after a hard reset) or
``{"nth": N, "result": {...}}`` (the call returns that module result instead of running); a list of
such faults fakes several calls of the module. Counts and the "down" markers are kept in
``SNAPFLEET_FAULTS_DIR``.

A module call whose arguments name ``/proc/sysrq-trigger`` NEVER runs (the tests run as root on the
machine itself): the write is recorded (one line a write in ``<host>.sysrq``) and the host is reset
as the fault ``"reset"`` says, ``{"after": "back" | "down", "seconds": S}`` (default: back after 1 s):
the connection drops, every command fails as unreachable for S seconds (``down``: for good), and
then the host answers with a new boot id (a read of ``/proc/sys/kernel/random/boot_id`` returns it).
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

import base64
import json
import os
import re
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection

# the command that runs a module (not the chmod or rm around it): <python> <tmp dir>/AnsiballZ_<module>.py
_MODULE_RE = re.compile(r'python\S* \S*/AnsiballZ_(\w+)\.py')
# every module file a command names (an async task names the async wrapper and the module)
_FILE_RE = re.compile(r'(/\S*/AnsiballZ_\w+\.py)')
SYSRQ_TRIGGER = b'/proc/sysrq-trigger'
BOOT_ID = b'/proc/sys/kernel/random/boot_id'


def _module_params(cmd, in_data):
    """The arguments of the modules ``cmd`` runs (the ``params=`` line of each AnsiballZ file), as bytes."""
    found = []
    for data in [in_data or b''] + [_read(path) for path in _FILE_RE.findall(cmd)]:
        found.extend(line for line in data.splitlines() if line.startswith(b'params='))
    return b'\n'.join(found)


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return b''


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
        text = cmd if isinstance(cmd, str) else cmd.decode('utf-8', 'replace')
        rebooted = os.path.join(state, '%s.rebooted' % host)
        if os.path.exists(rebooted):
            with open(rebooted) as f:
                back_at, boot_id = f.read().split()
            if time.time() < float(back_at):
                raise AnsibleConnectionFailure('Failed to connect to the host via faulty: %s is rebooting' % host)
        params = _module_params(text, in_data)
        if SYSRQ_TRIGGER in params:
            return self._reset(host, faults.get('reset') or {}, state, down, rebooted)
        found = _MODULE_RE.search(text)
        if found and found.group(1) == 'slurp' and BOOT_ID in params and os.path.exists(rebooted):
            content = base64.b64encode(('%s\n' % boot_id).encode('ascii')).decode('ascii')
            return 0, json.dumps({'content': content, 'encoding': 'base64', 'source': BOOT_ID.decode()}).encode(), b''
        fault = faults.get(found.group(1)) if found else None
        if fault is not None:
            counter = os.path.join(state, '%s.%s.count' % (host, found.group(1)))
            count = 1
            if os.path.exists(counter):
                with open(counter) as f:
                    count = int(f.read()) + 1
            with open(counter, 'w') as f:
                f.write('%d' % count)
            if isinstance(fault, list):
                fault = ([x for x in fault if x.get('nth', 1) == count] or [{'nth': 0}])[0]
            if count == fault.get('nth', 1):
                if 'unreachable' in fault:
                    if fault.get('after', 'down') == 'down':
                        with open(down, 'w') as f:
                            f.write('down\n')
                    raise AnsibleConnectionFailure(fault['unreachable'])
                result = fault['result']
                return (1 if result.get('failed') else 0), json.dumps(result).encode('utf-8'), b''
        return super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)

    def _reset(self, host, how, state, down, rebooted):
        """A sysrq reset of ``host`` (never run): record it, drop the connection, reboot as ``how`` says."""
        with open(os.path.join(state, '%s.sysrq' % host), 'a') as f:
            f.write('b\n')
        if how.get('after', 'back') == 'down':
            with open(down, 'w') as f:
                f.write('down\n')
        else:
            with open(rebooted, 'w') as f:
                f.write('%f simulated-boot-%d\n' % (time.time() + how.get('seconds', 1), int(time.time() * 1000)))
        raise AnsibleConnectionFailure('Connection reset by peer (sysrq reset of %s)' % host)
