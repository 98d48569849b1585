# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel upgrade gate: which installed kernel has a working dattobd, which one boots next.

* :func:`gather` reports, for every installed kernel (not only the running one), whether a dattobd
  build exists for it (``dkms status`` or a module file that ``modinfo -k <kernel> dattobd`` finds)
  and whether it loads there (``modinfo`` succeeds and the module's vermagic names that kernel), and
  which kernel the boot loader starts next: GRUB's ``next_entry``/``saved_entry``/``default`` resolved
  against ``grub.cfg`` (Debian, SUSE), ``grubby --default-kernel`` (RHEL family), else the newest
  installed kernel in the order of GRUB's ``10_linux`` (version sort).
* :func:`plan_action` turns that report and the wanted gate (``report``, ``hold``, ``default``) into
  the commands that keep a host from booting a kernel without a working build: ``apt-mark hold`` /
  ``dnf versionlock add`` of the kernel packages, or ``grub-set-default`` (``grub-reboot`` when GRUB
  does not boot the saved entry) / ``grubby --set-default`` back to the newest kernel that has one.
  It never reboots.

Every parser takes the text of a real command output (samples under tests/fixtures/kernels/).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from .errors import DattobdError

NAME = 'dattobd'
GATES = ('report', 'hold', 'default')
GRUB_CFGS = ('/boot/grub/grub.cfg', '/boot/grub2/grub.cfg')
GRUBENVS = ('/boot/grub/grubenv', '/boot/grub2/grubenv')
_KERNEL_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+~-]*$')


# --- version sort (GNU sort -V / filevercmp, what GRUB's 10_linux uses through version_sort) ------

def _order(c):
    if c == '~':
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _isdigit(c):
    return '0' <= c <= '9'  # ASCII only, as GNU's filevercmp (str.isdigit is Unicode-aware)


def _verrevcmp(a, b):
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not _isdigit(a[i])) or (j < len(b) and not _isdigit(b[j])):
            ac = _order(a[i]) if i < len(a) and not _isdigit(a[i]) else 0
            bc = _order(b[j]) if j < len(b) and not _isdigit(b[j]) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == '0':
            i += 1
        while j < len(b) and b[j] == '0':
            j += 1
        while i < len(a) and _isdigit(a[i]) and j < len(b) and _isdigit(b[j]):
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and _isdigit(a[i]):
            return 1
        if j < len(b) and _isdigit(b[j]):
            return -1
        if first_diff:
            return first_diff
    return 0


def version_cmp(a, b):
    """Compare two kernel releases as ``sort -V`` does (negative, zero, positive)."""
    return _verrevcmp(a, b)


def newest(releases):
    """The newest release by version sort, or None."""
    best = None
    for r in releases:
        if best is None or version_cmp(r, best) > 0:
            best = r
    return best


# --- parsers of real command output ------------------------------------------------------------

def parse_modinfo(text):
    """``modinfo`` output -> {field: first value} (``filename``, ``version``, ``vermagic``...)."""
    fields = {}
    for line in (text or '').splitlines():
        if not line or line[0].isspace() or ':' not in line:
            continue
        key, value = line.split(':', 1)
        fields.setdefault(key.strip(), value.strip())
    return fields


def parse_grubenv(text):
    """``grub-editenv list`` output (or the grubenv file itself) -> {name: value}."""
    env = {}
    for line in (text or '').splitlines():
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        env[key] = value
    return env


_ENTRY_RE = re.compile(r"""^\s*(menuentry|submenu)\s+(?:'([^']*)'|"([^"]*)")(.*?)\{\s*$""")
_ID_RE = re.compile(r"""(?:\$menuentry_id_option|--id)\s+(?:'([^']*)'|"([^"]*)"|(\S+))""")
_LINUX_RE = re.compile(r'^\s*linux(?:efi|16)?\s+(\S+)')
_DEFAULT_RE = re.compile(r'''^\s*set\s+default=(?:"([^"]*)"|'([^']*)'|(\S+))\s*$''')


def parse_grub_cfg(text):
    """Menu entries and the default expression of a ``grub.cfg`` written by grub-mkconfig.

    Returns ``(default, entries)``: ``default`` is the value of the ``set default=`` that is not the
    ``${next_entry}`` branch (``"0"``, ``"${saved_entry}"``, a title or an id), ``entries`` a list of
    dicts ``title``, ``id``, ``kernel`` (release from the ``linux`` line's ``vmlinuz-<release>``),
    ``submenu`` (the enclosing submenu's dict or None), ``index`` (position in its menu level),
    ``recovery``.
    """
    default = None
    entries = []
    stack = []  # open blocks: ('submenu', dict) / ('menuentry', dict) / ('other', None)
    counters = [0]
    for line in (text or '').splitlines():
        m = _DEFAULT_RE.match(line)
        if m:
            value = next(g for g in m.groups() if g is not None)
            if value != '${next_entry}':
                default = value
            continue
        m = _ENTRY_RE.match(line)
        if m:
            kind, title = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
            idm = _ID_RE.search(m.group(4) or '')
            ident = next((g for g in idm.groups() if g is not None), None) if idm else None
            parent = next((d for k, d in reversed(stack) if k == 'submenu'), None)
            item = dict(kind=kind, title=title, id=ident, kernel=None, submenu=parent, index=counters[-1],
                        recovery='recovery mode' in title or '-recovery-' in (ident or ''))
            counters[-1] += 1
            stack.append((kind, item))
            if kind == 'submenu':
                counters.append(0)
            entries.append(item)
            continue
        m = _LINUX_RE.match(line)
        if m and stack and stack[-1][0] == 'menuentry':
            base = os.path.basename(m.group(1))
            if base.startswith('vmlinuz-'):
                stack[-1][1]['kernel'] = base[len('vmlinuz-'):]
            continue
        stripped = line.strip()
        if stripped.endswith('{') and not stripped.startswith('#'):
            stack.append(('other', None))
        elif stripped == '}' and stack:
            kind, dummy = stack.pop()
            if kind == 'submenu':
                counters.pop()
    return default, entries


def _match(entry, word):
    return word in (entry['title'], entry['id']) or (re.match(r'^[0-9]+$', word) is not None and int(word) == entry['index'])


def resolve_grub(default, entries, env):
    """The kernel release GRUB boots next, or None when it cannot be told.

    ``next_entry`` (``grub-reboot``) wins; then ``set default=`` of grub.cfg (``${saved_entry}`` takes
    ``saved_entry`` from the environment, empty meaning entry 0).
    """
    wanted = env.get('next_entry') or None
    if wanted is None:
        wanted = default if default is not None else '0'
        if wanted == '${saved_entry}':
            wanted = env.get('saved_entry') or '0'
    words = wanted.split('>')
    level = [e for e in entries if e['submenu'] is None]
    chosen = None
    for n, word in enumerate(words):
        chosen = next((e for e in level if _match(e, word)), None)
        if chosen is None:
            return None
        if n < len(words) - 1:
            level = [e for e in entries if e['submenu'] is chosen]
    if chosen is None or chosen['kind'] != 'menuentry':
        return None
    return chosen['kernel']


def entry_path(entries, kernel):
    """The ``submenu>entry`` id path of the normal (not recovery) entry that boots ``kernel``."""
    for e in entries:
        if e['kind'] == 'menuentry' and e['kernel'] == kernel and not e['recovery'] and e['submenu'] is not None:
            sub = e['submenu']
            return '%s>%s' % (sub['id'] or sub['title'], e['id'] or e['title'])
    for e in entries:
        if e['kind'] == 'menuentry' and e['kernel'] == kernel and not e['recovery']:
            return e['id'] or e['title']
    return None


def parse_grubby_default(text):
    """``grubby --default-kernel`` (``/boot/vmlinuz-<release>``) -> release or None."""
    for line in (text or '').splitlines():
        base = os.path.basename(line.strip())
        if base.startswith('vmlinuz-'):
            return base[len('vmlinuz-'):]
    return None


def parse_showhold(text):
    """``apt-mark showhold`` -> set of package names."""
    return set(line.strip() for line in (text or '').splitlines() if line.strip())


def parse_versionlock(text):
    """``dnf versionlock list`` -> set of locked package names (``name-epoch:version-release.*``)."""
    names = set()
    for line in (text or '').splitlines():
        line = line.strip().lstrip('!')
        m = re.match(r'^(.+?)-(?:[0-9]+:)?[^-]+-[^-]+$', line)
        if m and ':' in line and not line.startswith('Last metadata'):
            names.add(m.group(1))
    return names


def parse_dpkg_installed(text):
    """``dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' ...`` -> installed package names."""
    out = []
    for line in (text or '').splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith('ii'):
            out.append(parts[1])
    return out


# --- host ------------------------------------------------------------------------------------

class Host(object):
    """Host access of the gate: files below ``root``, commands through ``run(argv, timeout)``,
    binaries through ``bin(name)`` (None when missing). Unit tests give a temporary tree and fakes."""

    def __init__(self, run, bin, root='/', timeout=60):
        self.run = run
        self.bin = bin
        self.root = root
        self.timeout = timeout
        self.commands = []

    def p(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def read(self, path):
        try:
            with open(self.p(path), 'r') as fh:
                return fh.read()
        except (IOError, OSError, UnicodeDecodeError):
            return None

    def listdir(self, path):
        try:
            return sorted(os.listdir(self.p(path)))
        except OSError:
            return []

    def exists(self, path):
        return os.path.exists(self.p(path))

    def cmd(self, name, args):
        """``(rc, out, err)`` of ``name args``, or None when ``name`` is not installed."""
        path = self.bin(name)
        if not path:
            return None
        argv = [path] + list(args)
        self.commands.append(' '.join(argv))
        try:
            return self.run(argv, self.timeout)
        except DattobdError as exc:
            return 1, '', exc.full_msg


def installed_kernels(host):
    """Releases under /lib/modules that have a kernel image (/boot/vmlinuz-<r> or /lib/modules/<r>/vmlinuz).

    A /lib/modules directory left behind by a removed kernel (DKMS leftovers) is not a bootable kernel.
    """
    out = []
    for name in host.listdir('/lib/modules'):
        if not _KERNEL_RE.match(name) or not os.path.isdir(host.p('/lib/modules/' + name)):
            continue
        if host.exists('/boot/vmlinuz-' + name) or host.exists('/lib/modules/%s/vmlinuz' % name):
            out.append(name)
    return sorted(out, key=_SortKey)


class _SortKey(object):
    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return version_cmp(self.value, other.value) < 0


def _dkms_state(entries, kernel, version):
    states = [e['state'] for e in entries or [] if e['kernel'] == kernel and (version is None or e['version'] == version)]
    for wanted in ('installed', 'installed-weak', 'built'):
        if wanted in states:
            return 'installed' if wanted.startswith('installed') else 'built'
    return None


def check_kernel(host, kernel, dkms_entries=None, version=None):
    """One kernel's entry: release, build, loads, reason (+ version, module)."""
    entry = dict(release=kernel, build=False, loads=None, reason='', version=None, module=None)
    dk = _dkms_state(dkms_entries, kernel, version)
    res = host.cmd('modinfo', ['-k', kernel, NAME])
    if res is None:
        entry['build'] = dk is not None
        entry['reason'] = ('DKMS has dattobd %s for it; modinfo is missing, so whether it loads is unknown' % dk
                           if dk else 'no DKMS build for it; modinfo is missing')
        return entry
    rc, out, err = res
    fields = parse_modinfo(out) if rc == 0 else {}
    if rc != 0 or 'filename' not in fields:
        entry['build'] = dk is not None
        entry['loads'] = False
        if dk == 'built':
            entry['reason'] = 'DKMS built dattobd for it but did not install it (dkms install -k %s)' % kernel
        elif dk:
            entry['reason'] = 'DKMS lists it installed but modinfo finds no dattobd module: %s' % (err or out).strip()
        else:
            entry['reason'] = 'no dattobd build for this kernel'
        return entry
    entry['build'] = True
    entry['module'] = fields['filename']
    entry['version'] = fields.get('version')
    magic = (fields.get('vermagic') or '').split()
    if not magic or magic[0] != kernel:
        entry['loads'] = False
        entry['reason'] = ('%s was built for kernel %s, not %s (vermagic): it will not load'
                           % (fields['filename'], magic[0] if magic else '(none)', kernel))
    elif version and entry['version'] and entry['version'] != version:
        entry['loads'] = True
        entry['reason'] = 'loads, but it is dattobd %s, not the wanted %s' % (entry['version'], version)
    else:
        entry['loads'] = True
        entry['reason'] = 'dattobd %s built for it and loadable' % (entry['version'] or '')
    return entry


def next_boot(host, family, kernels):
    """``(release or None, source)``: the kernel the boot loader starts next and how that was found."""
    if family == 'redhat':
        res = host.cmd('grubby', ['--default-kernel'])
        if res is not None and res[0] == 0:
            release = parse_grubby_default(res[1])
            if release:
                return release, 'grubby --default-kernel'
    for cfg in GRUB_CFGS:
        text = host.read(cfg)
        if text is None:
            continue
        default, entries = parse_grub_cfg(text)
        env = {}
        res = host.cmd('grub-editenv', ['list']) or host.cmd('grub2-editenv', ['list'])
        if res is not None and res[0] == 0:
            env = parse_grubenv(res[1])
        else:
            for path in GRUBENVS:
                raw = host.read(path)
                if raw is not None:
                    env = parse_grubenv(raw)
                    break
        release = resolve_grub(default, entries, env)
        if release:
            return release, '%s (%s)' % (cfg, 'next_entry' if env.get('next_entry') else
                                         'saved_entry' if default == '${saved_entry}' else 'default %s' % default)
        break
    release = newest(kernels)
    return release, 'newest installed kernel' if release else 'unknown'


def gather(host, family, running, dkms_entries=None, version=None):
    """The ``kernel_gate`` report of a host."""
    kernels = installed_kernels(host)
    if running and running not in kernels and os.path.isdir(host.p('/lib/modules/' + running)):
        kernels.append(running)
    entries = [check_kernel(host, k, dkms_entries, version) for k in kernels]
    nb, source = next_boot(host, family, kernels)
    by = dict((e['release'], e) for e in entries)
    ok = None
    if nb is not None:
        ok = by[nb]['loads'] if nb in by else False
    working = [e['release'] for e in entries if e['loads']]
    return dict(running=running, next_boot=nb, next_boot_source=source, next_boot_ok=ok, kernels=entries,
                newest_working=newest(working),
                problems=['%s: %s' % (e['release'], e['reason']) for e in entries if e['loads'] is False])


# --- gate actions ------------------------------------------------------------------------------

def _debian_hold(host, gate):
    res = host.cmd('dpkg-query', ['-W', '-f=${db:Status-Abbrev} ${Package}\n', 'linux-image-*'])
    installed = parse_dpkg_installed(res[1]) if res is not None and res[0] == 0 else []
    bad = set(e['release'] for e in gate['kernels'] if e['loads'] is False)
    # metapackages (linux-image-amd64, linux-image-cloud-amd64...) pull new kernels in; the image
    # packages of the failing kernels would be upgraded in place (same ABI, new build).
    wanted = [p for p in installed if not re.match(r'^linux-image-[0-9]', p) and not p.endswith('-dbg')]
    wanted += [p for p in installed if p[len('linux-image-'):] in bad]
    res = host.cmd('apt-mark', ['showhold'])
    held = parse_showhold(res[1]) if res is not None and res[0] == 0 else set()
    todo = sorted(set(wanted) - held)
    return (['apt-mark', 'hold'] + todo) if todo else None


def _redhat_hold(host):
    res = host.cmd('dnf', ['versionlock', 'list'])
    if res is None or res[0] != 0:
        raise DattobdError('Cannot hold the kernel packages: "dnf versionlock list" failed%s.'
                           % (': %s' % (res[2] or res[1]).strip() if res else ' (dnf is missing)'),
                           hint='Install the versionlock plugin (python3-dnf-plugin-versionlock) and run again.')
    todo = [n for n in ('kernel', 'kernel-core') if n not in parse_versionlock(res[1])]
    return (['dnf', 'versionlock', 'add'] + todo) if todo else None


def plan_action(host, gate, mode, family):
    """``(argv or None, warnings)``: the command the gate ``mode`` runs for this report."""
    if mode not in GATES:
        raise DattobdError('kernel_gate must be one of %s, got %r.' % (', '.join(GATES), mode))
    bad = [e for e in gate['kernels'] if e['loads'] is False]
    warnings = []
    if bad:
        warnings.append('No working dattobd build for kernel(s) %s: %s.'
                        % (', '.join(e['release'] for e in bad), '; '.join(e['reason'] for e in bad)))
    if gate['next_boot_ok'] is False:
        warnings.append('The next boot starts kernel %s, which has no working dattobd build: every tracker '
                        'would be lost and the next backup of each volume would be full.' % gate['next_boot'])
    if mode == 'report' or not bad:
        return None, warnings
    if mode == 'hold':
        if family == 'debian':
            return _debian_hold(host, gate), warnings
        if family == 'redhat':
            return _redhat_hold(host), warnings
        raise DattobdError('kernel_gate=hold is not supported on this OS family (%s).' % family,
                           hint='Use kernel_gate=default or report.')
    # default
    if gate['next_boot_ok'] is not False:
        return None, warnings
    target = gate['newest_working']
    if target is None:
        # In check mode before the first build, or when every build failed: nothing to go back to.
        warnings.append('kernel_gate=default: no installed kernel has a working dattobd build yet, so there is no '
                        'kernel to boot instead of %s.' % gate['next_boot'])
        return None, warnings
    if family == 'redhat':
        return ['grubby', '--set-default', '/boot/vmlinuz-%s' % target], warnings
    for cfg in GRUB_CFGS:
        text = host.read(cfg)
        if text is None:
            continue
        default, entries = parse_grub_cfg(text)
        path = entry_path(entries, target)
        if path is None:
            break
        if default == '${saved_entry}':
            return ['grub-set-default', path], warnings
        warnings.append('GRUB does not boot the saved entry (GRUB_DEFAULT is not "saved" in /etc/default/grub), '
                        'so the gate chose %s for the next boot only (grub-reboot); set GRUB_DEFAULT=saved and '
                        'run update-grub to make it stick.' % target)
        return ['grub-reboot', path], warnings
    raise DattobdError('kernel_gate=default: no GRUB menu entry boots kernel %s.' % target,
                       hint='Run update-grub (or grub2-mkconfig) and run again.')
