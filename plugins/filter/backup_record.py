# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side filter: the file name of the backup record (or lock) of an image, as the backup module names it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import backup as backup_lib

KINDS = {'record': backup_lib.record_name, 'lock': backup_lib.lock_name, 'legacy': backup_lib.legacy_record_name}


def backup_record_name(image, kind='record'):
    """File name, in the backup state directory, of the record (``kind='record'``), the lock (``lock``) or
    the record under its old name (``legacy``) of ``image``."""
    if not isinstance(image, str) or not image.startswith('/'):
        raise AnsibleFilterError('backup_record_name expects an absolute image path, got %r' % (image,))
    if kind not in KINDS:
        raise AnsibleFilterError('backup_record_name: kind must be one of %s, got %r' % (', '.join(sorted(KINDS)), kind))
    return KINDS[kind](image)


class FilterModule(object):
    def filters(self):
        return {'backup_record_name': backup_record_name}
