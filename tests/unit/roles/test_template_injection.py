# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile role variables: every value that lands in a unit, a boot script, a shell line or a
config file is either refused by the role's validation (meta/argument_specs.yml through
ansible's ArgumentSpecValidator, then the role's own assert tasks evaluated with ansible's
templar) or lands as exactly one intact field of the real rendered template.

Units are parsed by the rules of systemd.syntax(7) (line continuation, quoting, C escapes,
specifiers) and checked with ``systemd-analyze verify`` when it is installed; scripts run under
sh, dash and busybox sh with stub commands that record their argv, and a canary file proves that
no injected command ran.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import posixpath
import re
import shutil
import subprocess

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.snapfleet.dattobd.plugins.filter import role_values

ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'roles')

SHELLS = [[s] for s in ('sh', 'dash', 'bash') if shutil.which(s)]
if shutil.which('busybox'):
    SHELLS.append(['busybox', 'sh'])

# Values an attacker (or a typo) puts into a role variable. Each is used as a path (and, where the
# variable is not a path, as a plain value).
HOSTILE = [
    '/x\nExecStartPre=/bin/touch INJ',
    '/x\r\nExecStartPost=/bin/touch INJ',
    '/srv/a b',
    "/srv/o'brien",
    '/srv/a"b',
    '/srv/$(touch INJ)',
    '/srv/a;touch INJ;#',
    '/srv/`touch INJ`',
    '/x;touch${IFS}INJ;#',
    '/srv/50%h',
    '/srv/100%%',
    '/srv/a\tb',
    '/srv/a\x00b',
    '/srv/a\\',
    '/srv/back\\slash',
    '/srv/$HOME',
    '/srv/a\u2028b',
    '/srv/\u00fcber',
    'relative/path',
    '',
]
ENV_KEYS = ['A\nExecStartPre=/bin/touch INJ', 'A B', 'A=B', '1A', 'GOOD_NAME']
VERSIONS = ['0.12.1', '0.12.1~rc1', '1.0-2+deb', '0.12.1\n', '0.12.1;touch INJ', '0.12.1 x', '$(touch INJ)',
            '0.12.1"', "0.12.1'", '0.12', '1', '../../etc', '0.12.1/../x', '0.12.1\nExecStartPre=/bin/x']


def _ids(values):
    return [repr(v)[:40] for v in values]


# --- the role's own validation ---------------------------------------------------------------

_YAML = {}


def _yaml(*parts):
    """A role file, parsed once (callers copy before they change it)."""
    path = os.path.join(ROLES, *parts)
    if path not in _YAML:
        with open(path) as f:
            _YAML[path] = yaml.load(f, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
    return copy.deepcopy(_YAML[path])


def _trust(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((k, _trust(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


FACTS = {'os_family': 'Debian', 'distribution': 'Debian', 'distribution_release': 'bookworm',
         'distribution_major_version': '12', 'kernel': '6.1.0-28-amd64'}


def role_vars(role, **over):
    """The role's defaults and vars (trusted, as in a play) with the user's values on top (data)."""
    variables = _trust(_yaml(role, 'defaults', 'main.yml'))
    if os.path.exists(os.path.join(ROLES, role, 'vars', 'main.yml')):
        variables.update(_trust(_yaml(role, 'vars', 'main.yml')))
    variables.update(ansible_managed='Ansible managed', ansible_facts=FACTS, ansible_check_mode=False,
                     ansible_playbook_python='/usr/bin/python3')
    if role == 'engine':  # its default comes from lookup('env', 'HOME'), a controller lookup
        variables['dattobd_engine_cache_dir'] = '/home/operator/.cache/snapfleet/engine'
    if role == 'initramfs':  # found by detect.yml on the host
        variables['__dattobd_initramfs_dbdctl'] = '/usr/local/bin/dbdctl'
    variables.update(over)
    return variables


def templar(variables):
    t = Templar(loader=DataLoader(), variables=variables)
    # the collection's filters by their FQCN, as in a play (unsafe_values, systemd_quote)
    # (the engine's environment: Templar.environment is deprecated in ansible-core 2.19 and slow)
    env = t._engine.environment if hasattr(t, '_engine') else t.environment
    for name, func in role_values.FilterModule().filters().items():
        env.filters['snapfleet.dattobd.' + name] = func
    return t


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _flatten(tasks):
    """The tasks of a task file, those inside blocks included (block conditions carried down)."""
    for task in tasks:
        if 'block' in task:
            for inner in _flatten(task['block']):
                inner = dict(inner)
                inner['when'] = _as_list(task.get('when', True)) + _as_list(inner.get('when', True))
                yield inner
        else:
            yield task


def refusals(role, variables, tasks):
    """Messages of the argument spec validation and of the role's assert tasks, in play order.

    ``tasks``: (task file, task name or None for every assert of the file)."""
    spec = _yaml(role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    # as validate_argument_spec does: the values after templating (role defaults may be templates)
    t = templar(variables)
    user = dict((k, t.template(v)) for k, v in variables.items() if k in spec)
    result = ArgumentSpecValidator(spec).validate(user)
    if result.error_messages:
        return ['argument_specs: %s' % m for m in result.error_messages]
    out = []
    for taskfile, name in tasks:
        for task in _flatten(_yaml(role, 'tasks', taskfile) or []):
            if 'ansible.builtin.assert' not in task or (name and task.get('name') != name):
                continue
            scoped = dict(variables)
            scoped.update(_trust(task.get('vars') or {}))
            t = templar(scoped)
            if not all(t.evaluate_conditional(trust_as_template(str(c))) for c in _as_list(task.get('when', True))):
                continue
            for cond in _as_list(task['ansible.builtin.assert']['that']):
                if not t.evaluate_conditional(trust_as_template(cond)):
                    out.append('%s: %s' % (task['name'], cond))
    return out


def set_fact_value(role, taskfile, task_name, fact, variables):
    """Evaluate one set_fact expression of the role's tasks (the real logic, not a copy)."""
    for task in _yaml(role, 'tasks', taskfile):
        if task.get('name') == task_name:
            return templar(variables).template(trust_as_template(task['ansible.builtin.set_fact'][fact]))
    raise AssertionError('no task %r in %s' % (task_name, taskfile))


def render(role, template, variables):
    with open(os.path.join(ROLES, role, 'templates', template)) as f:
        return templar(variables).template(trust_as_template(f.read()))


# --- systemd unit syntax (systemd.syntax(7)) -------------------------------------------------

C_ESCAPES = {'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v', '\\': '\\',
             '"': '"', "'": "'", 's': ' '}


class NotIntact(Exception):
    pass


def parse_unit(text):
    """[(section, key, raw value)] of a unit file: comments dropped, continuation lines joined."""
    entries, section, pending = [], None, None
    for line in text.split('\n'):
        stripped = line.strip()
        if pending is not None:
            if stripped.startswith(('#', ';')):
                continue
            stripped = pending + ' ' + stripped
            pending = None
        elif not stripped or stripped.startswith(('#', ';')):
            continue
        if stripped.endswith('\\'):
            pending = stripped[:-1]
            continue
        if stripped.startswith('[') and stripped.endswith(']'):
            section = stripped[1:-1]
            continue
        if '=' not in stripped:
            raise NotIntact('not an assignment: %r' % stripped)
        key, value = stripped.split('=', 1)
        entries.append((section, key.strip(), value.strip()))
    if pending is not None:
        raise NotIntact('file ends in a continuation')
    return entries


def unit_words(value, command=False):
    """Split like systemd's extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE), then resolve
    %% (any other specifier, or $ on a command line, means the field is not what was written)."""
    words, word, quote, i, in_word = [], [], None, 0, False
    while i < len(value):
        c = value[i]
        if c == '\\':
            if i + 1 >= len(value):
                raise NotIntact('trailing backslash')
            n = value[i + 1]
            if n not in C_ESCAPES:
                raise NotIntact('escape \\%s' % n)
            word.append(C_ESCAPES[n])
            in_word, i = True, i + 2
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                word.append(c)
        elif c in '"\'':
            quote, in_word = c, True
        elif c in ' \t\n':
            if in_word:
                words.append(''.join(word))
            word, in_word = [], False
        else:
            word.append(c)
            in_word = True
        i += 1
    if quote:
        raise NotIntact('unterminated quote')
    if in_word:
        words.append(''.join(word))
    out = []
    for w in words:
        if re.search('%[^%]', w.replace('%%', '')) or w.replace('%%', '').endswith('%'):
            raise NotIntact('specifier in %r' % w)
        w = w.replace('%%', '%')
        if command:
            if re.search(r'\$[^$]', w.replace('$$', '')) or w.replace('$$', '').endswith('$'):
                raise NotIntact('variable in %r' % w)
            w = w.replace('$$', '$')
        out.append(w)
    return out


def test_unit_parser_control():
    """The parser itself: quoting, escapes, specifiers and continuation as systemd reads them."""
    assert unit_words('-/a "-/b c" \'d"e\' "x\\"y\\\\z" 5%%') == ['-/a', '-/b c', 'd"e', 'x"y\\z', '5%']
    assert unit_words('"$$HOME"', command=True) == ['$HOME']
    for bad in ('"a', '%h', 'a\\', '\\q'):
        with pytest.raises(NotIntact):
            unit_words(bad)
    with pytest.raises(NotIntact):
        unit_words('$HOME', command=True)
    assert parse_unit('[S]\nA=1 \\\n# c\n 2\nB=3\n') == [('S', 'A', '1  2'), ('S', 'B', '3')]


def _keys(entries):
    return [(s, k) for s, k, unused in entries]


def _field(entries, section, key):
    values = [v for s, k, v in entries if (s, k) == (section, key)]
    assert len(values) == 1, (section, key, values)
    return values[0]


def analyze_verify(tmp_path, name, text):
    """systemd-analyze verify: no unknown or invalid line (skipped where it is not installed)."""
    if not shutil.which('systemd-analyze'):
        return
    path = tmp_path / name
    path.write_text(text)
    proc = subprocess.run(['systemd-analyze', 'verify', '--man=no', str(path)], capture_output=True, text=True,
                          check=False, cwd=str(tmp_path))
    bad = [ln for ln in proc.stderr.splitlines() if name in ln and
           ('Unknown' in ln or 'nvalid' in ln or 'ignoring' in ln.lower() or 'rror' in ln)]
    assert bad == [], proc.stderr


# --- role systemd ------------------------------------------------------------------------------

SYSTEMD_CHECKS = [('validate.yml', None)]


_BASELINE = {}


def baseline(template, **over):
    """The entries of a template rendered with harmless values (computed once)."""
    key = (template, repr(sorted(over.items())))
    if key not in _BASELINE:
        _BASELINE[key] = systemd_render(template, **over)[0]
    return _BASELINE[key]


def systemd_render(template, **over):
    variables = role_vars('systemd', **over)
    problems = refusals('systemd', variables, SYSTEMD_CHECKS)
    if problems:
        return None, problems
    variables['__dattobd_systemd_backup_exec'] = set_fact_value(
        'systemd', 'main.yml', 'Set internal values', '__dattobd_systemd_backup_exec', variables)
    return parse_unit(render('systemd', template, variables)), render('systemd', template, variables)


BASE_TIMER = dict(dattobd_systemd_backup_timer=True, dattobd_systemd_backup_command=['/usr/bin/true'])


@pytest.mark.parametrize('value', HOSTILE, ids=_ids(HOSTILE))
def test_backup_read_write_paths(value, tmp_path):
    entries, text = systemd_render('backup.service.j2', dattobd_systemd_backup_read_write_paths=['/srv/backup', value],
                                   **BASE_TIMER)
    if entries is None:
        return  # refused
    baseline_entries = baseline('backup.service.j2', dattobd_systemd_backup_read_write_paths=['/srv/backup', '/y'],
                                **BASE_TIMER)
    assert _keys(entries) == _keys(baseline_entries)
    assert unit_words(_field(entries, 'Service', 'ReadWritePaths')) == [
        '-/etc/datto/dla', '-/var/lib/snapfleet', '-/srv/backup', '-' + value]
    analyze_verify(tmp_path, 'snapfleet-dattobd-backup.service', text)


ENV_CASES = [(k, 'x') for k in ENV_KEYS] + [('GOOD_NAME', v) for v in HOSTILE]


@pytest.mark.parametrize('key, value', ENV_CASES, ids=_ids(ENV_CASES))
def test_backup_environment(key, value, tmp_path):
    env = {key: value, 'OTHER': 'x'}
    entries, text = systemd_render('backup.service.j2', dattobd_systemd_backup_environment=env, **BASE_TIMER)
    if entries is None:
        return
    baseline_entries = baseline('backup.service.j2', dattobd_systemd_backup_environment={'A': '1', 'B': '2'},
                                **BASE_TIMER)
    assert _keys(entries) == _keys(baseline_entries)
    got = {}
    for s, k, v in entries:
        if (s, k) == ('Service', 'Environment'):
            words = unit_words(v)
            assert len(words) == 1, v
            name, val = words[0].split('=', 1)
            got[name] = val
    assert got == env
    analyze_verify(tmp_path, 'snapfleet-dattobd-backup.service', text)


COMMANDS = [['/usr/bin/ansible-playbook', '-i', 'localhost,', '-e', v] for v in HOSTILE] + \
    [[v, 'x'] for v in HOSTILE] + [v for v in HOSTILE if v]


@pytest.mark.parametrize('command', COMMANDS, ids=_ids(COMMANDS))
def test_backup_command(command, tmp_path):
    entries, text = systemd_render('backup.service.j2', dattobd_systemd_backup_timer=True,
                                   dattobd_systemd_backup_command=command)
    if entries is None:
        return
    baseline_entries = baseline('backup.service.j2', **BASE_TIMER)
    assert _keys(entries) == _keys(baseline_entries)
    if isinstance(command, list):
        assert unit_words(_field(entries, 'Service', 'ExecStart'), command=True) == command
    else:
        # a string is a systemd command line, used verbatim: one line, one ExecStart
        assert _field(entries, 'Service', 'ExecStart') == command.replace('%', '%%').strip()


@pytest.mark.parametrize('value', HOSTILE + ['/opt/snap fleet/run', '/opt/50%/run', '/opt/$HOME/run'],
                         ids=_ids(HOSTILE + ['/opt/snap fleet/run', '/opt/50%/run', '/opt/$HOME/run']))
def test_backup_runner(value, tmp_path):
    """Issue 18: without a command the service runs the host-local runner: its path is one intact argument."""
    entries, text = systemd_render('backup.service.j2', dattobd_systemd_backup_timer=True,
                                   dattobd_systemd_backup_runner=value)
    if entries is None:
        assert not value.startswith('/') or re.search('[\x00-\x1f\x7f-\x9f\u2028"\'\\\\]', value), value
        return
    baseline_entries = baseline('backup.service.j2', **BASE_TIMER)
    assert _keys(entries) == _keys(baseline_entries)
    assert unit_words(_field(entries, 'Service', 'ExecStart'), command=True) == [value, 'backup']
    analyze_verify(tmp_path, 'snapfleet-dattobd-backup.service', text)


@pytest.mark.parametrize('command', ['', []], ids=['empty-string', 'empty-list'])
def test_the_default_backup_command_is_the_runner(command):
    entries, problems = systemd_render('backup.service.j2', dattobd_systemd_backup_timer=True,
                                       dattobd_systemd_backup_command=command)
    assert entries is not None, problems
    assert unit_words(_field(entries, 'Service', 'ExecStart'), command=True) == [
        '/usr/local/sbin/snapfleet-dattobd', 'backup']
    entries, unused = systemd_render('backup.service.j2', dattobd_systemd_backup_timer=True,
                                     dattobd_systemd_backup_command=['/usr/bin/ansible-playbook', 'x'],
                                     dattobd_systemd_backup_runner='/bin/not-used')
    assert unit_words(_field(entries, 'Service', 'ExecStart'), command=True) == ['/usr/bin/ansible-playbook', 'x']


TIMER_VARS = ['dattobd_systemd_backup_on_calendar', 'dattobd_systemd_backup_randomized_delay',
              'dattobd_systemd_backup_timeout', 'dattobd_systemd_backup_unit_name']
TIMER_VALUES = HOSTILE + ['*-*-* 02:00:00', 'Mon %a', 'daily\\']


@pytest.mark.parametrize('var', TIMER_VARS)
@pytest.mark.parametrize('value', TIMER_VALUES, ids=_ids(TIMER_VALUES))
def test_timer_and_service_values(var, value):
    for template in ('backup.timer.j2', 'backup.service.j2'):
        entries, unused = systemd_render(template, **dict(BASE_TIMER, **{var: value}))
        if entries is None:
            return
        baseline_entries = baseline(template, **BASE_TIMER)
        assert _keys(entries) == _keys(baseline_entries)
        if var == 'dattobd_systemd_backup_on_calendar' and template == 'backup.timer.j2':
            assert _field(entries, 'Timer', 'OnCalendar').replace('%%', '%') == value.strip()
        if var == 'dattobd_systemd_backup_timeout' and template == 'backup.service.j2':
            assert _field(entries, 'Service', 'TimeoutStartSec') == value.strip()
        if var == 'dattobd_systemd_backup_randomized_delay' and template == 'backup.timer.j2':
            assert _field(entries, 'Timer', 'RandomizedDelaySec') == value.strip()


BOOT_CHECK_VARS = ['dattobd_systemd_boot_check_state_file', 'dattobd_systemd_libexec_dir', 'dattobd_systemd_python']


@pytest.mark.parametrize('var', BOOT_CHECK_VARS)
@pytest.mark.parametrize('value', HOSTILE, ids=_ids(HOSTILE))
def test_boot_check_unit(var, value, tmp_path):
    entries, text = systemd_render('boot-check.service.j2', **{var: value})
    if entries is None:
        return
    baseline_entries = baseline('boot-check.service.j2')
    assert _keys(entries) == _keys(baseline_entries)
    v = role_vars('systemd', **{var: value})
    assert unit_words(_field(entries, 'Service', 'ExecStart'), command=True) == [
        v['dattobd_systemd_python'], v['dattobd_systemd_libexec_dir'] + '/boot-check',
        '--state-file', v['dattobd_systemd_boot_check_state_file'], '--settle', '120']
    assert unit_words(_field(entries, 'Service', 'ReadWritePaths')) == [
        posixpath.dirname(v['dattobd_systemd_boot_check_state_file'])]
    analyze_verify(tmp_path, 'snapfleet-dattobd-boot-check.service', text)


@pytest.mark.parametrize('value', ['1\nExecStartPre=/bin/x', '-1', '1.5', 'x', ' 2'])
def test_boot_check_settle(value):
    entries, unused = systemd_render('boot-check.service.j2', dattobd_systemd_boot_check_settle=value)
    assert entries is None


def test_systemd_validation_refuses_the_reported_injections():
    """Issue 15, finding 2: a newline in a read-write path, an environment key or the state file."""
    for over in ({'dattobd_systemd_backup_read_write_paths': ['/srv\nExecStartPre=/bin/touch /tmp/INJ']},
                 {'dattobd_systemd_backup_environment': {'A\nExecStartPost=/bin/touch /tmp/INJ': 'x'}},
                 {'dattobd_systemd_backup_environment': {'A': 'x\nExecStartPost=/bin/touch /tmp/INJ'}},
                 {'dattobd_systemd_boot_check_state_file': '/var/lib/x\nExecStartPre=/bin/touch /tmp/INJ'}):
        variables = role_vars('systemd', **dict(BASE_TIMER, **over))
        assert refusals('systemd', variables, SYSTEMD_CHECKS), over


def test_a_path_with_a_space_is_one_read_write_path():
    entries, unused = systemd_render('backup.service.j2', dattobd_systemd_backup_read_write_paths=['/srv/my backups'],
                                     **BASE_TIMER)
    assert unit_words(_field(entries, 'Service', 'ReadWritePaths'))[-1] == '-/srv/my backups'


# --- shell scripts: stubs that record argv, a canary ------------------------------------------

RECORD = r'''
__rec() { printf 'CALL\001%s\001' "$#" >> "$STUB_LOG"; for __a in "$@"; do printf '%s\001' "$__a" >> "$STUB_LOG"; done; }
'''


def calls(path):
    """[[argv...], ...] recorded by __rec (fields separated by \\x01)."""
    if not os.path.exists(str(path)):
        return []
    with open(str(path), 'rb') as f:
        fields = f.read().decode('utf-8').split('\x01')
    out, i = [], 0
    while i < len(fields) - 1:
        assert fields[i] == 'CALL', fields
        n = int(fields[i + 1])
        out.append(fields[i + 2:i + 2 + n])
        i += 2 + n
    return out


def run_script(shell, script, tmp_path, args=(), prelude='', env_extra=None):
    """Run ``script`` under ``shell`` in ``tmp_path`` (cwd) with a stub ``touch`` that creates the canary."""
    bindir = tmp_path / 'bin'
    bindir.mkdir(exist_ok=True)
    touch = bindir / 'touch'
    touch.write_text('#!/bin/sh\n: > "$CANARY"\n')
    touch.chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (bindir, os.environ['PATH']), STUB_LOG=str(tmp_path / 'calls'),
               CANARY=str(tmp_path / 'CANARY'), LC_ALL='C.UTF-8')
    env.update(env_extra or {})
    path = tmp_path / 'script.sh'
    path.write_text(RECORD + prelude + script)
    proc = subprocess.run(shell + [str(path)] + list(args), env=env, capture_output=True, check=False,
                          cwd=str(tmp_path))
    injected = (tmp_path / 'CANARY').exists() or (tmp_path / 'INJ').exists()
    return proc, injected


INITRAMFS_CHECKS = [('validate.yml', None), ('detect.yml', 'Require dbdctl')]
HOOK_STUBS = '''
manual_add_modules() { __rec manual_add_modules "$@"; }
copy_file() { __rec copy_file "$@"; }
copy_exec() { __rec copy_exec "$@"; }
'''


def initramfs_render(template, **over):
    variables = role_vars('initramfs', **over)
    problems = refusals('initramfs', variables, INITRAMFS_CHECKS)
    if problems:
        return None
    return render('initramfs', template, variables)


@pytest.mark.parametrize('var', ['dattobd_initramfs_libexec_dir', '__dattobd_initramfs_dbdctl'])
@pytest.mark.parametrize('value', HOSTILE, ids=_ids(HOSTILE))
def test_initramfs_tools_hook(var, value, tmp_path_factory):
    text = initramfs_render('initramfs-tools-hook.j2', **{var: value})
    if text is None:
        return
    for shell in SHELLS:
        _run_hook(shell, text, var, value, tmp_path_factory.mktemp('hook'))


def _run_hook(shell, text, var, value, tmp_path):
    stubs = tmp_path / 'hook-functions'
    stubs.write_text(HOOK_STUBS)
    assert '. /usr/share/initramfs-tools/hook-functions' in text
    text = text.replace('. /usr/share/initramfs-tools/hook-functions', '. "$STUBS"')
    dest = tmp_path / 'dest'
    dest.mkdir()
    proc, injected = run_script(shell, text, tmp_path, env_extra={'DESTDIR': str(dest), 'STUBS': str(stubs)})
    assert not injected
    assert proc.returncode == 0, proc.stderr
    got = [c for c in calls(tmp_path / 'calls') if c[0] == 'copy_exec']
    libexec = value if var == 'dattobd_initramfs_libexec_dir' else '/usr/local/lib/snapfleet-dattobd'
    dbdctl = value if var == '__dattobd_initramfs_dbdctl' else '/usr/local/bin/dbdctl'
    assert ['copy_exec', dbdctl, dbdctl] in got
    assert ['copy_exec', libexec + '/snapfleet-dattobd-boot', '/sbin/snapfleet-dattobd-boot'] in got


DRACUT_STUBS = '''
inst_hook() { __rec inst_hook "$@"; }
inst_dir() { __rec inst_dir "$@"; }
inst_multiple() { __rec inst_multiple "$@"; }
inst() { __rec inst "$@"; }
inst_simple() { __rec inst_simple "$@"; }
instmods() { __rec instmods "$@"; }
'''


@pytest.mark.parametrize('var', ['dattobd_initramfs_libexec_dir', '__dattobd_initramfs_dbdctl'])
@pytest.mark.parametrize('value', HOSTILE, ids=_ids(HOSTILE))
def test_dracut_module_setup(var, value, tmp_path_factory):
    text = initramfs_render('dracut-module-setup.sh.j2', **{var: value})
    if text is None:
        return
    for shell in SHELLS:
        _run_dracut_setup(shell, text, var, value, tmp_path_factory.mktemp('dracut'))


def _run_dracut_setup(shell, text, var, value, tmp_path):
    initdir = tmp_path / 'initdir'
    initdir.mkdir()
    proc, injected = run_script(shell, text + '\ninstall\n', tmp_path, prelude=DRACUT_STUBS,
                                env_extra={'initdir': str(initdir), 'moddir': str(tmp_path)})
    assert not injected
    assert proc.returncode == 0, proc.stderr
    got = calls(tmp_path / 'calls')
    libexec = value if var == 'dattobd_initramfs_libexec_dir' else '/usr/local/lib/snapfleet-dattobd'
    dbdctl = value if var == '__dattobd_initramfs_dbdctl' else '/usr/local/bin/dbdctl'
    assert ['inst', dbdctl, dbdctl] in got
    assert ['inst_simple', libexec + '/snapfleet-dattobd-boot', '/sbin/snapfleet-dattobd-boot'] in got


@pytest.mark.parametrize('template', ['initramfs-tools-hook.j2', 'dracut-module-setup.sh.j2'])
def test_initramfs_reported_injection_does_not_run(template, tmp_path_factory):
    """Issue 15, finding 2: dattobd_initramfs_libexec_dir landed unquoted in the hook, and
    ``/x;touch${IFS}/tmp/INJ;#`` ran. It is a valid absolute path: it must arrive as one argument."""
    value = '/x;touch${IFS}INJ;#'
    text = initramfs_render(template, dattobd_initramfs_libexec_dir=value)
    assert text is not None
    run = _run_hook if template.startswith('initramfs-tools') else _run_dracut_setup
    for shell in SHELLS:
        run(shell, text, 'dattobd_initramfs_libexec_dir', value, tmp_path_factory.mktemp('reported'))


@pytest.mark.parametrize('value', ['../../etc/passwd', '6.1.0\n', '6.1 0', '$(x)', '', '6.1.0-28-amd64;x'])
def test_initramfs_kernels_are_names(value):
    variables = role_vars('initramfs', dattobd_initramfs_kernels=[value])
    assert refusals('initramfs', variables, INITRAMFS_CHECKS)


@pytest.mark.parametrize('value', HOSTILE, ids=_ids(HOSTILE))
def test_initramfs_paths_and_command(value):
    """Paths and the reboot command are checked too (they land in task arguments and file names)."""
    for var in ('dattobd_initramfs_state_dir', 'dattobd_initramfs_dbdctl_path', 'dattobd_initramfs_reboot_command'):
        variables = role_vars('initramfs', **{var: value})
        refused = refusals('initramfs', variables, INITRAMFS_CHECKS)
        ok_path = value.startswith('/') and not re.search(u'[\x00-\x1f\x7f\u2028]', value)
        if var == 'dattobd_initramfs_reboot_command':
            assert bool(refused) == bool(re.search(u'[\x00-\x1f\x7f\u2028]', value) or value.endswith('\\')), refused
        elif var == 'dattobd_initramfs_dbdctl_path' and value == '':
            assert not refused
        else:
            assert bool(refused) != ok_path, refused


# --- role engine ---------------------------------------------------------------------------------

ENGINE_CHECKS = [('validate.yml', None)]
SOURCE_CHECKS = [('source_inspect.yml', 'Check the version read from the source')]


@pytest.mark.parametrize('version', VERSIONS, ids=_ids(VERSIONS))
def test_engine_version_variable(version):
    variables = role_vars('engine', dattobd_engine_version=version)
    refused = refusals('engine', variables, ENGINE_CHECKS)
    assert bool(refused) == (re.fullmatch(r'[0-9]+(\.[0-9]+){1,3}([-~+][0-9A-Za-z.]+)?', version) is None)


@pytest.mark.parametrize('version', VERSIONS, ids=_ids(VERSIONS))
def test_engine_source_version(version, tmp_path_factory):
    """The version read from the source's dattobd.h is checked even with dattobd_engine_version empty,
    and lands intact in dkms.conf (sourced by dkms) and in the PRE_BUILD script."""
    variables = role_vars('engine', dattobd_engine_method='source', dattobd_engine_version='',
                          dattobd_engine_source='/src', __dattobd_engine_src_version=version,
                          __dattobd_engine_src_hash='0123456789abcdef' * 4)
    refused = refusals('engine', variables, ENGINE_CHECKS + SOURCE_CHECKS)
    strict = re.fullmatch(r'[0-9]+(\.[0-9]+){1,3}([-~+][0-9A-Za-z.]+)?', version) is not None
    assert bool(refused) != strict, refused
    if refused:
        return
    conf = render('engine', 'dkms.conf.j2', variables)
    for shell in SHELLS:
        tmp_path = tmp_path_factory.mktemp('engine')
        proc, injected = run_script(shell, conf + '\n__rec "$PACKAGE_VERSION" "$AUTOINSTALL"\n', tmp_path)
        assert not injected and proc.returncode == 0, proc.stderr
        assert calls(tmp_path / 'calls') == [[version, 'yes']]
        # PRE_BUILD with a kconfig cache directory of its own (the role's lives under /var/lib)
        script = render('engine', 'snapfleet-prebuild.sh.j2',
                        dict(variables, __dattobd_engine_kconfig_dir=str(tmp_path / 'kconfig' / version)))
        work = tmp_path / 'work'
        work.mkdir()
        genconfig = work / 'genconfig.sh'
        genconfig.write_text('#!/bin/sh\necho "#define KFREE_ADDR 0x1" > kernel-config.h\n')
        genconfig.chmod(0o755)
        (work / 'prebuild.sh').write_text(script)
        proc = subprocess.run(shell + ['./prebuild.sh', '6.1.0-28-amd64'], cwd=str(work), capture_output=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / 'kconfig' / version / 'kernel-config-6.1.0-28-amd64.h').is_file()


REPO_VALUES = HOSTILE + ['https://mirror.example/datto', 'https://mirror.example/a b', 'https://m.example/x\nEnabled: no',
                         'http://m.example/x"', 'ftp://m.example/x']


@pytest.mark.parametrize('value', REPO_VALUES, ids=_ids(REPO_VALUES))
def test_engine_repository_files(value):
    for distro, template, var in (('Debian', 'datto-linux-agent.sources.j2', 'dattobd_engine_repository_base_url'),
                                  ('Debian', 'datto-linux-agent.sources.j2', 'dattobd_engine_repository_codename'),
                                  ('RedHat', 'datto.repo.j2', 'dattobd_engine_repository_rpm_baseurl'),
                                  ('Suse', 'datto-zypper.repo.j2', 'dattobd_engine_repository_rpm_baseurl')):
        variables = role_vars('engine', **{var: value})
        variables['ansible_facts'] = dict(FACTS, os_family=distro)
        if refusals('engine', variables, ENGINE_CHECKS):
            continue
        variables['__dattobd_engine_apt_keyring'] = '/etc/apt/keyrings/datto.asc'
        variables['__dattobd_engine_rpm_key_url'] = 'https://m.example/key'
        text = render('engine', template, variables)
        fields = [ln for ln in text.split('\n') if ln and not ln.startswith('#')]
        harmless = 'https://m.example' if 'url' in var else 'bookworm'
        baseline = [ln for ln in render('engine', template, dict(variables, **{var: harmless})).split('\n')
                    if ln and not ln.startswith('#')]
        assert [ln.split('=')[0].split(':')[0] for ln in fields] == [ln.split('=')[0].split(':')[0] for ln in baseline]
        assert len(text.split('\n')) == len(render('engine', template, variables).split('\n'))
        if var == 'dattobd_engine_repository_codename':
            assert 'Suites: %s' % value in fields
        elif 'baseurl' in var:
            assert 'baseurl=%s' % value in fields
        else:
            assert [f for f in fields if f.startswith('URIs: %s/' % value.rstrip('/'))]


@pytest.mark.parametrize('value', HOSTILE, ids=_ids(HOSTILE))
def test_engine_autoinstall_unit(value, tmp_path):
    """The dkms found on the host (command -v) is one word of ExecStart."""
    variables = role_vars('engine', __dattobd_engine_dkms_which={'stdout': value + '\n'})
    refused = refusals('engine', variables, [('kernel_upgrade.yml', 'Check the dkms path')])
    if refused:
        return
    variables['__dattobd_engine_dkms_bin'] = value
    text = render('engine', 'snapfleet-dattobd-autoinstall.service.j2', variables)
    words = unit_words(_field(parse_unit(text), 'Service', 'ExecStart').replace('%v', '%%v'), command=True)
    assert words == [value, 'autoinstall', '-k', '%v']
    analyze_verify(tmp_path, 'snapfleet-dattobd-autoinstall.service', text)
