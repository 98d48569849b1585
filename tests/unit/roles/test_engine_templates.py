# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render the engine role's templates and vars with ansible's templar, per OS family."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import os

import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.snapfleet.dattobd.plugins.filter import role_values

ROLE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'engine')

FACTS = {
    'Debian': {'os_family': 'Debian', 'distribution': 'Debian', 'distribution_release': 'bookworm',
               'distribution_major_version': '12', 'kernel': '6.1.0-28-amd64'},
    'Ubuntu': {'os_family': 'Debian', 'distribution': 'Ubuntu', 'distribution_release': 'noble',
               'distribution_major_version': '24', 'kernel': '6.8.0-45-generic'},
    'Rocky': {'os_family': 'RedHat', 'distribution': 'Rocky', 'distribution_release': 'Blue Onyx',
              'distribution_major_version': '9', 'kernel': '5.14.0-427.el9.x86_64'},
    'Fedora': {'os_family': 'RedHat', 'distribution': 'Fedora', 'distribution_release': '',
               'distribution_major_version': '40', 'kernel': '6.10.6-200.fc40.x86_64'},
    'Leap': {'os_family': 'Suse', 'distribution': 'openSUSE Leap', 'distribution_release': '',
             'distribution_major_version': '15', 'kernel': '6.4.0-150600.23.7-default'},
    'SLES': {'os_family': 'Suse', 'distribution': 'SLES', 'distribution_release': '',
             'distribution_major_version': '15', 'kernel': '6.4.0-150600.23.7-default'},
}


def _yaml(rel):
    with open(os.path.join(ROLE, rel)) as fh:
        return yaml.safe_load(fh)


def _trust(value):
    """Role defaults/vars are trusted templates in a real run; mark them so for the templar."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trust(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


def _templar(distro, **extra):
    variables = {}
    variables.update(_trust(_yaml('defaults/main.yml')))
    variables.update(_trust(_yaml('vars/main.yml')))
    variables['ansible_facts'] = FACTS[distro]
    variables['ansible_managed'] = 'Ansible managed'
    variables.update(extra)
    templar = Templar(loader=DataLoader(), variables=variables)
    # the collection's filters by their FQCN, as in a play
    env = templar._engine.environment if hasattr(templar, '_engine') else templar.environment
    for name, func in role_values.FilterModule().filters().items():
        env.filters['snapfleet.dattobd.' + name] = func
    return templar


def _render(distro, template, **extra):
    with open(os.path.join(ROLE, 'templates', template)) as fh:
        return _templar(distro, **extra).template(trust_as_template(fh.read()))


def _deb822(text):
    fields = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            key, value = line.split(':', 1)
            fields[key] = value.strip()
    return fields


@pytest.mark.parametrize('distro, base, uri', [
    ('Debian', 'https://cpkg.datto.com', 'https://cpkg.datto.com/datto-deb/public/bookworm'),
    ('Ubuntu', 'http://mirror.example/datto/', 'http://mirror.example/datto/datto-deb/public/noble'),
])
def test_apt_sources(distro, base, uri):
    text = _render(distro, 'datto-linux-agent.sources.j2', dattobd_engine_repository_base_url=base,
                   __dattobd_engine_apt_keyring='/etc/apt/keyrings/datto-pkgs.asc')
    assert text.startswith('#')
    assert _deb822(text) == {'Types': 'deb', 'URIs': uri, 'Suites': FACTS[distro]['distribution_release'],
                             'Components': 'main', 'Architectures': 'amd64',
                             'Signed-By': '/etc/apt/keyrings/datto-pkgs.asc'}


@pytest.mark.parametrize('distro, template, path_var', [
    ('Rocky', 'datto.repo.j2', '__dattobd_engine_yum_repo'),
    ('Fedora', 'datto.repo.j2', '__dattobd_engine_yum_repo'),
    ('Leap', 'datto-zypper.repo.j2', '__dattobd_engine_zypper_repo'),
    ('SLES', 'datto-zypper.repo.j2', '__dattobd_engine_zypper_repo'),
])
def test_rpm_repo_files(distro, template, path_var):
    mirror = 'https://mirror.example/datto-rpm/el/9/x86_64'
    text = _render(distro, template, dattobd_engine_repository_rpm_baseurl=mirror,
                   dattobd_engine_repository_base_url='https://mirror.example',
                   __dattobd_engine_rpm_key_url='https://mirror.example/DATTO-PKGS-GPG-KEY')
    ini = configparser.ConfigParser()
    ini.read_string(text)
    assert ini.sections() == ['datto']
    repo = ini['datto']
    assert repo['baseurl'] == mirror
    assert repo['gpgcheck'] == '1'
    assert repo['enabled'] == '1'
    assert repo['gpgkey'] == 'https://mirror.example/DATTO-PKGS-GPG-KEY'
    if 'zypper' in template:
        assert repo['type'] == 'rpm-md'
        assert repo['autorefresh'] == '1'
    path = _templar(distro).template(trust_as_template('{{ %s }}' % path_var))
    assert path == ('/etc/zypp/repos.d/datto.repo' if 'zypper' in template else '/etc/yum.repos.d/datto.repo')


@pytest.mark.parametrize('distro, names, headers, release', [
    ('Debian', ['dattobd-dkms', 'dattobd-utils', 'libdattobd1'], 'linux-headers-6.1.0-28-amd64', None),
    ('Ubuntu', ['dattobd-dkms', 'dattobd-utils', 'libdattobd1'], 'linux-headers-6.8.0-45-generic', None),
    ('Rocky', ['dkms-dattobd', 'dattobd-utils', 'libdattobd'], 'kernel-devel-5.14.0-427.el9.x86_64',
     'https://cpkg.datto.com/datto-rpm/repoconfig/datto-el-rpm-release-9-latest.noarch.rpm'),
    ('Fedora', ['dkms-dattobd', 'dattobd-utils', 'libdattobd'], 'kernel-devel-6.10.6-200.fc40.x86_64',
     'https://cpkg.datto.com/datto-rpm/repoconfig/datto-fedora-rpm-release-40-latest.noarch.rpm'),
    ('Leap', ['dkms-dattobd', 'dattobd-utils', 'libdattobd1'], 'kernel-default-devel',
     'https://cpkg.datto.com/datto-rpm/repoconfig/datto-opensuse-rpm-release-15.0-latest.noarch.rpm'),
    ('SLES', ['dkms-dattobd', 'dattobd-utils', 'libdattobd1'], 'kernel-default-devel',
     'https://cpkg.datto.com/datto-rpm/repoconfig/datto-sle-rpm-release-15-latest.noarch.rpm'),
])
def test_package_names_per_family(distro, names, headers, release):
    t = _templar(distro)
    fam = FACTS[distro]['os_family']
    pkgs = t.template(trust_as_template("{{ __dattobd_engine_package_names[ansible_facts['os_family']] }}"))
    assert [pkgs['dkms'], pkgs['utils'], pkgs['lib']] == names
    assert t.template(trust_as_template("{{ __dattobd_engine_headers_package[ansible_facts['os_family']] }}")) == headers
    if release:
        assert t.template(trust_as_template("{{ __dattobd_engine_release_rpm[ansible_facts['os_family']] | trim }}")) == release
    else:
        assert fam not in _yaml('vars/main.yml')['__dattobd_engine_release_rpm']


def test_kernel_upgrade_default_per_family():
    assert _templar('Debian').template(trust_as_template('{{ dattobd_engine_kernel_upgrade }}')) == 'boot_rebuild'
    assert _templar('Rocky').template(trust_as_template('{{ dattobd_engine_kernel_upgrade }}')) == 'none'


def test_dkms_conf():
    text = _render('Debian', 'dkms.conf.j2', __dattobd_engine_src_version='0.12.1',
                   __dattobd_engine_src_hash='ab' * 32)
    conf = dict(line.split('=', 1) for line in text.splitlines() if line and not line.startswith('#'))
    assert conf['PACKAGE_NAME'] == '"dattobd"'
    assert conf['PACKAGE_VERSION'] == '"0.12.1"'
    assert conf['BUILT_MODULE_NAME[0]'] == '"dattobd"'
    assert conf['AUTOINSTALL'] == '"yes"'
    assert conf['PRE_BUILD'] == '"snapfleet-prebuild.sh ${kernelver}"'
    assert 'KVER=${kernelver} modules' in conf['MAKE[0]']
    off = _render('Debian', 'dkms.conf.j2', __dattobd_engine_src_version='0.12.1',
                  __dattobd_engine_src_hash='ab' * 32, dattobd_engine_source_autoinstall=False)
    assert 'AUTOINSTALL="no"' in off


def test_autoinstall_unit():
    text = _render('Debian', 'snapfleet-dattobd-autoinstall.service.j2', __dattobd_engine_dkms_bin='/usr/sbin/dkms')
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.optionxform = str
    ini.read_string(text)
    assert ini['Unit']['DefaultDependencies'] == 'no'
    assert 'local-fs-pre.target' in ini['Unit']['Before']
    assert ini['Service']['ExecStart'] == '/usr/sbin/dkms autoinstall -k %v'
    assert ini['Service']['Type'] == 'oneshot'
    assert ini['Service']['TimeoutStartSec'] == '3600'


def _spec():
    spec = _yaml('meta/argument_specs.yml')['argument_specs']['main']['options']
    # ArgumentSpecValidator does not know the documentation keys
    return {k: {kk: vv for kk, vv in v.items() if kk not in ('description',)} for k, v in spec.items()}


def test_argument_specs_match_defaults():
    spec = _yaml('meta/argument_specs.yml')['argument_specs']['main']['options']
    defaults = _yaml('defaults/main.yml')
    assert sorted(spec) == sorted(defaults)
    for name, opt in spec.items():
        assert opt.get('description'), name
        if 'choices' in opt and isinstance(defaults[name], str) and '{{' not in defaults[name]:
            assert defaults[name] in opt['choices'], name


@pytest.mark.parametrize('params, error', [
    ({'dattobd_engine_method': 'ppa'}, 'dattobd_engine_method'),
    ({'dattobd_engine_state': 'latest'}, 'dattobd_engine_state'),
    ({'dattobd_engine_kernels': 'some'}, 'dattobd_engine_kernels'),
    ({'dattobd_engine_kernel_upgrade': 'hope'}, 'dattobd_engine_kernel_upgrade'),
    ({'dattobd_engine_build_timeout': 'long'}, 'dattobd_engine_build_timeout'),
    ({'dattobd_engine_packages_files': 'a.deb'}, None),
    ({'dattobd_engine_method': 'source', 'dattobd_engine_source': '/srv/dattobd-0.12.1.tar.gz'}, None),
])
def test_argument_validation(params, error):
    result = ArgumentSpecValidator(_spec()).validate(params)
    if error:
        assert result.error_messages
        assert any(error in m for m in result.error_messages)
    else:
        assert not result.error_messages


def _prebuild(tmp_path):
    kdir = tmp_path / 'kconfig'
    text = _render('Debian', 'snapfleet-prebuild.sh.j2', __dattobd_engine_src_version='0.12.1',
                   __dattobd_engine_src_hash='ab' * 32, __dattobd_engine_kconfig_dir=str(kdir))
    build = tmp_path / 'build'
    build.mkdir()
    script = build / 'snapfleet-prebuild.sh'
    script.write_text(text)
    script.chmod(0o755)
    genconfig = build / 'genconfig.sh'
    genconfig.write_text('#!/bin/sh\necho "ran $1" >> calls\nprintf "#define KFREE_ADDR 0xffff1\\n" > kernel-config.h\n')
    genconfig.chmod(0o755)
    return build, kdir


def _run(build, kver='6.1.0-28-amd64', env=None):
    import subprocess
    return subprocess.run(['./snapfleet-prebuild.sh', kver], cwd=str(build), capture_output=True, text=True, check=False,
                          env=dict(os.environ, **(env or {})))


def test_prebuild_runs_genconfig_then_caches(tmp_path):
    build, kdir = _prebuild(tmp_path)
    res = _run(build)
    assert res.returncode == 0, res.stderr
    assert (build / 'calls').read_text() == 'ran 6.1.0-28-amd64\n'
    assert (kdir / 'kernel-config-6.1.0-28-amd64.h').read_text() == '#define KFREE_ADDR 0xffff1\n'
    # second build for the same kernel: genconfig is not run again
    (build / 'kernel-config.h').unlink()
    res = _run(build)
    assert res.returncode == 0, res.stderr
    assert 'from the cached' in res.stdout
    assert (build / 'calls').read_text() == 'ran 6.1.0-28-amd64\n'
    assert (build / 'kernel-config.h').read_text() == '#define KFREE_ADDR 0xffff1\n'
    # another kernel runs genconfig
    assert _run(build, '6.1.0-30-amd64').returncode == 0
    assert (build / 'calls').read_text().splitlines() == ['ran 6.1.0-28-amd64', 'ran 6.1.0-30-amd64']


def _feature_tests(build, names):
    tests = build / 'configure-tests' / 'feature-tests'
    tests.mkdir(parents=True)
    for name in names:
        (tests / (name + '.c')).write_text('int main(void) { return 0; }\n')


def test_prebuild_reports_each_configure_test_while_genconfig_runs(tmp_path):
    # the progress line a person (or tools/lab) reads during a build: "configure test N of M",
    # written while genconfig.sh is still running, then "compiling" once it has configured
    build, kdir = _prebuild(tmp_path)
    _feature_tests(build, ['bdops_submit_bio', 'blk_alloc_disk', 'kern_path'])
    (build / 'genconfig.sh').write_text(
        '#!/bin/sh\n'
        'n=0\n'
        'for t in A B; do\n'
        '  n=$((n + 1)); i=0\n'
        '  echo "performing configure test: HAVE_$t - present"\n'
        # wait (at most 10 s) until the prebuild step has counted this test, then record what it says
        '  until grep -qx "configure test $n of 3 for 6.1.0-28-amd64" .snapfleet-progress 2>/dev/null; do\n'
        '    i=$((i + 1)); [ $i -lt 200 ] || break; sleep 0.05\n'
        '  done\n'
        '  cat .snapfleet-progress >> seen\n'
        'done\n'
        'echo "performing configure test: HAVE_C - not present"\n'
        'printf "#define KFREE_ADDR 0xffff1\\n" > kernel-config.h\n')
    res = _run(build)
    assert res.returncode == 0, res.stderr
    assert (build / 'seen').read_text().splitlines() == [
        'configure test 1 of 3 for 6.1.0-28-amd64', 'configure test 2 of 3 for 6.1.0-28-amd64']
    # genconfig's own output still reaches DKMS (and its log), line for line
    assert res.stdout.splitlines() == ['performing configure test: HAVE_A - present',
                                       'performing configure test: HAVE_B - present',
                                       'performing configure test: HAVE_C - not present']
    assert (build / '.snapfleet-progress').read_text() == \
        'configured for 6.1.0-28-amd64 (3 configure tests); compiling\n'
    assert not (build / '.snapfleet-genconfig-rc').exists()
    # the next build for this kernel configures from the cache and says so
    res = _run(build)
    assert res.returncode == 0, res.stderr
    assert (build / '.snapfleet-progress').read_text() == \
        'configured for 6.1.0-28-amd64 from the cached kernel-config.h; compiling\n'


def test_prebuild_fails_with_genconfig_through_the_progress_pipe(tmp_path):
    # the counting pipe must not hide genconfig's exit status: a failed configure fails the build,
    # says so in the progress line, and caches nothing
    build, kdir = _prebuild(tmp_path)
    _feature_tests(build, ['a', 'b'])
    (build / 'genconfig.sh').write_text(
        '#!/bin/sh\necho "performing configure test: HAVE_A - present"\necho "no compiler" >&2\nexit 7\n')
    res = _run(build)
    assert res.returncode == 7
    assert 'no compiler' in res.stdout
    assert (build / '.snapfleet-progress').read_text() == \
        'configure failed for 6.1.0-28-amd64 (genconfig.sh exit status 7)\n'
    assert not kdir.exists() or not list(kdir.iterdir())


def test_prebuild_progress_never_fails_the_build(tmp_path):
    # a build directory where the progress file cannot be written still builds
    build, kdir = _prebuild(tmp_path)
    (build / '.snapfleet-progress.tmp').mkdir()
    (build / '.snapfleet-progress.tmp' / 'x').write_text('')
    res = _run(build)
    assert res.returncode == 0, res.stderr
    assert (kdir / 'kernel-config-6.1.0-28-amd64.h').exists()
    assert not (build / '.snapfleet-progress').exists()


REAL_MAP = 'ffffffff81000000 T _stext\n0000000000000000 D __per_cpu_start\n'
KV = '7.3.4+deb13-cloud-amd64'


def _sysroot(tmp_path, dbg=REAL_MAP, boot_dbg=None):
    """A root with /lib/modules/<kernel>/ and the -dbg package's System.map where trixie-backports puts it."""
    root = tmp_path / 'root'
    (root / 'lib' / 'modules' / KV).mkdir(parents=True)
    (root / 'boot').mkdir()
    (root / 'boot' / ('System.map-' + KV)).write_text('ffffffffffffffff B The real System.map is in the linux-image-dbg package\n')
    if dbg is not None:
        (root / 'usr' / 'lib' / 'debug' / 'lib' / 'modules' / KV).mkdir(parents=True)
        (root / 'usr' / 'lib' / 'debug' / 'lib' / 'modules' / KV / 'System.map').write_text(dbg)
    if boot_dbg is not None:
        (root / 'usr' / 'lib' / 'debug' / 'boot').mkdir(parents=True)
        (root / 'usr' / 'lib' / 'debug' / 'boot' / ('System.map-' + KV)).write_text(boot_dbg)
    return root


SEES_MAP = ('#!/bin/sh\n'
            'm="$SNAPFLEET_PREBUILD_SYSROOT/lib/modules/$1/System.map"\n'
            'if [ -L "$m" ]; then echo "link $(readlink "$m")" >> calls; else echo "no link" >> calls; fi\n'
            'printf "#define KFREE_ADDR 0xffff1\\n" > kernel-config.h\n')


DUMMY = 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n'


@pytest.mark.parametrize('fails', [False, True])
@pytest.mark.parametrize('dummy_in_modules', [False, True], ids=['bookworm layout', 'trixie-backports layout'])
def test_prebuild_links_the_system_map_of_a_newer_dbg_package_for_genconfig(tmp_path, fails, dummy_in_modules):
    # trixie-backports' linux-image-<k>-dbg keeps System.map in /usr/lib/debug/lib/modules/<k>/, where
    # genconfig.sh does not look, and its headers ship a dummy /lib/modules/<k>/System.map: the step links the
    # real one there for the configure step only, and puts the dummy back
    build, kdir = _prebuild(tmp_path)
    root = _sysroot(tmp_path)
    sysmap = root / 'lib' / 'modules' / KV / 'System.map'
    if dummy_in_modules:
        sysmap.write_text(DUMMY)
    (build / 'genconfig.sh').write_text(SEES_MAP + ('exit 3\n' if fails else ''))
    res = _run(build, KV, env={'SNAPFLEET_PREBUILD_SYSROOT': str(root)})
    assert res.returncode == (3 if fails else 0), res.stderr
    dbgmap = '%s/usr/lib/debug/lib/modules/%s/System.map' % (root, KV)
    assert (build / 'calls').read_text() == 'link %s\n' % dbgmap
    assert 'using the System.map of the -dbg package, %s' % dbgmap in res.stdout
    # put back afterwards, whether the configure step worked or not
    if dummy_in_modules:
        assert sysmap.read_text() == DUMMY and not sysmap.is_symlink()
    else:
        assert not os.path.lexists(str(sysmap))
    assert not os.path.lexists(str(sysmap) + '.snapfleet-aside')


@pytest.mark.parametrize('case', ['real map where genconfig looks', 'real map in /lib/modules', 'dummy dbg map',
                                  'no dbg map'])
def test_prebuild_links_no_system_map_when_genconfig_finds_one_or_there_is_none(tmp_path, case):
    build, kdir = _prebuild(tmp_path)
    root = _sysroot(tmp_path, dbg={'dummy dbg map': 'dummy\n', 'no dbg map': None}.get(case, REAL_MAP),
                    boot_dbg=REAL_MAP if case == 'real map where genconfig looks' else None)
    existing = root / 'lib' / 'modules' / KV / 'System.map'
    if case == 'real map in /lib/modules':
        existing.write_text(REAL_MAP)
    (build / 'genconfig.sh').write_text(SEES_MAP)
    res = _run(build, KV, env={'SNAPFLEET_PREBUILD_SYSROOT': str(root)})
    assert res.returncode == 0, res.stderr
    assert (build / 'calls').read_text() == 'no link\n'
    assert 'using the System.map' not in res.stdout
    if case == 'real map in /lib/modules':
        assert existing.read_text() == REAL_MAP
    else:
        assert not os.path.lexists(str(existing))


def test_prebuild_undoes_the_link_a_killed_build_left(tmp_path):
    build, kdir = _prebuild(tmp_path)
    root = _sysroot(tmp_path)
    sysmap = root / 'lib' / 'modules' / KV / 'System.map'
    dbgmap = root / 'usr' / 'lib' / 'debug' / 'lib' / 'modules' / KV / 'System.map'
    (root / 'lib' / 'modules' / KV / 'System.map.snapfleet-aside').write_text(DUMMY)
    sysmap.symlink_to(dbgmap)
    (build / 'genconfig.sh').write_text(SEES_MAP)
    res = _run(build, KV, env={'SNAPFLEET_PREBUILD_SYSROOT': str(root)})
    assert res.returncode == 0, res.stderr
    assert (build / 'calls').read_text() == 'link %s\n' % dbgmap
    assert sysmap.read_text() == DUMMY and not sysmap.is_symlink()
    assert not os.path.lexists(str(sysmap) + '.snapfleet-aside')


def test_prebuild_ignores_a_bad_cache_and_fails_with_genconfig(tmp_path):
    build, kdir = _prebuild(tmp_path)
    kdir.mkdir()
    (kdir / 'kernel-config-6.1.0-28-amd64.h').write_text('garbage\n')
    assert _run(build).returncode == 0
    assert (build / 'calls').exists()
    (build / 'genconfig.sh').write_text('#!/bin/sh\necho "System.map file not found for kernel version $1"\nexit 1\n')
    res = _run(build, '6.1.0-31-amd64')
    assert res.returncode != 0
    assert 'System.map file not found' in res.stdout
    assert not (kdir / 'kernel-config-6.1.0-31-amd64.h').exists()
