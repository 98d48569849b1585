# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.snapfleet.dattobd`` importable when pytest runs from the repository.

tools/test runs the suite from a copy staged under ``ansible_collections/snapfleet/dattobd``;
a developer running ``pytest tests/unit`` straight from a checkout gets a symlink farm instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION_ROOT = os.path.dirname(os.path.dirname(HERE))


def _ensure_importable():
    parts = COLLECTION_ROOT.split(os.sep)
    if len(parts) >= 3 and parts[-3:-2] == ['ansible_collections']:
        base = os.sep.join(parts[:-3])
    else:
        # One link per checkout: parallel checkouts (git worktrees) must not re-point each other's.
        tag = hashlib.sha1(COLLECTION_ROOT.encode('utf-8')).hexdigest()[:12]
        base = os.path.join(tempfile.gettempdir(), 'snapfleet-pytest-%d-%s' % (os.getuid(), tag))
        ns = os.path.join(base, 'ansible_collections', 'snapfleet')
        link = os.path.join(ns, 'dattobd')
        if not os.path.isdir(ns):
            os.makedirs(ns)
        if os.path.islink(link) and os.readlink(link) != COLLECTION_ROOT:
            os.unlink(link)
        if not os.path.lexists(link):
            os.symlink(COLLECTION_ROOT, link)
    if base not in sys.path:
        sys.path.insert(0, base)


_ensure_importable()

# Hypothesis keeps its cache in ./.hypothesis, made at its first use: made here up front, so the fuzz
# test, which watches the working directory for writes, sees it there whatever ran before it.
os.makedirs('.hypothesis', exist_ok=True)


FIXTURES = os.path.join(COLLECTION_ROOT, 'tests', 'fixtures')
GOLDEN = os.path.join(FIXTURES, 'golden')


def load_script(path, name):
    """The Python script at ``path`` (any file name, such as an installed helper without ``.py``) as a module."""
    loader = importlib.machinery.SourceFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def _wedge_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('run-snapfleet-dattobd'))


@pytest.fixture(autouse=True)
def _isolated_wedge_marker(_wedge_dir, monkeypatch):
    """No test reads or writes the host's wedge marker (/run/snapfleet-dattobd), nor sees another test's wedge."""
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import wedge
    monkeypatch.setattr(wedge, 'DEFAULT_DIR', _wedge_dir)
    path = wedge.marker_path(_wedge_dir)
    if os.path.lexists(path):
        os.unlink(path)
    wedge.reset()
    yield
    wedge.reset()


@pytest.fixture(autouse=True)
def _no_host_metrics_dir(tmp_path, monkeypatch):
    """No test writes into the host's node_exporter directory: the default one is a directory that does not exist."""
    from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import metrics
    monkeypatch.setattr(metrics, 'DEFAULT_DIR', str(tmp_path / 'no-node-exporter-here'))
