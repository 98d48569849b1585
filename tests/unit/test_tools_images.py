# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest images' names in the environment: tools/lib.sh's vm_base_var (the shell side of
tools/vm-test, tools/lab and tools/images/engine-base) and Molecule's create playbook name the
same SNAPFLEET_VM_BASE_<IMAGE> variable, also for an image whose name has a dash."""

from __future__ import annotations

import os
import subprocess

import jinja2
import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
LIB = os.path.join(ROOT, 'tools', 'lib.sh')
CREATE = os.path.join(ROOT, 'extensions', 'molecule', 'resources', 'create.yml')
IMAGES = ['debian12', 'debian13', 'debian12-dracut']


def _shell_name(image):
    res = subprocess.run(['bash', '-c', '. "$0"; vm_base_var "$1"', os.path.abspath(LIB), image],
                         capture_output=True, text=True, check=True, timeout=60)
    return res.stdout.strip()


def _create_override_template():
    """The create playbook's ``__sf_override`` expression (the overlay base an image's guests get)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if '__sf_override' in node:
                found.append(node['__sf_override'])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    with open(CREATE) as handle:
        walk(yaml.safe_load(handle))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize('image', IMAGES)
def test_shell_and_create_playbook_name_the_same_variable(image):
    name = _shell_name(image)
    assert name == 'SNAPFLEET_VM_BASE_' + image.upper().replace('-', '_')
    env = jinja2.Environment()
    env.globals['lookup'] = lambda kind, var, default='': var
    assert env.from_string(_create_override_template()).render(item={'image': image}) == name


def test_every_image_recipe_has_a_valid_variable_name():
    names = sorted(f[:-len('.conf')] for f in os.listdir(os.path.join(ROOT, 'tools', 'images')) if f.endswith('.conf'))
    assert set(IMAGES) <= set(names), names
    for image in names:
        name = _shell_name(image)
        assert name.replace('_', 'A').isalnum() and not name[0].isdigit(), (image, name)
