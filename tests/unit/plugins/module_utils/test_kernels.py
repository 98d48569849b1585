# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel upgrade gate: parsers on real command output (tests/fixtures/kernels/README.md says where
each sample came from), the per-kernel report on a temporary host tree, and the gate's commands."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import dkms, kernels
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

from ...conftest import FIXTURES

KDIR = os.path.join(FIXTURES, 'kernels')


def fixture(name):
    with open(os.path.join(KDIR, name)) as f:
        return f.read()


MODINFO_OK = fixture('modinfo-k.ok.txt')
MODINFO_MISMATCH = fixture('modinfo-k.vermagic-mismatch.txt')
MODINFO_MISSING = fixture('modinfo-k.missing.txt')
K57, K58, K612, K9 = '6.1.0-57-amd64', '6.1.0-58-amd64', '6.12.57+deb12-amd64', '6.1.0-9-amd64'


# --- parsers ---------------------------------------------------------------------------------

def test_version_sort_matches_grub_mkconfig_order():
    # grub-mkconfig (10_linux, version_sort -r) listed them in this order in the real grub.cfg.
    dummy, entries = kernels.parse_grub_cfg(fixture('grub.cfg.debian12-4-kernels'))
    order = [e['kernel'] for e in entries if e['kind'] == 'menuentry' and e['submenu'] is not None and not e['recovery']]
    assert order == [K612, K58, K57, K9]
    assert sorted([K9, K57, K612, K58], key=kernels._SortKey) == list(reversed(order))
    assert kernels.newest([K9, K57, K58]) == K58
    assert kernels.version_cmp('6.1.0-9-amd64', '6.1.0-10-amd64') < 0
    assert kernels.version_cmp('1.0~rc1', '1.0') < 0
    assert kernels.version_cmp('6.1.0-57-amd64', '6.1.0-57-amd64') == 0
    assert kernels.newest([]) is None


def test_parse_modinfo_real_output():
    f = kernels.parse_modinfo(MODINFO_OK)
    assert f['filename'] == '/lib/modules/6.1.0-57-amd64/updates/dkms/dattobd.ko'
    assert f['version'] == '0.12.1'
    assert f['vermagic'].split()[0] == K57
    assert f['parm'].startswith('may_hook_syscalls')  # first of several parm lines
    assert 'filename' not in kernels.parse_modinfo(MODINFO_MISSING)


def test_parse_grub_cfg_image_and_default():
    default, entries = kernels.parse_grub_cfg(fixture('grub.cfg.debian12-image'))
    assert default == '0'
    top = [e for e in entries if e['submenu'] is None]
    assert [e['kind'] for e in top] == ['menuentry', 'submenu']
    assert top[0]['kernel'] == K57 and top[0]['title'] == 'Debian GNU/Linux'
    assert top[1]['id'] == 'gnulinux-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b'
    assert kernels.resolve_grub(default, entries, {}) == K57
    default, dummy = kernels.parse_grub_cfg(fixture('grub.cfg.debian12-4-kernels-saved'))
    assert default == '${saved_entry}'


@pytest.mark.parametrize('cfg, env, expected', [
    ('grub.cfg.debian12-4-kernels', '', K612),                                  # default 0: newest
    ('grub.cfg.debian12-4-kernels', 'grub-editenv-list.saved.txt', K612),       # saved_entry ignored
    ('grub.cfg.debian12-4-kernels-saved', 'grub-editenv-list.saved.txt', K57),  # ids path
    ('grub.cfg.debian12-4-kernels-saved', '', K612),                            # saved, none set: 0
    ('grub.cfg.debian12-4-kernels-saved', 'grub-editenv-list.next.txt', K58),   # next_entry=2: entry index 2?
])
def test_resolve_grub_real_env(cfg, env, expected):
    default, entries = kernels.parse_grub_cfg(fixture(cfg))
    genv = kernels.parse_grubenv(fixture(env)) if env else {}
    got = kernels.resolve_grub(default, entries, genv)
    if env == 'grub-editenv-list.next.txt':
        # next_entry=2 names the third top-level item; this grub.cfg has two (entry, submenu): unknown.
        assert got is None
    else:
        assert got == expected


def test_resolve_grub_titles_and_unknown():
    default, entries = kernels.parse_grub_cfg(fixture('grub.cfg.debian12-4-kernels-saved'))
    env = {'saved_entry': 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-58-amd64'}
    assert kernels.resolve_grub(default, entries, env) == K58
    assert kernels.resolve_grub(default, entries, {'saved_entry': 'no such entry'}) is None
    assert kernels.resolve_grub(default, entries, {'saved_entry': '1'}) is None  # a submenu, not a kernel
    assert kernels.entry_path(entries, K57) == ('gnulinux-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b>'
                                                'gnulinux-6.1.0-57-amd64-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b')
    assert kernels.entry_path(entries, 'nope') is None


def test_resolve_grub_numeric_path_in_submenu():
    default, entries = kernels.parse_grub_cfg(fixture('grub.cfg.debian12-4-kernels-saved'))
    # entries of the submenu: 0 6.12 normal, 1 6.12 recovery, 2 6.1.0-58, 3 recovery, 4 6.1.0-57
    assert kernels.resolve_grub(default, entries, {'saved_entry': '1>4'}) == K57
    assert kernels.resolve_grub(default, entries, {'next_entry': '1>2', 'saved_entry': '1>4'}) == K58


def test_other_parsers():
    assert kernels.parse_grubby_default(fixture('grubby-default-kernel.el9.txt')) == '5.14.0-427.13.1.el9_4.x86_64'
    assert kernels.parse_grubby_default('') is None
    held = kernels.parse_showhold(fixture('apt-mark-showhold.debian12-image.txt'))
    assert 'linux-image-6.1.0-57-amd64' in held and 'linux-image-amd64' in held
    assert kernels.parse_versionlock(fixture('dnf-versionlock-list.el9.txt')) == {'kernel', 'kernel-core'}
    assert kernels.parse_dpkg_installed('ii  linux-image-amd64\nrc  linux-image-6.1.0-9-amd64\n') == ['linux-image-amd64']
    entries = dkms.parse_dkms_status(fixture('dkms-status.debian12.txt'))
    assert entries == [{'version': '0.12.1', 'kernel': K57, 'arch': 'x86_64', 'state': 'built'}]


# --- the report on a host tree -----------------------------------------------------------------

class FakeRun(object):
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        key = tuple(argv)
        for k, v in self.answers.items():
            if tuple(k) == key:
                if isinstance(v, Exception):
                    raise v
                return v
        return 1, '', '%s: no answer' % argv[0]


def make_tree(tmp_path, releases, grub_cfg=None, leftover=()):
    for r in releases:
        (tmp_path / 'lib' / 'modules' / r).mkdir(parents=True)
        (tmp_path / 'boot').mkdir(exist_ok=True)
        (tmp_path / 'boot' / ('vmlinuz-' + r)).write_text('x')
    for r in leftover:
        (tmp_path / 'lib' / 'modules' / r).mkdir(parents=True)
    if grub_cfg:
        (tmp_path / 'boot' / 'grub').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'boot' / 'grub' / 'grub.cfg').write_text(fixture(grub_cfg))
    return str(tmp_path)


def host_for(tmp_path, answers, bins=('modinfo', 'grub-editenv', 'apt-mark', 'dpkg-query', 'grubby', 'dnf'), **tree):
    root = make_tree(tmp_path, **tree)
    run = FakeRun(dict((('/bin/' + k[0],) + tuple(k[1:]), v) for k, v in answers.items()))
    host = kernels.Host(run, lambda n: '/bin/' + n if n in bins else None, root=root)
    return host, run


def modinfo(k):
    return ('modinfo', '-k', k, 'dattobd')


MISMATCH_58 = (0, MODINFO_MISMATCH, '')


def test_gather_every_kernel_and_next_boot_debian(tmp_path):
    host, run = host_for(tmp_path, {
        modinfo(K57): (0, MODINFO_OK, ''),
        modinfo(K58): MISMATCH_58,
        modinfo(K612): (1, '', MODINFO_MISSING),
        modinfo(K9): (1, '', MODINFO_MISSING),
        ('grub-editenv', 'list'): (0, '', ''),
    }, releases=[K9, K57, K58, K612], grub_cfg='grub.cfg.debian12-4-kernels', leftover=['6.1.0-1-amd64'])
    dk = [{'version': '0.12.1', 'kernel': K9, 'arch': 'x86_64', 'state': 'built'}]
    gate = kernels.gather(host, 'debian', K57, dkms_entries=dk, version='0.12.1')
    assert [k['release'] for k in gate['kernels']] == [K9, K57, K58, K612]  # not the leftover dir
    by = dict((k['release'], k) for k in gate['kernels'])
    assert by[K57]['build'] is True and by[K57]['loads'] is True
    assert by[K58]['build'] is True and by[K58]['loads'] is False and 'vermagic' in by[K58]['reason']
    assert by[K612]['build'] is False and by[K612]['loads'] is False
    assert by[K9]['build'] is True and by[K9]['loads'] is False and 'dkms install' in by[K9]['reason']
    assert gate['running'] == K57
    assert gate['next_boot'] == K612 and gate['next_boot_ok'] is False
    assert gate['newest_working'] == K57
    assert set(gate) >= {'running', 'next_boot', 'next_boot_ok', 'kernels'}
    assert set(by[K57]) >= {'release', 'build', 'loads', 'reason'}


def test_gather_old_version_and_no_modinfo(tmp_path):
    host, run = host_for(tmp_path, {modinfo(K57): (0, MODINFO_OK, '')}, releases=[K57])
    gate = kernels.gather(host, 'debian', K57, version='0.12.2')
    assert gate['kernels'][0]['loads'] is True and 'not the wanted 0.12.2' in gate['kernels'][0]['reason']
    assert gate['next_boot'] == K57 and gate['next_boot_source'] == 'newest installed kernel'
    host, run = host_for(tmp_path / 'b', {}, bins=(), releases=[K57])
    gate = kernels.gather(host, 'debian', K57, dkms_entries=[{'version': '0.12.1', 'kernel': K57, 'arch': 'x', 'state': 'installed'}])
    assert gate['kernels'][0]['build'] is True and gate['kernels'][0]['loads'] is None
    assert gate['next_boot_ok'] is None


def test_gather_redhat_uses_grubby(tmp_path):
    k = '5.14.0-427.13.1.el9_4.x86_64'
    host, run = host_for(tmp_path, {
        modinfo(k): (1, '', MODINFO_MISSING),
        ('grubby', '--default-kernel'): (0, fixture('grubby-default-kernel.el9.txt'), ''),
    }, releases=[k])
    gate = kernels.gather(host, 'redhat', k)
    assert gate['next_boot'] == k and gate['next_boot_source'] == 'grubby --default-kernel'
    assert gate['next_boot_ok'] is False


def test_next_boot_not_installed_is_not_ok(tmp_path):
    host, run = host_for(tmp_path, {modinfo(K57): (0, MODINFO_OK, ''),
                                    ('grubby', '--default-kernel'): (0, '/boot/vmlinuz-9.9.9\n', '')},
                         releases=[K57])
    gate = kernels.gather(host, 'redhat', K57)
    assert gate['next_boot'] == '9.9.9' and gate['next_boot_ok'] is False


# --- gate actions ------------------------------------------------------------------------------

def bad_gate(host):
    return kernels.gather(host, 'debian', K57)


def debian_host(tmp_path, cfg, held='', env=''):
    return host_for(tmp_path, {
        modinfo(K57): (0, MODINFO_OK, ''),
        modinfo(K612): (1, '', MODINFO_MISSING),
        ('grub-editenv', 'list'): (0, env, ''),
        ('dpkg-query', '-W', '-f=${db:Status-Abbrev} ${Package}\n', 'linux-image-*'):
            (0, 'ii  linux-image-6.1.0-57-amd64\nii  linux-image-6.12.57+deb12-amd64\nii  linux-image-amd64\n', ''),
        ('apt-mark', 'showhold'): (0, held, ''),
    }, releases=[K57, K612], grub_cfg=cfg)


def test_report_plans_nothing_but_warns(tmp_path):
    host, run = debian_host(tmp_path, 'grub.cfg.debian12-4-kernels')
    gate = bad_gate(host)
    argv, warnings = kernels.plan_action(host, gate, 'report', 'debian')
    assert argv is None
    assert any('6.12.57+deb12-amd64' in w and 'full' in w for w in warnings)


def test_hold_debian_holds_metapackage_and_failing_kernel(tmp_path):
    host, run = debian_host(tmp_path, 'grub.cfg.debian12-4-kernels', held='linux-image-amd64\n')
    argv, dummy = kernels.plan_action(host, bad_gate(host), 'hold', 'debian')
    assert argv == ['apt-mark', 'hold', 'linux-image-6.12.57+deb12-amd64']
    host, run = debian_host(tmp_path / 'b', 'grub.cfg.debian12-4-kernels',
                            held='linux-image-amd64\nlinux-image-6.12.57+deb12-amd64\n')
    assert kernels.plan_action(host, bad_gate(host), 'hold', 'debian')[0] is None  # idempotent


def test_default_saved_uses_grub_set_default(tmp_path):
    host, run = debian_host(tmp_path, 'grub.cfg.debian12-4-kernels-saved')
    argv, dummy = kernels.plan_action(host, bad_gate(host), 'default', 'debian')
    assert argv == ['grub-set-default', 'gnulinux-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b>'
                    'gnulinux-6.1.0-57-amd64-advanced-1fabafd4-d524-492c-83df-fcc9d7d0539b']


def test_default_not_saved_uses_grub_reboot_and_says_so(tmp_path):
    host, run = debian_host(tmp_path, 'grub.cfg.debian12-4-kernels')
    argv, warnings = kernels.plan_action(host, bad_gate(host), 'default', 'debian')
    assert argv[0] == 'grub-reboot'
    assert any('GRUB_DEFAULT=saved' in w for w in warnings)


def test_default_after_it_was_set_is_idempotent(tmp_path):
    env = fixture('grub-editenv-list.saved.txt')  # saved_entry = the 6.1.0-57 entry
    host, run = debian_host(tmp_path, 'grub.cfg.debian12-4-kernels-saved', env=env)
    gate = bad_gate(host)
    assert gate['next_boot'] == K57 and gate['next_boot_ok'] is True
    assert kernels.plan_action(host, gate, 'default', 'debian')[0] is None


def test_default_redhat_and_refusals(tmp_path):
    k1, k2 = '5.14.0-427.13.1.el9_4.x86_64', '5.14.0-503.11.1.el9_5.x86_64'
    host, run = host_for(tmp_path, {
        modinfo(k1): (0, MODINFO_OK.replace(K57, k1), ''),
        modinfo(k2): (1, '', MODINFO_MISSING),
        ('grubby', '--default-kernel'): (0, '/boot/vmlinuz-%s\n' % k2, ''),
        ('dnf', 'versionlock', 'list'): (0, fixture('dnf-versionlock-list.el9.txt').replace('kernel-core', 'kernel-modules'), ''),
    }, releases=[k1, k2])
    gate = kernels.gather(host, 'redhat', k1)
    assert kernels.plan_action(host, gate, 'default', 'redhat')[0] == ['grubby', '--set-default', '/boot/vmlinuz-' + k1]
    assert kernels.plan_action(host, gate, 'hold', 'redhat')[0] == ['dnf', 'versionlock', 'add', 'kernel-core']
    with pytest.raises(DattobdError, match='one of'):
        kernels.plan_action(host, gate, 'reboot', 'redhat')
    with pytest.raises(DattobdError, match='not supported'):
        kernels.plan_action(host, gate, 'hold', 'suse')
    gate['newest_working'] = None
    argv, warnings = kernels.plan_action(host, gate, 'default', 'redhat')
    assert argv is None and any('no installed kernel has a working' in w for w in warnings)


def test_hold_redhat_without_plugin_fails_clearly(tmp_path):
    host, run = host_for(tmp_path, {modinfo(K57): (1, '', MODINFO_MISSING),
                                    ('dnf', 'versionlock', 'list'): (1, '', 'No such command: versionlock.')},
                         releases=[K57])
    gate = kernels.gather(host, 'redhat', K57)
    with pytest.raises(DattobdError, match='versionlock') as exc:
        kernels.plan_action(host, gate, 'hold', 'redhat')
    assert 'python3-dnf-plugin-versionlock' in exc.value.hint
