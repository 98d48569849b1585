# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The library's layers as docs/architecture.md states them: each file imports what its row says, all of a lower level."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
LIB = os.path.join(ROOT, 'plugins', 'module_utils', '_dattobd')
ROW = re.compile(r'^\| ([0-9]+) \| `([a-z_]+)\.py` \| .* \| ([^|]+) \|$')


def documented():
    with open(os.path.join(ROOT, 'docs', 'architecture.md')) as f:
        rows = [ROW.match(line.rstrip('\n')) for line in f]
    return dict((m.group(2), (int(m.group(1)), set(m.group(3).split(', ')) - {'-'})) for m in rows if m)


def imported(name):
    """Library files ``name``.py imports (``from . import x``, ``from .x import y``, also inside functions)."""
    with open(os.path.join(LIB, name + '.py')) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module] if node.module else [a.name for a in node.names])
    return out


def test_every_library_file_is_in_the_table_with_its_imports_all_of_a_lower_level():
    table = documented()
    files = sorted(f[:-3] for f in os.listdir(LIB) if f.endswith('.py') and f != '__init__.py')
    assert sorted(set(files) - set(table)) == [], 'library files without a row in the layer table of docs/architecture.md'
    assert sorted(set(table) - set(files)) == [], 'rows of docs/architecture.md naming no library file'
    for name, (level, listed) in table.items():
        got = imported(name)
        # backup is the entry point of the backup_* files (the module's runner, a host's volumes): it is above every
        # one of them, and only a file above it (the host-local runner) imports it
        assert 'backup' not in got or level > table['backup'][0], name
        if name == 'backup':
            assert all(table[n][0] < level for n in files if n.startswith('backup_')), name
        assert got == listed, '%s imports %s; its row says %s' % (name, sorted(got), sorted(listed))
        assert all(table[dep][0] < level for dep in got), '%s (level %d) imports a file of its level or above' % (name, level)
