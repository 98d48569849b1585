# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one number parser of the library: ASCII decimal digits only.

``str.isdigit()``, ``int()`` and ``re``'s ``\\d`` all accept Unicode digits (``int('١') == 1``,
``'²'.isdigit()`` is true but ``int('²')`` raises): every number the collection reads from a user,
a file or a command goes through :func:`to_int` (or :func:`to_number` for a fraction) instead,
and module options declared as integers or floats are checked in their raw form by
:func:`check_number_options` (``float('١')`` is 1.0 too).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from .errors import DattobdError

# [0-9], not \d: ASCII only whatever the re flags.
_INT_RE = re.compile(r'\A-?[0-9]{1,1000}\Z')  # bounded: int() refuses more than 4300 digits
_CANONICAL_RE = re.compile(r'\A-?(0|[1-9][0-9]{0,999})\Z')
_WHITESPACE = ' \t\n\r\f\v'
# a decimal fraction with an optional exponent: no sign but '-', no '_', no 'inf' or 'nan'
_NUMBER_RE = re.compile(r'\A-?(?:[0-9]{1,1000}(?:\.[0-9]{0,1000})?|\.[0-9]{1,1000})(?:[eE][-+]?[0-9]{1,4})?\Z')


def _matching_text(value, pattern, strip):
    """``value`` (a str, or bytes of ASCII) as a str when ``pattern`` matches it, else None."""
    if isinstance(value, bytes):
        try:
            value = value.decode('ascii')
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    if strip:
        value = value.strip(_WHITESPACE)
    return value if pattern.match(value) else None


def to_int(value, canonical=False, strip=False):
    """``value`` as an int when it is an int (not a bool) or a string of ASCII decimal digits
    (an optional leading ``-``), else None.

    ``canonical=True`` also refuses leading zeros (``'007'``); ``strip=True`` ignores ASCII
    whitespace around the digits (file contents, command output).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = _matching_text(value, _CANONICAL_RE if canonical else _INT_RE, strip)
    return None if text is None else int(text, 10)


def _span(minimum, maximum, fmt):
    """' 0..255', ' >= 1', ' <= 9' or '': the allowed range in an error message."""
    if minimum is not None and maximum is not None:
        return (' %s..%s' % (fmt, fmt)) % (minimum, maximum)
    if minimum is not None:
        return (' >= %s' % fmt) % minimum
    if maximum is not None:
        return (' <= %s' % fmt) % maximum
    return ''


def check_int(value, what, minimum=None, maximum=None, error=DattobdError, canonical=False):
    """:func:`to_int` that raises ``error`` naming ``what`` and the allowed range."""
    number = to_int(value, canonical=canonical)
    if number is None or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise error('%s must be an integer%s written in ASCII digits, got %r.'
                    % (what, _span(minimum, maximum, '%d'), value))
    return number


def check_between(value, what, minimum, maximum, error=DattobdError):
    """An int (not a bool, not a string) in ``minimum..maximum``, else ``error`` naming ``what`` and both bounds.

    For values that are ints already (module options declared ``type: int``, driver arguments).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise error('%s must be an integer, got %r.' % (what, value))
    if value < minimum or value > maximum:
        raise error('%s must be between %d and %d, got %d.' % (what, minimum, maximum, value))
    return value


def to_number(value, strip=False):
    """``value`` as a finite float when it is an int or a float (not a bool) or a string of ASCII
    decimal notation (``'0.1'``, ``'30'``, ``'1e3'``; an optional leading ``-``), else None.

    NaN and the infinities (also ``'1e400'``, which overflows) are None; ``strip=True`` ignores
    ASCII whitespace around the number.
    """
    if isinstance(value, bool):
        return None
    number = value if isinstance(value, (int, float)) else _matching_text(value, _NUMBER_RE, strip)
    if number is None:
        return None
    try:
        number = float(number)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_number(value, what, minimum=None, maximum=None, error=DattobdError):
    """:func:`to_number` that raises ``error`` naming ``what`` and the allowed range."""
    number = to_number(value)
    if number is None or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise error('%s must be a number%s written in ASCII digits, got %r.'
                    % (what, _span(minimum, maximum, '%g'), value))
    return number


def _number_options(spec, raw, prefix=''):
    """(name, raw value, type) of every option declared ``type='int'`` or ``type='float'`` in ``spec``
    (nested dicts and lists of dicts too)."""
    for name, opt in sorted(spec.items()):
        if not isinstance(raw, dict) or name not in raw or raw[name] is None:
            continue
        if opt.get('type') in ('int', 'float'):
            yield prefix + name, raw[name], opt['type']
        elif opt.get('type') == 'dict' and opt.get('options'):
            yield from _number_options(opt['options'], raw[name], prefix + name + '.')
        elif opt.get('type') == 'list' and opt.get('elements') == 'dict' and opt.get('options') \
                and isinstance(raw[name], list):
            for index, item in enumerate(raw[name]):
                yield from _number_options(opt['options'], item, '%s%s[%d].' % (prefix, name, index))


def raw_params():
    """The task's arguments as the controller sent them, before AnsibleModule converted them
    (``int('١')`` is 1 there); {} when they cannot be read."""
    try:
        from ansible.module_utils import basic
        raw = basic._load_params()
    except (Exception, SystemExit):  # pylint: disable=broad-except
        return {}
    return raw if isinstance(raw, dict) else {}


def check_number_options(module, raw=None):
    """Fail the module when an integer option was given as anything but ASCII digits (a string
    ``'١'`` or ``'1e3'`` that ansible-core would turn into a number), or a float option as anything
    but a finite number in ASCII decimal notation (``'١'``, ``'nan'``, ``'1e400'``)."""
    raw = raw_params() if raw is None else raw
    for name, value, kind in _number_options(module.argument_spec, raw):
        if kind == 'int' and to_int(value, strip=True) is None:
            module.fail_json(msg='%s must be an integer written in ASCII digits, got %r.' % (name, value))
        if kind == 'float' and to_number(value, strip=True) is None:
            module.fail_json(msg='%s must be a number written in ASCII digits, got %r.' % (name, value))


def _shape_problem(spec, params):
    """The first option of type dict (or list of dicts) with sub-options given a value of another
    shape (ansible-core's own validation raises TypeError on those), or integer option given
    something else than ASCII digits (``inf`` raises OverflowError there), or None."""
    for name, opt in sorted(spec.items()):
        value = params.get(name)
        if value is None:
            continue
        if opt.get('type') == 'int' and to_int(value, strip=True) is None:
            return '%s must be an integer written in ASCII digits, got %r.' % (name, value)
        if not opt.get('options'):
            continue
        if opt.get('type') == 'dict' and not isinstance(value, (dict, str)):
            return '%s must be a dictionary, got %r.' % (name, value)
        if opt.get('type') == 'list' and opt.get('elements') == 'dict':
            items = value if isinstance(value, list) else None
            if items is None and not isinstance(value, str):
                return '%s must be a list of dictionaries, got %r.' % (name, value)
            for item in items or []:
                if not isinstance(item, (dict, str)):
                    return '%s must be a list of dictionaries, got an item %r.' % (name, item)
    return None


def make_module(module_class, argument_spec, **kwargs):
    """``module_class(argument_spec=..., **kwargs)`` that never ends in a traceback.

    ansible-core raises (instead of failing the task) when an option with sub-options gets a value
    of another shape (``auto_expand: -1``): the arguments are then read again without conversion and
    the module fails naming the option. Integer and float options are then checked by
    :func:`check_number_options`.
    """
    try:
        module = module_class(argument_spec=argument_spec, **kwargs)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        lax = dict((name, dict(type='raw', aliases=opt.get('aliases') or []))
                   for name, opt in argument_spec.items())
        module = module_class(argument_spec=lax, supports_check_mode=True)
        module.fail_json(msg='Invalid module arguments: %s' % (
            _shape_problem(argument_spec, module.params) or '%s.' % exc))
    check_number_options(module)
    return module
