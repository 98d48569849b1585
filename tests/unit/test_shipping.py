# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipping metadata tells the truth: what the EE files declare matches what the code imports."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import fnmatch
import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Third-party imports ansible-core itself brings (allowed in controller-side plugins only).
ANSIBLE_CORE_DEPS = {'jinja2', 'yaml', 'markupsafe', 'cryptography', 'packaging', 'resolvelib'}
# Plugin folders whose code runs on the managed hosts (standard library only).
HOST_SIDE = ('modules', 'module_utils')


def _stdlib_names():
    names = set(getattr(sys, 'stdlib_module_names', ()))
    if not names:  # Python < 3.10
        pytest.skip('sys.stdlib_module_names needs Python 3.10+')
    return names


def _requirement_lines(path):
    with open(path) as f:
        return [line.split('#', 1)[0].strip() for line in f if line.split('#', 1)[0].strip()]


def _top_level_imports(path):
    with open(path, 'rb') as f:
        tree = ast.parse(f.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split('.')[0]


def _plugin_files():
    base = os.path.join(ROOT, 'plugins')
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        for name in filenames:
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, base).split(os.sep)[0], path


def test_plugins_import_nothing_requirements_txt_does_not_declare():
    """requirements.txt says 'nothing beyond ansible-core': every plugin import must agree."""
    stdlib = _stdlib_names()
    declared = {line.split('[')[0].split('=')[0].split('<')[0].split('>')[0].strip().lower()
                for line in _requirement_lines(os.path.join(ROOT, 'requirements.txt'))}
    problems = []
    for kind, path in _plugin_files():
        for lineno, mod in _top_level_imports(path):
            if mod in stdlib or mod in ('__future__', 'ansible', 'ansible_collections') or mod.lower() in declared:
                continue
            if kind not in HOST_SIDE and mod.lower() in ANSIBLE_CORE_DEPS:
                continue
            problems.append('%s:%d imports %s' % (os.path.relpath(path, ROOT), lineno, mod))
    assert not problems, ('imports not covered by the standard library, ansible-core or requirements.txt '
                          '(host-side code must use the standard library only): %s' % problems)


def test_requirements_txt_declares_no_python_package():
    assert _requirement_lines(os.path.join(ROOT, 'requirements.txt')) == []


def test_execution_environment_metadata_points_at_the_dependency_files():
    with open(os.path.join(ROOT, 'meta', 'execution-environment.yml')) as f:
        data = yaml.safe_load(f)
    assert data['dependencies'] == {'python': 'requirements.txt', 'system': 'bindep.txt'}
    for name in data['dependencies'].values():
        assert os.path.isfile(os.path.join(ROOT, name)), name
    ee_schema = pytest.importorskip('ansible_builder.ee_schema')
    ee_schema.validate_schema(data)


def test_bindep_lines_name_a_package_for_both_package_families():
    lines = _requirement_lines(os.path.join(ROOT, 'bindep.txt'))
    assert lines, 'bindep.txt lists nothing'
    families = set()
    for line in lines:
        parts = line.split()
        assert len(parts) == 2 and parts[1].startswith('[') and parts[1].endswith(']'), (
            'bindep line without a platform profile: %r' % line)
        families.update(p for p in parts[1].strip('[]').split() if p.startswith('platform:'))
    assert {'platform:dpkg', 'platform:rpm'} <= families


@pytest.mark.parametrize('path', [
    'tests/unit/test_x.py', 'tests/fixtures/golden/cow-seq1.cow', 'benchmarks/sync.py', 'tools/test',
    '.ci/run', 'extensions/molecule/default/molecule.yml', 'lab/guest.qcow2', 'images/debian.img',
    'x/disk.zst', 'logs/serial.log', 'roles/engine/__pycache__/x.pyc',
])
def test_galaxy_build_ignore_keeps_development_files_out(path):
    with open(os.path.join(ROOT, 'galaxy.yml')) as f:
        patterns = yaml.safe_load(f)['build_ignore']
    parts = path.split('/')
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    assert any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns), path


@pytest.mark.parametrize('path', [
    'plugins/modules/info.py', 'roles/engine/tasks/main.yml', 'playbooks/status.yml', 'meta/runtime.yml',
    'docs/collections/info_module.rst', 'README.md', 'CHANGELOG.md', 'bindep.txt', 'requirements.txt',
    'meta/execution-environment.yml', 'changelogs/changelog.yaml',
])
def test_galaxy_build_ignore_keeps_shipped_files_in(path):
    with open(os.path.join(ROOT, 'galaxy.yml')) as f:
        patterns = yaml.safe_load(f)['build_ignore']
    parts = path.split('/')
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    assert not any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns), path


def test_changelog_config_renders_the_markdown_changelog():
    with open(os.path.join(ROOT, 'changelogs', 'config.yaml')) as f:
        config = yaml.safe_load(f)
    assert config['title'] == 'snapfleet.dattobd'
    assert config['output'] == [{'file': 'CHANGELOG.md', 'format': 'md'}]
    with open(os.path.join(ROOT, 'changelogs', 'changelog.yaml')) as f:
        changes = yaml.safe_load(f)
    assert 'releases' in changes
