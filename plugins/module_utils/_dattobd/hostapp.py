# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host-local runner as one file, and the ``runner`` module that installs it (``cli.py`` is the runner).

:func:`build` makes a Python zipapp of the library files ``cli.py`` needs (its relative imports,
followed through the library: :func:`closure`), read from the package this file was loaded from
(on a host, the module's own payload: the module imports this file, so it carries them all). The
archive holds them under their full package path, empty ``__init__.py`` files for the packages
above, and a ``__main__.py`` that calls :func:`cli.main`; it starts with a ``#!<python> -I`` line
(isolated: no ``PYTHON*`` variable, no user site). It is byte-for-byte the same for the same
library and interpreter (fixed order and time stamps, stored), so installing it again changes
nothing. Nothing in it imports Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import errno
import hashlib
import io
import json
import os
import pkgutil
import re
import stat
import sys
import zipfile

from . import cli
from .errors import DattobdError
from .fileutil import atomic_write

PACKAGE = 'ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd'
ENTRY = 'cli'
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MAIN = ('# -*- coding: utf-8 -*-\n'
        '# snapfleet-dattobd: the host-local runner of the snapfleet.dattobd collection (built by its runner module).\n'
        'import sys\n\n'
        'from %s import cli\n\n'
        'if __name__ == "__main__":\n'
        '    sys.exit(cli.main())\n' % PACKAGE)
# an interpreter path a #! line can carry: no whitespace, no control characters, no quotes
PYTHON_PATH = re.compile(r'\A/[A-Za-z0-9_.+@,:/-]{1,254}\Z')


def library_source(name):
    """Source bytes of library file ``name`` (``cli`` -> cli.py) from the package this file came from."""
    try:
        data = pkgutil.get_data(__package__ or PACKAGE, name + '.py')
    except (OSError, IOError, ImportError) as exc:
        data = None
        why = str(exc)
    else:
        why = 'not found'
    if data is None:
        raise DattobdError('The library file %s.py is missing from the module payload (%s).' % (name, why),
                           hint='Reinstall the snapfleet.dattobd collection.')
    return data


def imports_of(source):
    """Library files a source imports (``from . import x``, ``from .x import y``, also inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module.split('.')[0]] if node.module else [a.name for a in node.names])
    return out


def closure(read=library_source, start=ENTRY):
    """``{name: source}`` of ``start`` and every library file it needs, directly or not."""
    found, todo = {}, [start]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = read(name)
        todo.extend(sorted(imports_of(found[name]) - set(found)))
    return found


def _entry(name, data):
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_STORED
    return info, data


def build(python, read=library_source):
    """The runner's bytes: ``#!<python> -I``, then the zip of the library files it needs."""
    if not isinstance(python, str) or not PYTHON_PATH.match(python):
        raise DattobdError('python must be an absolute path without spaces, quotes or control characters, got %r.'
                           % (python,))
    sources = closure(read)
    parts = PACKAGE.split('.')
    entries = [_entry('/'.join(parts[:i]) + '/__init__.py', b'') for i in range(1, len(parts))]
    entries.append(_entry('/'.join(parts) + '/__init__.py', b''))
    entries.extend(_entry('/'.join(parts) + '/%s.py' % name, sources[name]) for name in sorted(sources))
    entries.append(_entry('__main__.py', MAIN.encode('utf-8')))
    buf = io.BytesIO()
    buf.write(('#!%s -I\n' % python).encode('utf-8'))
    with zipfile.ZipFile(buf, 'w') as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buf.getvalue()


# --- the runner module ---------------------------------------------------------------------------

def argument_spec():
    """The ``runner`` module's argument spec (its DOCUMENTATION says the same)."""
    return dict(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        path=dict(type='path', default=cli.DEFAULT_PATH),
        config=dict(type='path', default=cli.DEFAULT_CONFIG),
        volumes=dict(type='list', elements='dict', default=[]),
        defaults=dict(type='dict', default={}),
        python=dict(type='path'),
        ping_url=dict(type='str', no_log=True),
    )


def _current(path):
    """``(bytes or None, lstat or None)`` of ``path``; a directory there is refused."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, None
        raise
    if stat.S_ISDIR(st.st_mode):
        raise DattobdError('%s is a directory.' % path, hint='Move it away or choose another path.')
    if not stat.S_ISREG(st.st_mode):
        return None, st
    with open(path, 'rb') as handle:
        return handle.read(), st


def _sha256(data):
    return hashlib.sha256(data).hexdigest() if data is not None else None


class _File(object):
    """One file the module keeps: wanted bytes and mode, owned by the module's user (root)."""

    def __init__(self, path, data, mode, dir_mode, what):
        self.path, self.data, self.mode, self.dir_mode, self.what = path, data, mode, dir_mode, what
        self.before, self.st = _current(path)

    def plan(self):
        """The actions that make the file what is wanted (none when it is)."""
        directory = os.path.dirname(self.path)
        actions = []
        if not os.path.isdir(directory):
            actions.append('create directory %s (mode %04o)' % (directory, self.dir_mode))
        elif self.dir_mode == 0o700 and stat.S_IMODE(os.stat(directory).st_mode) != 0o700:
            actions.append('chmod %04o %s' % (self.dir_mode, directory))
        if self.st is None or not stat.S_ISREG(self.st.st_mode) or self.before != self.data:
            actions.append('write %s (%s, %d bytes, sha256 %s, mode %04o)'
                           % (self.path, self.what, len(self.data), _sha256(self.data), self.mode))
            return actions
        if stat.S_IMODE(self.st.st_mode) != self.mode:
            actions.append('chmod %04o %s' % (self.mode, self.path))
        if (self.st.st_uid, self.st.st_gid) != (os.geteuid(), os.getegid()):
            actions.append('chown %d:%d %s' % (os.geteuid(), os.getegid(), self.path))
        return actions

    def apply(self, actions):
        directory = os.path.dirname(self.path)
        for action in actions:
            if action.startswith('chmod') and action.endswith(' ' + directory):
                os.chmod(directory, self.dir_mode)
            elif action.startswith('write '):
                atomic_write(self.path, self.data, mode=self.mode, dir_mode=self.dir_mode)
                os.chmod(self.path, self.mode)  # whatever the umask
            elif action.startswith('chmod'):
                os.chmod(self.path, self.mode)
            elif action.startswith('chown'):
                os.chown(self.path, os.geteuid(), os.getegid())


def _check_path(name, value):
    if not isinstance(value, str) or not os.path.isabs(value) or '\0' in value or value.endswith('/'):
        raise DattobdError('%s must be an absolute file path, got %r.' % (name, value))


def prepare(p, read=library_source):
    """State present, planned: ``(files, plans)``, the runner and its configuration with the actions that make
    each as wanted (none when it is). Validates everything and writes nothing: a bad configuration raises
    :class:`DattobdError`."""
    _check_path('path', p['path'])
    _check_path('config', p['config'])
    try:
        defaults = dict(p.get('defaults') or {})
        if p.get('ping_url'):  # an option of its own: not logged, unlike the other defaults
            defaults['ping_url'] = p['ping_url']
        config = cli.render_config(defaults, p.get('volumes'))
    except cli.Refused as exc:
        raise DattobdError('The runner configuration is invalid: %s' % exc.msg,
                           hint='Fix the volume (the backup role: dattobd_backup_volumes); nothing was written.')
    app = build(p.get('python') or sys.executable, read)
    files = [_File(p['path'], app, 0o755, 0o755, 'zipapp'), _File(p['config'], config, 0o600, 0o700, 'configuration')]
    return files, [f.plan() for f in files]


def install(p, check_mode=False, read=library_source, prepared=None):
    """State present: the runner and its configuration as wanted (``prepared``: :func:`prepare` of ``p``, done
    earlier). Returns the module result."""
    files, plans = prepared or prepare(p, read)
    actions = [a for plan in plans for a in plan]
    if not check_mode:
        for f, plan in zip(files, plans):
            f.apply(plan)
    config = files[1].data
    return dict(changed=bool(actions), actions=actions, path=p['path'], config=p['config'], sha256=_sha256(files[0].data),
                volumes=[v['name'] for v in cli.check_config(json.loads(config.decode('utf-8')))], diff=_diff(files))


def _diff(files, after=True):
    out = []
    for f in files:
        if f.what == 'configuration':
            before = f.before.decode('utf-8', 'replace') if f.before is not None else ''
            out.append(dict(before_header=f.path, after_header=f.path, before=before,
                            after=f.data.decode('utf-8') if after else ''))
        else:
            out.append(dict(before_header=f.path, after_header=f.path,
                            before='sha256 %s\n' % _sha256(f.before) if f.before is not None else '',
                            after='sha256 %s\n' % _sha256(f.data) if after else ''))
    return out


def remove(p, check_mode=False):
    """State absent: no runner, no configuration (its directory too when empty)."""
    _check_path('path', p['path'])
    _check_path('config', p['config'])
    files = []
    for path in (p['path'], p['config']):
        f = _File(path, b'', 0, 0, 'configuration' if path == p['config'] else 'zipapp')
        if f.st is not None:
            files.append(f)
    actions = ['remove %s' % f.path for f in files]
    directory = os.path.dirname(p['config'])
    try:
        left = set(os.listdir(directory)) - set(os.path.basename(f.path) for f in files if f.path == p['config'])
    except OSError:
        left = None  # not there
    if left == set():
        actions.append('remove directory %s' % directory)
    if not check_mode:
        for f in files:
            os.unlink(f.path)
        if left == set():
            os.rmdir(directory)
    return dict(changed=bool(actions), actions=actions, path=p['path'], config=p['config'], sha256=None,
                volumes=[], diff=_diff(files, after=False))


UNEXPECTED = dict(msg='Installing the host-local runner failed: %s',
                  hint='Check the paths of the runner and its configuration, then run again.')


def module_runner(module):
    """The ``runner`` module's work on its validated ``module.params``."""
    if module.params['state'] == 'absent':
        return remove(module.params, module.check_mode)
    return install(module.params, module.check_mode)
