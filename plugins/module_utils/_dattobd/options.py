# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A module's argument spec applied without Ansible (the host-local runner, ``cli.py``).

:func:`apply_spec` does for a dict what ``AnsibleModule`` does for a task's arguments, for the
option types this collection declares (``str``, ``path``, ``int``, ``float``, ``bool``, ``list``
with ``elements`` ``str`` or ``dict`` and sub-options, ``dict``): unknown options, missing required
ones, types (numbers in ASCII digits only: ``validation.to_int``/``to_number``), choices, then the
defaults. The result is a new dict; the argument is not changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import validation
from .errors import DattobdError

# ansible.module_utils.parsing.convert_bool's words
BOOLEANS_TRUE = ('y', 'yes', 'on', '1', 'true', 't')
BOOLEANS_FALSE = ('n', 'no', 'off', '0', 'false', 'f', '')


def _bool(value, name):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in BOOLEANS_TRUE + BOOLEANS_FALSE:
        return value.strip().lower() in BOOLEANS_TRUE
    raise DattobdError('%s must be true or false, got %r.' % (name, value))


def _str(value, name):
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # as ansible-core converts a number given for a string
    raise DattobdError('%s must be a string, got %r.' % (name, value))


def _int(value, name):
    number = None if isinstance(value, (bool, float)) else validation.to_int(value, strip=True)
    if number is None:
        raise DattobdError('%s must be an integer written in ASCII digits, got %r.' % (name, value))
    return number


def _float(value, name):
    number = None if isinstance(value, bool) else validation.to_number(value, strip=True)
    if number is None:
        raise DattobdError('%s must be a number written in ASCII digits, got %r.' % (name, value))
    return float(number)


SCALARS = {'str': _str, 'path': _str, 'int': _int, 'float': _float, 'bool': _bool}


def _convert(opt, value, name):
    kind = opt.get('type', 'str')
    if kind in SCALARS:
        return SCALARS[kind](value, name)
    if kind == 'dict':
        if not isinstance(value, dict):
            raise DattobdError('%s must be a dictionary, got %r.' % (name, value))
        return apply_spec(opt['options'], value, name + '.') if opt.get('options') else dict(value)
    if kind == 'list':
        if not isinstance(value, list):
            raise DattobdError('%s must be a list, got %r.' % (name, value))
        element = dict(opt, type=opt.get('elements', 'str'))
        element.pop('choices', None)
        return [_convert(element, item, '%s[%d]' % (name, i)) for i, item in enumerate(value)]
    raise DattobdError('%s: option type %r is not supported here.' % (name, kind))


def apply_spec(spec, params, prefix=''):
    """``params`` checked against the argument ``spec`` and completed with its defaults (a new dict).

    Raises :class:`DattobdError` naming the first bad option (``prefix``: where the dict is, for
    sub-options). ``None`` counts as not given, as in a task.
    """
    if not isinstance(params, dict):
        raise DattobdError('%s must be a dictionary, got %r.' % (prefix.rstrip('.') or 'the options', params))
    unknown = sorted(str(k) for k in params if k not in spec)
    if unknown:
        raise DattobdError('Unsupported option%s %s (supported: %s).' % (
            's' if len(unknown) > 1 else '', ', '.join(prefix + k for k in unknown), ', '.join(sorted(spec))))
    out = {}
    for name in sorted(spec):
        opt = spec[name]
        value = params.get(name)
        if value is None:
            if opt.get('required'):
                raise DattobdError('%s%s is required.' % (prefix, name))
            default = opt.get('default')
            out[name] = list(default) if isinstance(default, list) else default
            continue
        value = _convert(opt, value, prefix + name)
        choices = opt.get('choices')
        if choices is not None and value not in choices:
            raise DattobdError('%s%s must be one of %s, got %r.' % (prefix, name, ', '.join(map(str, choices)), value))
        out[name] = value
    return out
