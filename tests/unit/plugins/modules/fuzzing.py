# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a module's ``main()`` with generated arguments in a sandbox root with no driver.

Shared by tests/unit/plugins/modules/test_fuzz_modules.py (a few hundred cases per module in the
test command) and benchmarks/fuzz_modules.py (10,000 per module). While ``main()`` runs:

* no command can run: ``subprocess.Popen`` of the library's runner raises ENOENT (a tool that is not
  installed), ``AnsibleModule.run_command`` returns 127 and ``get_bin_path`` finds nothing;
* every write (``open`` for writing, ``os.open`` with a write flag, mkdir, rename, unlink, chmod...)
  whose target is outside the sandbox is refused with EACCES and counted;
* the paths the library reads or writes on a real host (/proc/datto-info, /sys/module/dattobd,
  /dev/datto<N>, /etc/datto/dla, the backup state directory...) point into the sandbox;
* the working directory is the sandbox, so a relative path lands there.

A run ends in ``exit_json`` or ``fail_json`` (both raise :class:`Outcome`); anything else escaping
``main()`` is a traceback.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import builtins
import errno
import io
import os
import time
import traceback

from hypothesis import strategies as st

from ansible.module_utils import basic
from ansible.module_utils.common import warnings as warnings_mod
from ansible.module_utils.testing import patch_module_args

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import (
    backup_record, boot_state, cli, dbdctl, dkms, dkms_facts, host_status, metrics as metrics_lib, procinfo, reload as reload_lib,
    runner, sync as sync_lib, tracker)
from ansible_collections.snapfleet.dattobd.plugins.modules import backup, engine, info, snapshot, sync
from ansible_collections.snapfleet.dattobd.plugins.modules import runner as runner_module

MODULES = {'backup': backup, 'engine': engine, 'info': info, 'snapshot': snapshot, 'sync': sync,
           'runner': runner_module}

# --- generated arguments ------------------------------------------------------------------------

ROOT = '{root}'
PATHS = [ROOT + p for p in ('/img/vdb.img', '/img', '/img/', '/state', '/file', '/missing/x', '/img/new\nline.img',
                            '/img/a b.img', '/img/../file', '/cow', '/etc/datto/dla', '/dev/datto1', '/sbin/dbdctl')]
# Absolute paths stay inside the sandbox: a module writes where a (valid) task tells it to. A run
# REJECTED later that still wrote there (a state_dir created before the device check) is the
# validate-then-act defect of the backup cycle, tested by its own sandbox listing tests.
PATHS += ['relative/x.img', 'x', '.', '..', '', '~/x', '-rf', '\n', ROOT + '/nonexistent/x.img',
          ROOT + u'/t\u00e9st/\u0661']
NUMBERS = ['0', '1', '-1', '60', u'\u00b2', u'\u0661', u'\uff11\uff12', '1e3', ' 5', '0x10', '1.5', '007',
           '99999999999999999999999', '', 'nan']

FLOATS = [0.5, -1.0, 1e300, float('inf'), float('-inf'), float('nan')]
DECIMALS = ['0.1', '0', '30', '-0.5', '1e3', '1e400', 'inf', u'\u0660.\u0661', '.5', '1_0']
BIG = [0, 1, -1, 255, 256, 2 ** 31, 2 ** 63, -(2 ** 63), 2 ** 70]
TEXT = [u'', u' ', u'\n', u'a\nb', u'$(id)', u'`id`', u'; rm -rf /', u'%s', u'{minor}', u'\u00e9\u0661', u'\x00',
        u'\U0001f600', u'a' * 300]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.sampled_from(BIG),
    st.sampled_from(FLOATS), st.sampled_from(NUMBERS), st.sampled_from(PATHS), st.sampled_from(TEXT),
    st.text(max_size=8),
)
anything = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=4), scalars, max_size=2))

# The kind of each option: the same value pools feed Hypothesis (the test) and random (the benchmark).
KINDS = {
    'info': dict(reload_dir='path', dkms='bool', timeout='int', dbdctl_path='path',
                 cow_name='choice:.datto_{minor}_{seq},{x},a/b', backup_state_dir='path'),
    'engine': dict(state='choice:present,absent', version='choice:0.12.1,0.11.0,1', source_dir='path',
                   kernels='choice:running,all',
                   parameters='dict:max_snap_devices,cow_max_memory_default,cow_fallocate_percentage_default,debug',
                   load='bool', persist='bool', reload='bool', force='bool', build_timeout='int', timeout='int',
                   dbdctl_path='path', kernel_gate='choice:report,hold,default,reboot', allow_conflicts='bool'),
    'snapshot': dict(device='path', state='choice:snapshot,incremental,absent', minor='int', cow_file='path',
                     cow_dir='path', cow_name='choice:.datto_{minor}_{seq},{x},a/b', cache_size='int',
                     fallocate='int', auto_expand='dict:step_size,reserved_space', persist='bool', reload_dir='path',
                     recover='choice:fail,rebaseline', timeout='int', dbdctl_path='path', cleanup='bool',
                     backup_state_dir='path', release_holders='bool'),
    'sync': dict(snapshot='choice:1,/dev/datto1,{root}/dev/datto1', cow_file='path', image='path',
                 engine='choice:python,upstream', verify='choice:none,changed,full', adopt='bool', timeout='int',
                 update_img_path='path', read_depth='int'),
    'backup': dict(device='path', image='path', name='str', cow_dir='path', cow_name='str', minor='int',
                   cache_size='int', fallocate='int', verify='choice:none,changed,full', full='bool',
                   pre_hooks='hooks', post_hooks='hooks', verify_hooks='hooks', persist='bool',
                   sparse='choice:filesystem,zeros', after_reboot='choice:metadata,full,none',
                   check_free_space='bool', state_dir='path', boot_check_path='path', run_boot_id='str', timeout='int',
                   dbdctl_path='path', verify_sample_budget='float', verify_sample_min='int',
                   verify_sample_max='int', verify_sample_seed='int', full_verify_every_cycles='int',
                   full_verify_every_days='float', read_depth='int', metrics='bool', metrics_dir='path',
                   rebaseline='choice:compare,full', retention='int', retention_method='choice:auto,reflink,copy',
                   retention_full_copies='int', retention_timeout='int', volumes='volumes', ping_url='str',
                   create_dirs='bool', status='bool', runner='dict:state,path,config,python'),
    'runner': dict(state='choice:present,absent', path='path', config='path', volumes='runner_volumes',
                   defaults='dict:timeout,minor,read_depth', python='path', ping_url='str'),
}
# An element of the backup module's ``volumes``: its options and their kinds (device and image usually set).
VOLUME_KINDS = dict((k, KINDS['backup'][k]) for k in (
    'device', 'image', 'name', 'minor', 'verify', 'full', 'pre_hooks', 'verify_sample_budget', 'sparse', 'retention',
    'retention_method', 'retention_full_copies'))
VOLUME_KINDS['group'] = 'choice:db,db,a b,' + 'g' * 65  # an element's own option (no top-level one)
# The options a real task usually sets: present more often so that runs get past the basic checks.
LIKELY = {'sync': ('snapshot', 'cow_file', 'image'), 'backup': ('device', 'image'), 'snapshot': ('device',),
          'engine': ('version',), 'info': (), 'runner': ('volumes',)}


def _strategy(kind):
    if kind == 'path':
        return st.one_of(st.sampled_from(PATHS), st.sampled_from(PATHS), anything)
    if kind == 'int':
        return st.one_of(st.integers(min_value=-5, max_value=300), st.sampled_from(NUMBERS), anything)
    if kind == 'float':
        return st.one_of(st.floats(min_value=-2, max_value=2), st.sampled_from(FLOATS + DECIMALS + NUMBERS), anything)
    if kind == 'bool':
        return st.one_of(st.booleans(), st.sampled_from(['yes', 'no', 'maybe', 1, 0, 2]), anything)
    if kind == 'str':
        return st.one_of(st.sampled_from(TEXT + NUMBERS + PATHS), anything)
    if kind.startswith('choice:'):
        return st.one_of(st.sampled_from(kind[7:].split(',')), st.sampled_from(kind[7:].split(',')), anything)
    if kind.startswith('dict:'):
        keys = kind[5:].split(',')
        return st.one_of(st.fixed_dictionaries({keys[0]: _strategy('int')},
                                               optional=dict((k, _strategy('int')) for k in keys[1:])), anything)
    if kind == 'volumes':
        element = st.one_of(st.fixed_dictionaries(
            {'device': _strategy('path'), 'image': _strategy('path')},
            optional=dict((k, _strategy(v)) for k, v in VOLUME_KINDS.items() if k not in ('device', 'image'))),
            anything)
        return st.one_of(st.lists(element, max_size=3), anything)
    if kind == 'runner_volumes':  # a configured volume of the host-local runner: any backup option
        one = st.fixed_dictionaries({'device': _strategy('path'), 'image': _strategy('path')},
                                    optional={'verify': _strategy('choice:none,changed,full'), 'timeout': _strategy('int'),
                                              'pre_hooks': _strategy('hooks'), 'name': _strategy('str'),
                                              'group': _strategy('choice:db,a b')})
        return st.one_of(st.lists(st.one_of(one, anything), max_size=2), anything)
    if kind == 'hooks':
        hook = st.one_of(st.fixed_dictionaries({'argv': st.lists(st.sampled_from(TEXT + PATHS), max_size=3)},
                                               optional={'timeout': _strategy('int')}), anything)
        return st.one_of(st.lists(hook, max_size=2), anything)
    raise ValueError(kind)


def arguments(name):
    """Hypothesis strategy of (module arguments, check_mode) for module ``name``; options may be missing."""
    spec = dict((k, _strategy(v)) for k, v in KINDS[name].items())
    required = dict((k, v) for k, v in spec.items() if k in LIKELY[name])
    optional = dict((k, v) for k, v in spec.items() if k not in LIKELY[name])
    likely = st.fixed_dictionaries(required, optional=optional)
    sparse = st.fixed_dictionaries({}, optional=spec)
    return st.tuples(st.one_of(likely, likely, sparse), st.booleans())


def _random_scalar(rng):
    pick = rng.randrange(9)
    if pick == 0:
        return rng.choice([None, True, False])
    if pick == 1:
        return rng.randint(-(2 ** 70), 2 ** 70)
    if pick == 2:
        return rng.choice(BIG)
    if pick == 3:
        return rng.choice(FLOATS)
    if pick == 4:
        return rng.choice(NUMBERS)
    if pick in (5, 6):
        return rng.choice(PATHS)
    if pick == 7:
        return rng.choice(TEXT)
    return u''.join(rng.choice(u'a0 /\n\t$`\'"\u0661\u00b2\u00e9\U0001f600.-') for dummy in range(rng.randrange(8)))


def _random_anything(rng):
    pick = rng.randrange(6)
    if pick == 0:
        return [_random_scalar(rng) for dummy in range(rng.randrange(3))]
    if pick == 1:
        return dict((rng.choice(TEXT[:6]), _random_scalar(rng))
                    for dummy in range(rng.randrange(3)))
    return _random_scalar(rng)


def _random_value(kind, rng):
    if rng.random() < 0.15:
        return _random_anything(rng)
    if kind == 'path':
        return rng.choice(PATHS)
    if kind == 'int':
        return rng.choice([rng.randint(-5, 300), rng.choice(NUMBERS)])
    if kind == 'float':
        return rng.choice([rng.uniform(-2, 2), rng.choice(FLOATS + DECIMALS + NUMBERS)])
    if kind == 'bool':
        return rng.choice([True, False, 'yes', 'no', 'maybe', 1, 0, 2])
    if kind == 'str':
        return rng.choice(TEXT + NUMBERS + PATHS)
    if kind.startswith('choice:'):
        return rng.choice(kind[7:].split(','))
    if kind.startswith('dict:'):
        keys = kind[5:].split(',')
        out = {keys[0]: _random_value('int', rng)}
        out.update((k, _random_value('int', rng)) for k in keys[1:] if rng.random() < 0.5)
        return out
    if kind == 'volumes':
        return [dict(device=_random_value('path', rng), image=_random_value('path', rng),
                     pre_hooks=_random_value('hooks', rng)) for dummy in range(rng.randrange(3))]
    if kind == 'hooks':
        return [{'argv': [rng.choice(TEXT + PATHS) for dummy in range(rng.randrange(4))]}
                for dummy in range(rng.randrange(3))]
    if kind == 'volumes':
        return [dict((k, _random_value(v, rng)) for k, v in VOLUME_KINDS.items()
                     if k in ('device', 'image') or rng.random() < 0.3) for dummy in range(rng.randrange(4))]
    raise ValueError(kind)


def random_arguments(name, rng):
    """(module arguments, check_mode) drawn with ``random.Random`` from the same pools (fast)."""
    args = {}
    sparse = rng.random() < 0.15
    for option, kind in sorted(KINDS[name].items()):
        wanted = 0.3 if sparse else (0.95 if option in LIKELY[name] else 0.4)
        if rng.random() < wanted:
            args[option] = _random_value(kind, rng)
    return args, rng.random() < 0.5


# --- the sandbox --------------------------------------------------------------------------------

class Outcome(Exception):
    def __init__(self, kind, result):
        super(Outcome, self).__init__(kind)
        self.kind = kind
        self.result = result


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _substitute(value, root):
    if isinstance(value, str):
        return value.replace(ROOT, root)
    if isinstance(value, list):
        return [_substitute(v, root) for v in value]
    if isinstance(value, dict):
        return dict((k, _substitute(v, root)) for k, v in value.items())
    return value


class Sandbox(object):
    """A root folder standing in for the host; counts writes that try to leave it."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.outside = []
        self.commands = []
        for d in ('img', 'state', 'etc/datto/dla', 'sys/module', 'dev', 'proc', 'cwd', 'sbin'):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        with open(os.path.join(self.root, 'file'), 'w') as f:
            f.write('a regular file\n')
        with open(os.path.join(self.root, 'img', 'vdb.img'), 'wb') as f:
            f.write(b'\0' * 65536)
        with open(os.path.join(self.root, 'cow'), 'wb') as f:
            f.write(b'\0' * 8192)
        self._saved = []

    def inside(self, path):
        if isinstance(path, int):
            return True  # a file descriptor opened earlier (and checked then)
        try:
            p = os.fsdecode(path)
        except TypeError:
            return True  # not a path: the real call raises TypeError itself
        if '\0' in p:
            return True  # the real call raises ValueError before touching anything
        real = os.path.realpath(os.path.join(os.getcwd(), p))
        return real == self.root or real.startswith(self.root + os.sep)

    def _refuse(self, what, path):
        self.outside.append('%s %r' % (what, path))
        raise OSError(errno.EACCES, 'write outside the fuzz sandbox refused', os.fsdecode(path) if not isinstance(path, int) else path)

    # -- guards --
    def _guard_open(self, real):
        sandbox = self

        def guarded(file, mode='r', *a, **k):
            if any(c in mode for c in 'wax+') and not sandbox.inside(file):
                sandbox._refuse('open(%s)' % mode, file)
            return real(file, mode, *a, **k)
        return guarded

    def _guard_os_open(self, real):
        sandbox = self

        def guarded(path, flags, *a, **k):
            if flags & _WRITE_FLAGS and not sandbox.inside(path):
                sandbox._refuse('os.open', path)
            return real(path, flags, *a, **k)
        return guarded

    def _guard_paths(self, name, real, count=1):
        sandbox = self

        def guarded(*a, **k):
            for p in a[:count]:
                if not sandbox.inside(p):
                    sandbox._refuse('os.%s' % name, p)
            return real(*a, **k)
        return guarded

    def _no_command(self, *a, **k):
        self.commands.append(a[0] if a else k.get('args'))
        raise OSError(errno.ENOENT, 'no command runs in the fuzz sandbox')

    def _set(self, obj, attr, value):
        self._saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def __enter__(self):
        r = self.root
        self._cwd = os.getcwd()
        os.chdir(os.path.join(r, 'cwd'))
        self._set(builtins, 'open', self._guard_open(builtins.open))
        self._set(io, 'open', builtins.open)
        self._set(os, 'open', self._guard_os_open(os.open))
        for name in ('mkdir', 'rmdir', 'unlink', 'remove', 'chmod', 'chown', 'lchown', 'utime', 'truncate',
                     'mknod', 'mkfifo', 'setxattr', 'removexattr'):
            if hasattr(os, name):
                self._set(os, name, self._guard_paths(name, getattr(os, name)))
        for name in ('rename', 'replace', 'link', 'symlink'):
            self._set(os, name, self._guard_paths(name, getattr(os, name), count=2))
        for name in ('system', 'execv', 'execve', 'execvp', 'execvpe', 'spawnv', 'spawnve', 'posix_spawn',
                     'posix_spawnp', 'fork', 'popen'):
            if hasattr(os, name):
                self._set(os, name, self._no_command)
        self._set(runner.subprocess, 'Popen', self._no_command)
        self._set(basic.AnsibleModule, 'run_command', lambda mod, *a, **k: (self.commands.append(a[0] if a else None)
                                                                            or (127, '', 'not found in the sandbox')))
        self._set(basic.AnsibleModule, 'get_bin_path', lambda mod, arg, required=False, opt_dirs=None:
                  mod.fail_json(msg='%s not found (fuzz sandbox)' % arg) if required else None)
        self._set(basic.AnsibleModule, 'exit_json', lambda mod, **kw: _raise(Outcome('exit_json', kw)))
        self._set(basic.AnsibleModule, 'fail_json', lambda mod, msg='', **kw: _raise(Outcome('fail_json', dict(kw, msg=msg))))
        self._set(basic.AnsibleModule, 'log', lambda mod, *a, **k: None)
        self._set(time, 'sleep', lambda s: None)
        internal = getattr(__import__('ansible.module_utils', fromlist=['_internal']), '_internal', None)
        if internal is not None and hasattr(internal, 'is_controller'):
            self._set(internal, 'is_controller', False)  # module code: warnings stay module warnings
        # the host paths of the library, inside the sandbox
        self._set(procinfo, 'PROC_PATH', r + '/proc/datto-info')
        self._set(procinfo, 'MAX_SNAP_DEVICES_PATH', r + '/sys/module/dattobd/parameters/max_snap_devices')
        self._set(dbdctl, 'VERSION_PATH', r + '/sys/module/dattobd/version')
        self._set(host_status, 'PARAMS_DIR', r + '/sys/module/dattobd/parameters')
        self._set(sync_lib, 'SNAPSHOT_DEVICE', r + '/dev/datto%d')
        self._set(tracker, 'DEFAULT_CACHE_PARAM', r + '/sys/module/dattobd/parameters/cow_max_memory_default')
        self._set(reload_lib, 'DEFAULT_DIR', r + '/etc/datto/dla')
        self._set(backup_record, 'DEFAULT_STATE_DIR', r + '/state/backups')
        self._set(cli, 'DEFAULT_PATH', r + '/sbin/snapfleet-dattobd')
        self._set(cli, 'DEFAULT_CONFIG', r + '/etc/snapfleet/dattobd/backup.json')
        self._set(boot_state, 'BOOT_CHECK_PATH', r + '/state/boot-check.json')
        self._set(boot_state, 'BOOT_ID_PATH', r + '/proc/boot_id')
        self._set(metrics_lib, 'DEFAULT_DIR', r + '/var/lib/prometheus/node-exporter')
        for attr in ('MODPROBE_CONF', 'MODULES_LOAD_CONF', 'SYS_MODULE', 'DKMS_TREE', 'TOOLS_VERSION_FILE'):
            for mod in (dkms, dkms_facts):  # dkms_facts defines them, dkms uses them too
                self._set(mod, attr, r + getattr(mod, attr))
        return self

    def __exit__(self, *exc):
        while self._saved:
            obj, attr, value = self._saved.pop()
            setattr(obj, attr, value)
        os.chdir(self._cwd)
        return False

    def run(self, name, args, check_mode=False):
        """('exit_json' | 'fail_json' | 'traceback', result or traceback text) of one run."""
        args = _substitute(dict(args), self.root)
        if check_mode:
            args['_ansible_check_mode'] = True
        warnings_mod._global_warnings = type(warnings_mod._global_warnings)()
        with patch_module_args(args):
            try:
                MODULES[name].main()
            except Outcome as out:
                return out.kind, out.result
            except BaseException:  # pylint: disable=broad-except
                return 'traceback', traceback.format_exc()
        return 'traceback', 'main() returned without exit_json or fail_json'


def _raise(exc):
    raise exc


WATCHED = ('/etc/datto', '/var/lib/snapfleet', '/etc/modprobe.d', '/etc/modules-load.d', '/var/lib/dkms')


def listing(paths=WATCHED):
    """Names (and sizes) under the real host paths a module could write to, and in the working
    directory of the process, to compare before/after."""
    out = set()
    for top in tuple(paths) + (os.getcwd(),):
        if not os.path.isdir(top):
            continue
        for name in os.listdir(top):
            p = os.path.join(top, name)
            try:
                out.add((p, os.lstat(p).st_size if not os.path.isdir(p) else -1))
            except OSError:
                pass
    return out
