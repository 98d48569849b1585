# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role snapfleet.dattobd.initramfs: rendered hooks and the boot script, run with stub tools."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess
import time

import shlex

import jinja2
import pytest
import yaml

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import reload as rl

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'roles', 'initramfs')
BOOT = os.path.join(ROLE, 'files', 'snapfleet-dattobd-boot')
SHELLS = [s for s in ('sh', 'dash', 'bash') if shutil.which(s)]
if shutil.which('busybox'):
    SHELLS.append('busybox sh')


def _vars(**over):
    with open(os.path.join(ROLE, 'defaults', 'main.yml')) as f:
        data = yaml.safe_load(f)
    with open(os.path.join(ROLE, 'vars', 'main.yml')) as f:
        data.update(yaml.safe_load(f))
    data.update(ansible_managed='Ansible managed', __dattobd_initramfs_dbdctl='/usr/local/bin/dbdctl')
    data.update(over)
    return data


def render(name, **over):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, 'templates')),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters['quote'] = shlex.quote  # as ansible.builtin.quote
    return env.get_template(name).render(**_vars(**over))


@pytest.mark.parametrize('name, shell', [
    ('initramfs-tools-hook.j2', 'sh'),
    ('initramfs-tools-premount.j2', 'sh'),
    ('dracut-pre-mount.sh.j2', 'sh'),
    ('dracut-module-setup.sh.j2', 'bash'),
])
def test_templates_are_valid_shell(name, shell, tmp_path):
    text = render(name)
    assert text.startswith(('#!/bin/', '#!/usr/bin/env '))
    path = tmp_path / 'script'
    path.write_text(text)
    proc = subprocess.run([shell, '-n', str(path)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_hook_content():
    hook = render('initramfs-tools-hook.j2')
    assert 'copy_exec /usr/local/bin/dbdctl /usr/local/bin/dbdctl' in hook
    assert 'manual_add_modules dattobd' in hook
    assert 'copy_exec /usr/local/lib/snapfleet-dattobd/snapfleet-dattobd-boot /sbin/snapfleet-dattobd-boot' in hook
    assert 'mkdir -p "${DESTDIR}/etc/datto/dla/mnt"' in hook
    assert 'copy_file config "$conf"' in hook
    premount = render('initramfs-tools-premount.j2')
    assert '/sbin/snapfleet-dattobd-boot "${ROOT}" "${ROOTFSTYPE}"' in premount
    setup = render('dracut-module-setup.sh.j2', dattobd_initramfs_libexec_dir='/opt/x')
    assert "hostonly='' instmods dattobd" in setup
    assert 'inst_hook pre-mount 01 "$moddir/snapfleet-dattobd-pre-mount.sh"' in setup
    assert 'inst_simple /opt/x/snapfleet-dattobd-boot /sbin/snapfleet-dattobd-boot' in setup
    assert 'inst /usr/local/bin/dbdctl /usr/local/bin/dbdctl' in setup
    assert 'add_dracutmodules+=" snapfleet-dattobd "' in render('dracut.conf.j2')
    # dracut sources pre-mount hooks: an exit would end dracut's init
    code = [ln for ln in render('dracut-pre-mount.sh.j2').splitlines() if not ln.lstrip().startswith('#')]
    assert code and not [ln for ln in code if 'exit' in ln.split()]


def test_hooks_bring_lvm_when_installed():
    """Issue 20: the boot script activates the LVs that reload scripts name, so lvm (and dm_mod) go into the
    initramfs whenever lvm2 is installed (a tracker added later needs no new initramfs)."""
    hook = render('initramfs-tools-hook.j2')
    assert 'for dir in /usr/sbin /sbin; do\n\tif [ -x "$dir/lvm" ]; then\n\t\tcopy_exec "$dir/lvm" /sbin/lvm\n' \
           '\t\tmanual_add_modules dm_mod\n' in hook
    setup = render('dracut-module-setup.sh.j2')
    for found, want in ((0, 'lvm\n'), (1, '')):
        proc = subprocess.run(['bash', '-c', 'find_binary() { return %d; }\n%s\ndepends; echo "rc=$?"' % (found, setup)],
                              capture_output=True, text=True, check=False)
        assert proc.stdout == want + 'rc=0\n', proc


HOOK_FUNCTIONS = '''
manual_add_modules() { echo "module $*" >> "$STUB_LOG"; }
copy_file() { echo "copy_file $*" >> "$STUB_LOG"; }
copy_exec() {
    echo "copy_exec $*" >> "$STUB_LOG"
    mkdir -p "${DESTDIR}${2%/*}" && : > "${DESTDIR}$2"
}
'''


@pytest.mark.parametrize('chosen', ['/usr/bin/dbdctl', '/usr/local/sbin/dbdctl'])
def test_hook_links_every_usual_dbdctl_path(chosen, tmp_path):
    """A reload script names dbdctl by the path the snapshot module found (PATH order: /usr/local/bin
    before /usr/bin); the initramfs must run it whichever usual path that is."""
    functions = tmp_path / 'hook-functions'
    functions.write_text(HOOK_FUNCTIONS)
    hook = render('initramfs-tools-hook.j2', __dattobd_initramfs_dbdctl=chosen)
    assert '. /usr/share/initramfs-tools/hook-functions' in hook
    script = tmp_path / 'hook'
    script.write_text(hook.replace('. /usr/share/initramfs-tools/hook-functions', '. "%s"' % functions))
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / 'usr' / 'sbin').mkdir(parents=True)
    (dest / 'usr' / 'sbin' / 'dbdctl').write_text('present already')  # never replaced
    env = dict(os.environ, DESTDIR=str(dest), STUB_LOG=str(tmp_path / 'log'))
    proc = subprocess.run(['sh', str(script)], env=env, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'copy_exec %s %s' % (chosen, chosen) in (tmp_path / 'log').read_text()
    for alt in ('/usr/bin/dbdctl', '/usr/local/bin/dbdctl', '/usr/local/sbin/dbdctl'):
        path = dest / alt.lstrip('/')
        if alt == chosen:
            assert path.is_file() and not path.is_symlink()
        else:
            assert path.is_symlink() and os.readlink(str(path)) == chosen
    assert (dest / 'usr' / 'sbin' / 'dbdctl').read_text() == 'present already'
    setup = render('dracut-module-setup.sh.j2', __dattobd_initramfs_dbdctl=chosen)
    assert 'ln -s %s "${initdir}${alt}"' % chosen in setup


def test_required_patterns_match_own_file_names():
    """The verification patterns name what the hooks install."""
    with open(os.path.join(ROLE, 'vars', 'main.yml')) as f:
        v = yaml.safe_load(f)
    req = v['__dattobd_initramfs_required']
    own_it = [f['dest'] for f in v['__dattobd_initramfs_own_files']['initramfs-tools']]
    assert '/etc/initramfs-tools/scripts/local-premount/snapfleet-dattobd' in own_it
    assert 'scripts/local-premount/snapfleet-dattobd' in req['initramfs-tools']['own']
    own_dr = [f['dest'] for f in v['__dattobd_initramfs_own_files']['dracut']]
    assert any(d.endswith('/snapfleet-dattobd-pre-mount.sh') for d in own_dr)
    assert any('01-snapfleet-dattobd-pre-mount' in p for p in req['dracut']['own'])


# --- the boot script, with stub tools ----------------------------------------------------

STUB = '''#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0")" in
  modprobe) exit "${STUB_MODPROBE_RC:-0}" ;;
  mount) exit "${STUB_MOUNT_RC:-0}" ;;
  blkid) echo ext4 ;;
esac
exit 0
'''

FAKE_DBDCTL = '''#!/bin/sh
echo "dbdctl $*" >> "$STUB_LOG"
case "$*" in *" 13") exit 255 ;; esac
exit 0
'''


# lvm: logs its arguments; "lvchange ... <vg>/<lv>" creates the node that $STUB_LVM_MAP names for that
# LV ("<vg>/<lv> <node>" lines) as a link to the block device $STUB_BLOCK; fails with $STUB_LVM_RC,
# or hangs for $STUB_LVM_SLEEP seconds.
FAKE_LVM = '''#!/bin/sh
echo "lvm $*" >> "$STUB_LOG"
if [ -n "$STUB_LVM_SLEEP" ]; then
    exec sleep "$STUB_LVM_SLEEP"
fi
if [ "${STUB_LVM_RC:-0}" -ne 0 ]; then
    echo "  Volume group not found" >&2
    exit "$STUB_LVM_RC"
fi
for last in "$@"; do :; done
if [ -f "$STUB_LVM_MAP" ]; then
    while read -r want node; do
        if [ "$want" = "$last" ]; then
            mkdir -p "${node%/*}" && ln -s "$STUB_BLOCK" "$node"
        fi
    done < "$STUB_LVM_MAP"
fi
exit 0
'''


@pytest.fixture
def env(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for tool in ('modprobe', 'mount', 'umount', 'blkid', 'blockdev', 'udevadm'):
        p = bindir / tool
        p.write_text(STUB)
        p.chmod(0o755)
    dbdctl = bindir / 'dbdctl'
    dbdctl.write_text(FAKE_DBDCTL)
    dbdctl.chmod(0o755)
    lvm = bindir / 'lvm'
    lvm.write_text(FAKE_LVM)
    lvm.chmod(0o755)
    mnt = tmp_path / 'mnt'
    (mnt / 'etc' / 'datto' / 'dla').mkdir(parents=True)
    run = tmp_path / 'run'
    e = dict(os.environ, PATH='%s:%s' % (bindir, os.environ['PATH']), STUB_LOG=str(tmp_path / 'calls'),
             SNAPFLEET_DATTOBD_MNT=str(mnt), SNAPFLEET_DATTOBD_KMSG=str(tmp_path / 'kmsg'),
             SNAPFLEET_DATTOBD_RUNDIR=str(run), SNAPFLEET_DATTOBD_SETTLE_TIMEOUT='1',
             # never the host's lvm or /dev: a fake lvm and device nodes under the test's directory
             SNAPFLEET_DATTOBD_LVM=str(lvm), SNAPFLEET_DATTOBD_DEVDIR=str(tmp_path / 'dev'),
             SNAPFLEET_DATTOBD_LV_WAIT='1', SNAPFLEET_DATTOBD_LVM_TIMEOUT='5', STUB_LVM_MAP=str(tmp_path / 'lvm-map'))
    return dict(env=e, tmp=tmp_path, mnt=mnt, dbdctl=str(dbdctl), dla=mnt / 'etc' / 'datto' / 'dla',
                log=run / 'boot-reload.log', dev=tmp_path / 'dev')


def _root_dev():
    for dev in ('/dev/loop0', '/dev/vda', '/dev/sda', '/dev/nvme0n1'):
        if os.path.exists(dev) and os.path.isabs(dev) and os.stat(dev).st_mode & 0o060000 == 0o060000:
            return dev
    pytest.skip('no block device node to stand in for the root device')


def _read(path):
    return path.read_text() if path.exists() else ''


def _boot(shell, env, *args):
    # a hang fails the test (TimeoutExpired) instead of blocking the suite
    return subprocess.run(shell.split() + [BOOT] + list(args), env=env['env'], capture_output=True, text=True, check=False,
                          timeout=300)


@pytest.mark.parametrize('shell', SHELLS)
def test_boot_runs_every_reload_script(shell, env):
    root = _root_dev()
    d = str(env['dla'])
    rl.ensure(2, '/dev/disk/by-uuid/data uuid', '/.datto_2_5', 'incremental', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(0, '/dev/disk/by-uuid/root', '/.datto_0_9', 'snapshot', cache_size=4096, directory=d,
              dbdctl=env['dbdctl'])
    rl.ensure(13, '/dev/disk/by-uuid/gone', '/.d', 'incremental', directory=d, dbdctl=env['dbdctl'])
    noexec = env['dla'] / 'reload_manual'
    noexec.write_text('#!/bin/sh\necho should-not-run >> "$STUB_LOG"\n')
    noexec.chmod(0o644)
    proc = _boot(shell, env, 'block:' + root, 'ext4')
    assert proc.returncode == 0, proc.stderr
    calls = _read(env['tmp'] / 'calls').splitlines()
    assert calls == [
        'modprobe dattobd',
        'blockdev --setro %s' % root,
        'mount -t ext4 -o ro %s %s' % (root, env['mnt']),
        'udevadm settle --timeout=1',
        'dbdctl reload-snapshot -c 4096 /dev/disk/by-uuid/root /.datto_0_9 0',
        'dbdctl reload-incremental /dev/disk/by-uuid/gone /.d 13',
        'dbdctl reload-incremental /dev/disk/by-uuid/data uuid /.datto_2_5 2',
        'umount %s' % env['mnt'],
        'blockdev --setrw %s' % root,
    ]
    log = _read(env['log']).splitlines()
    assert log[0] == 'version 1'
    assert log[1].startswith('start ') and float(log[1].split()[1]) > 0  # built-ins only, no cut
    assert log[2:] == ['modprobe ok', 'mounted %s' % root,
                       'script reload_manual skipped not-executable',
                       'script reload_snapfleet_0 rc 0', 'script reload_snapfleet_13 rc 255',
                       'script reload_snapfleet_2 rc 0', 'done 3 1']
    kmsg = _read(env['tmp'] / 'kmsg')
    assert 'reload_snapfleet_13 failed with status 255' in kmsg


@pytest.mark.parametrize('shell', SHELLS)
def test_boot_without_scripts_and_fstype_probe(shell, env):
    root = _root_dev()
    proc = _boot(shell, env, root, '')
    assert proc.returncode == 0
    calls = _read(env['tmp'] / 'calls').splitlines()
    assert 'blkid -s TYPE -o value %s' % root in calls
    assert 'mount -t ext4 -o ro %s %s' % (root, env['mnt']) in calls
    assert _read(env['log']).splitlines()[-1] == 'done 0 0'


@pytest.mark.parametrize('spec, device', [
    ('UUID=1234-abcd', '/dev/disk/by-uuid/1234-abcd'),
    ('block:UUID=1234-abcd', '/dev/disk/by-uuid/1234-abcd'),
    ('PARTUUID=p-1', '/dev/disk/by-partuuid/p-1'),
    ('LABEL=my/root', '/dev/disk/by-label/my\\x2froot'),
    ('PARTLABEL=pl', '/dev/disk/by-partlabel/pl'),
    ('/dev/nonexistent-root', '/dev/nonexistent-root'),
])
def test_boot_resolves_root_spec(spec, device, env):
    proc = _boot('sh', env, spec, 'ext4')
    assert proc.returncode == 0
    assert _read(env['log']).splitlines()[-1] == 'root device missing %s' % device
    calls = _read(env['tmp'] / 'calls').splitlines()
    assert calls == ['modprobe dattobd', 'udevadm settle --timeout=1']


def test_boot_never_fails_the_boot(env):
    root = _root_dev()
    e = env['env']
    e['STUB_MODPROBE_RC'] = '1'
    proc = _boot('sh', env, root, 'ext4')
    assert proc.returncode == 0
    assert _read(env['log']).splitlines()[-1] == 'modprobe failed'
    assert 'modprobe dattobd failed' in _read(env['tmp'] / 'kmsg')
    e['STUB_MODPROBE_RC'] = '0'
    e['STUB_MOUNT_RC'] = '32'
    proc = _boot('sh', env, root, 'ext4')
    assert proc.returncode == 0
    assert _read(env['log']).splitlines()[-1] == 'mount failed %s' % root
    assert _read(env['tmp'] / 'calls').splitlines()[-1] == 'blockdev --setrw %s' % root
    proc = _boot('sh', env, 'ZFS=pool/root', '')
    assert proc.returncode == 0
    if not os.path.exists('/dev/root'):
        assert _read(env['log']).splitlines()[-1] == 'no root device'


@pytest.mark.parametrize('shell', SHELLS)
def test_boot_refuses_two_scripts_for_one_device(shell, env):
    """Issue 23, the measured state after a hard reset mid-run: reload_snapfleet_0 (rewritten for the second
    volume) and reload_snapfleet_1 (its old script, an old COW file) both reload one device. Neither runs (one
    of them is stale); the other volumes reload as usual; the kernel log says why."""
    root = _root_dev()
    d = str(env['dla'])
    data = "/dev/disk/by-uuid/da7a it's"
    rl.ensure(0, data, '/.datto_0_1', 'incremental', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(1, data, '/.datto_1_4', 'incremental', cache_size=4096, directory=d, dbdctl=env['dbdctl'])
    rl.ensure(2, '/dev/disk/by-uuid/other', '/.datto_2_3', 'snapshot', directory=d, dbdctl=env['dbdctl'])
    # two names of one device node (another name: a symlink to it) are one device
    link = env['tmp'] / 'by-id-link'
    os.symlink(root, str(link))
    rl.ensure(5, root, '/.datto_5_1', 'incremental', directory=d, dbdctl=env['dbdctl'])
    (env['dla'] / 'reload_agent').write_text("#!/bin/sh\nexec /usr/bin/dbdctl reload-incremental %s /.agent 7\n" % link)
    (env['dla'] / 'reload_agent').chmod(0o755)
    # a script this hook cannot read is run as before (no device to compare)
    (env['dla'] / 'reload_custom').write_text('#!/bin/sh\n$DBDCTL reload-incremental "$DEV" /.c 9\n')
    (env['dla'] / 'reload_custom').chmod(0o755)
    proc = _boot(shell, env, 'block:' + root, 'ext4')
    assert proc.returncode == 0, proc.stderr
    calls = [c for c in _read(env['tmp'] / 'calls').splitlines() if c.startswith('dbdctl')]
    assert calls == ['dbdctl reload-snapshot /dev/disk/by-uuid/other /.datto_2_3 2'], calls
    log = _read(env['log']).splitlines()
    assert 'script reload_snapfleet_0 refused duplicate-device reload_snapfleet_1' in log
    assert 'script reload_snapfleet_1 refused duplicate-device reload_snapfleet_0' in log
    assert 'script reload_agent refused duplicate-device reload_snapfleet_5' in log
    assert 'script reload_snapfleet_5 refused duplicate-device reload_agent' in log
    assert 'script reload_snapfleet_2 rc 0' in log and log[-1] == 'done 2 1', log  # reload_custom ran (and failed)
    kmsg = _read(env['tmp'] / 'kmsg')
    assert "reload_snapfleet_1 is not run: reload_snapfleet_0 also reload %s (one tracker per device" % data in kmsg
    assert 'its next backup must be full' in kmsg and '4 refused' in kmsg


# --- LVM logical volumes the initramfs did not activate (issue 20) --------------------------

def _lv_setup(env, root, lvs):
    """Nodes ``lvchange`` creates: ``{'<vg>/<lv>': '/dev/...'}`` (under the test's device directory)."""
    env['env']['STUB_BLOCK'] = root
    with open(env['env']['STUB_LVM_MAP'], 'w') as f:
        for lv, dev in lvs.items():
            f.write('%s %s%s\n' % (lv, env['dev'], dev[len('/dev'):]))


def _calls(env, prefix=None):
    calls = _read(env['tmp'] / 'calls').splitlines()
    return [c for c in calls if prefix is None or c.startswith(prefix)]


@pytest.mark.parametrize('shell', SHELLS)
def test_boot_activates_the_logical_volumes_the_scripts_name(shell, env):
    """A data LV is not active in early boot (dracut activates what rd.lvm.lv names, Debian's lvm2 with
    event_activation = 0 the root LV only): the hook activates exactly the LVs named by the scripts whose
    node is missing, waits for the node, then reloads; an LV active already is logged as such."""
    root = _root_dev()
    d = str(env['dla'])
    rl.ensure(1, '/dev/mapper/vg--data-lv--a', '/.datto_1', 'incremental', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(2, '/dev/disk/by-uuid/gone', '/.datto_2', 'incremental', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(3, '/dev/vgb/lvb', '/.datto_3', 'snapshot', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(4, '/dev/mapper/cryptdata', '/.datto_4', 'incremental', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(5, '/dev/mapper/vg-active', '/.datto_5', 'incremental', directory=d, dbdctl=env['dbdctl'])
    (env['dev'] / 'mapper').mkdir(parents=True)
    os.symlink(root, str(env['dev'] / 'mapper' / 'vg-active'))  # active already: left alone
    _lv_setup(env, root, {'vg-data/lv-a': '/dev/mapper/vg--data-lv--a', 'vgb/lvb': '/dev/vgb/lvb'})
    proc = _boot(shell, env, 'block:' + root, 'ext4')
    assert proc.returncode == 0, proc.stderr
    assert _calls(env) == [
        'modprobe dattobd',
        'blockdev --setro %s' % root,
        'mount -t ext4 -o ro %s %s' % (root, env['mnt']),
        'udevadm settle --timeout=1',
        'modprobe -q dm_mod',
        'lvm lvchange -ay --sysinit vg-data/lv-a',
        'udevadm settle --timeout=1',
        'lvm lvchange -ay --sysinit vgb/lvb',
        'udevadm settle --timeout=1',
        'dbdctl reload-incremental /dev/mapper/vg--data-lv--a /.datto_1 1',
        'dbdctl reload-incremental /dev/disk/by-uuid/gone /.datto_2 2',
        'dbdctl reload-snapshot /dev/vgb/lvb /.datto_3 3',
        'dbdctl reload-incremental /dev/mapper/cryptdata /.datto_4 4',
        'dbdctl reload-incremental /dev/mapper/vg-active /.datto_5 5',
        'umount %s' % env['mnt'],
        'blockdev --setrw %s' % root,
    ]
    log = _read(env['log']).splitlines()
    assert log[3:] == ['mounted %s' % root,
                       'lv vg-data/lv-a activated /dev/mapper/vg--data-lv--a',
                       'lv vgb/lvb activated /dev/vgb/lvb',
                       'lv vg/active active /dev/mapper/vg-active',
                       'script reload_snapfleet_1 rc 0', 'script reload_snapfleet_2 rc 0', 'script reload_snapfleet_3 rc 0',
                       'script reload_snapfleet_4 rc 0', 'script reload_snapfleet_5 rc 0', 'done 5 0'], log
    kmsg = _read(env['tmp'] / 'kmsg')
    assert 'activated LVM volume vg-data/lv-a (/dev/mapper/vg--data-lv--a) for its reload' in kmsg
    assert '0 skipped' in kmsg


@pytest.mark.parametrize('shell', SHELLS)
def test_boot_lv_without_lvm_is_skipped_not_run(shell, env):
    """No lvm in the initramfs: a clear line, that script is skipped (its LV does not exist), the others run."""
    root = _root_dev()
    d = str(env['dla'])
    rl.ensure(1, '/dev/mapper/vg-lv', '/.datto_1', 'incremental', directory=d, dbdctl=env['dbdctl'])
    rl.ensure(2, '/dev/disk/by-uuid/data', '/.datto_2', 'incremental', directory=d, dbdctl=env['dbdctl'])
    env['env']['SNAPFLEET_DATTOBD_LVM'] = str(env['tmp'] / 'no-such-dir' / 'lvm')
    proc = _boot(shell, env, 'block:' + root, 'ext4')
    assert proc.returncode == 0, proc.stderr
    assert _calls(env, 'lvm') == [] and 'modprobe -q dm_mod' not in _calls(env)
    assert _calls(env, 'dbdctl') == ['dbdctl reload-incremental /dev/disk/by-uuid/data /.datto_2 2']
    log = _read(env['log']).splitlines()
    assert log[-4:] == ['lv vg/lv no-lvm', 'script reload_snapfleet_1 skipped lv-missing vg/lv',
                        'script reload_snapfleet_2 rc 0', 'done 1 0'], log
    kmsg = _read(env['tmp'] / 'kmsg')
    assert '/dev/mapper/vg-lv (LVM volume vg/lv) does not exist and lvm is not in the initramfs' in kmsg
    assert 'reload_snapfleet_1 is not run: LVM volume vg/lv (/dev/mapper/vg-lv) does not exist' in kmsg
    assert '1 skipped' in kmsg


@pytest.mark.parametrize('case', ['fails', 'hangs', 'no-node'])
def test_boot_lv_activation_that_does_not_work_skips_its_script(case, env):
    root = _root_dev()
    rl.ensure(1, '/dev/mapper/vg-lv', '/.datto_1', 'incremental', directory=str(env['dla']), dbdctl=env['dbdctl'])
    if case == 'fails':
        env['env']['STUB_LVM_RC'] = '5'
    elif case == 'hangs':
        env['env'].update(STUB_LVM_SLEEP='900', SNAPFLEET_DATTOBD_LVM_TIMEOUT='1')
    start = time.monotonic()
    proc = _boot('sh', env, 'block:' + root, 'ext4')
    assert time.monotonic() - start < 300  # never waits for a hanging lvm (a loaded host is slow: a wide bound)
    assert proc.returncode == 0, proc.stderr
    assert _calls(env, 'lvm') == ['lvm lvchange -ay --sysinit vg/lv']
    assert _calls(env, 'dbdctl') == []
    log = _read(env['log']).splitlines()
    assert log[-2:] == ['script reload_snapfleet_1 skipped lv-missing vg/lv', 'done 0 0'], log
    kmsg = _read(env['tmp'] / 'kmsg')
    if case == 'fails':
        assert log[-3] == 'lv vg/lv failed 5'
        assert 'lvm lvchange -ay --sysinit vg/lv failed with status 5: Volume group not found' in kmsg
    elif case == 'hangs':
        assert log[-3].startswith('lv vg/lv failed ') and int(log[-3].split()[-1]) > 128, log
    else:
        assert log[-3] == 'lv vg/lv no-node /dev/mapper/vg-lv'
        assert 'vg/lv was activated but /dev/mapper/vg-lv did not appear within 1s' in kmsg


@pytest.mark.parametrize('shell', SHELLS)
def test_boot_activates_nothing_else_and_never_runs_a_name(shell, env):
    """Names that are no LV (a sub-device, other characters, shell syntax) never reach lvm, and nothing in a
    name is ever executed: only the one real LV is activated."""
    root = _root_dev()
    d = str(env['dla'])
    hostile = ['/dev/mapper/vg-$(touch PWN1)', "/dev/mapper/a b-c 'd", '/dev/mapper/vg-lv-real',
               '/dev/`touch PWN2`/lv', '/dev/vg/lv;touch PWN3', '/dev/mapper/-vg-lv', '/dev/vg/"lv"']
    for minor, dev in enumerate(hostile, start=10):
        rl.ensure(minor, dev, '/.d', 'incremental', directory=d, dbdctl=env['dbdctl'])
    # a script whose command line is not plain words: its device is never read (run, its line does nothing)
    (env['dla'] / 'reload_custom').write_text('#!/bin/sh\n[ -n "$NEVER" ] && %s reload-incremental /dev/mapper/x-$(touch PWN4) '
                                              '/.c 9\nexit 0\n' % env['dbdctl'])
    (env['dla'] / 'reload_custom').chmod(0o755)
    rl.ensure(1, '/dev/mapper/good-lv', '/.datto_1', 'incremental', directory=d, dbdctl=env['dbdctl'])
    _lv_setup(env, root, {'good/lv': '/dev/mapper/good-lv'})
    proc = subprocess.run(shell.split() + [BOOT, 'block:' + root, 'ext4'], env=env['env'], cwd=str(env['tmp']),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _calls(env, 'lvm') == ['lvm lvchange -ay --sysinit good/lv']
    assert not list(env['tmp'].glob('PWN*')) and not list(env['mnt'].glob('PWN*'))
    dbd = _calls(env, 'dbdctl')
    for dev in hostile:  # not LVs: run as before, the name passed as one literal word
        assert any(c.startswith('dbdctl reload-incremental %s /.d ' % dev) for c in dbd), (dev, dbd)
    assert 'lv good/lv activated /dev/mapper/good-lv' in _read(env['log']).splitlines()


@pytest.mark.parametrize('device, is_lv', [
    ('/dev/mapper/vg--a-lv--b', True), ('/dev/mapper/sfxfs-lvxfs', True), ('/dev/vg/lv', True),
    ('/dev/mapper/cryptdata', False), ('/dev/mapper/vg-lv-real', False), ('/dev/disk/by-uuid/x', False),
    ('/dev/md/data', False), ('/dev/vdb', False), ('/dev/mapper/a b-c', False), ('/dev/disk/by-id/x', False),
])
def test_role_knows_which_reload_devices_are_logical_volumes(device, is_lv):
    """The role requires lvm in the initramfs when a script names an LV: the same names the boot script activates."""
    assert bool(re.match(_vars()['__dattobd_initramfs_lv_re'], device)) is is_lv
