# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The short cycle history a backup record keeps (``history``), read by the fleet report's charts.

Each finished cycle, successful or failed, appends one entry; the record keeps the last
:data:`LENGTH`. A successful entry carries the cycle's figures (``blocks`` read, ``bytes`` written,
``read_bytes``, copy ``seconds``, ``cycle_seconds``); a failed one the ``step`` that failed and no
figures (the record still holds the last successful cycle's).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

LENGTH = 20
FIGURES = ('blocks', 'bytes', 'read_bytes', 'seconds')


def appended(record, finished, result, mode, figures=None, cycle_seconds=None, step=None):
    """The ``history`` of ``record`` with this cycle appended, cut to the last :data:`LENGTH` entries.

    A damaged history (not a list, entries that are not objects) is dropped or filtered, never an error."""
    old = record.get('history') if isinstance(record, dict) else None
    entries = [e for e in old if isinstance(e, dict)] if isinstance(old, list) else []
    entry = {'finished': finished, 'result': result, 'mode': mode}
    if result == 'ok':
        figures = figures or {}
        for key in FIGURES:
            entry[key] = figures.get(key)
        entry['cycle_seconds'] = cycle_seconds
    else:
        entry['step'] = step
    entries.append(entry)
    return entries[-LENGTH:]
