# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side filters for role variables that land in root-owned files.

``unsafe_values`` is the one check the roles' validate tasks run on such variables (absolute paths,
no control characters, strict versions); ``systemd_quote`` writes one value as one word of a
systemd unit file. Shell scripts use ``ansible.builtin.quote``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    Mapping = dict

from ansible.errors import AnsibleFilterError

# C0 controls (newline, tab, NUL ...), DEL, C1 controls and the Unicode line and paragraph separators.
CONTROL = re.compile(u'[\x00-\x1f\x7f-\x9f\u2028\u2029]')
VERSION = re.compile(r'[0-9]+(\.[0-9]+){1,3}([-~+][0-9A-Za-z.]+)?')
NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._+~:@-]*')
ENV_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
URL = re.compile(r'https?://[^\s"\'\\<>]+')
# Characters that need no quoting in a systemd word (after % is doubled and, on command lines, $).
SYSTEMD_SAFE = re.compile(r'[A-Za-z0-9_@%+=:,./-]+')

KINDS = {
    'path': 'an absolute path without control characters',
    'executable': 'an absolute path without control characters, quotes or backslashes',
    'text': 'a value without control characters or backslashes',
    'command': 'a one-line command without control characters or a trailing backslash',
    'name': 'a name of letters, digits and . _ + ~ : @ - (starting with a letter or digit)',
    'version': 'a release number such as 0.12.1 (digits and dots, optionally -, ~ or + and letters, digits, dots)',
    'url': 'an http(s) URL without spaces, quotes, backslashes or control characters',
    'environment': 'a dictionary of environment variable names to values without control characters',
}


def _problem(kind, value):
    """Why ``value`` is not of ``kind``, or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return 'not a string'
    text = str(value)
    if CONTROL.search(text):
        return 'holds a control character (newline, tab, NUL ...)'
    if kind == 'path':
        return None if text.startswith('/') else 'not an absolute path'
    if kind == 'executable':
        if not text.startswith('/'):
            return 'not an absolute path'
        # systemd refuses an executable name with quotes or backslashes ("special characters")
        return 'holds a quote or a backslash' if re.search('["\'\\\\]', text) else None
    if kind == 'text':
        return 'holds a backslash' if '\\' in text else None
    if kind == 'command':
        return 'ends with a backslash' if text.endswith('\\') else None
    patterns = {'name': NAME, 'version': VERSION, 'url': URL}
    if kind not in patterns:
        raise AnsibleFilterError('unsafe_values: unknown kind %r (known: %s)' % (kind, ', '.join(sorted(KINDS))))
    return None if patterns[kind].fullmatch(text) else 'not %s' % KINDS[kind]


def _walk(name, value, kind, empty):
    """(name, problem) for ``value`` and, for lists and dictionaries, every item in it."""
    if kind == 'environment':
        if not isinstance(value, Mapping):
            yield name, 'not a dictionary'
            return
        for key in sorted(value, key=str):
            if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
                yield '%s key %r' % (name, key), 'not an environment variable name'
            else:
                yield from _walk('%s.%s' % (name, key), value[key], 'command', True)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk('%s[%d]' % (name, index), item, kind, empty)
        return
    if empty and isinstance(value, str) and value == '':
        return
    problem = _problem(kind, value)
    if problem:
        yield name, problem


def unsafe_values(values, kind='text', empty=False):
    """``{variable name: value}`` -> one message per value (or list item) that is not a safe ``kind``.

    An empty list means every value is safe. ``empty=True`` accepts the empty string."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError('unsafe_values expects a dictionary of variable name to value')
    if kind not in KINDS:
        raise AnsibleFilterError('unsafe_values: unknown kind %r (known: %s)' % (kind, ', '.join(sorted(KINDS))))
    out = []
    for name in sorted(values, key=str):
        for where, problem in _walk(str(name), values[name], kind, empty):
            out.append('%s must be %s: %s (got %r)' % (where, KINDS[kind], problem, values[name]))
    return out


def systemd_quote(value, command=False):
    """One value as one word of a unit file: %% for %, and on command lines (``command=True``) $$ for $;
    double-quoted with \\\\ and \\" unless it holds only safe characters. Control characters are refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise AnsibleFilterError('systemd_quote expects a string, got %r' % (value,))
    text = str(value)
    if CONTROL.search(text):
        raise AnsibleFilterError('systemd_quote: %r holds a control character; it cannot be one word of a unit file'
                                 % (text,))
    text = text.replace('%', '%%')
    if command:
        text = text.replace('$', '$$')
    if SYSTEMD_SAFE.fullmatch(text):
        return text
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"')


class FilterModule(object):
    def filters(self):
        return {'unsafe_values': unsafe_values, 'systemd_quote': systemd_quote}
