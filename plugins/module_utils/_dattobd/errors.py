# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Exceptions shared by the library.

Every failure the modules report is a :class:`DattobdError` (or a subclass) carrying a
message that says what happened, an optional ``hint`` that says what to do, and optional
structured ``details`` (errno name, dmesg lines, command...). Modules turn it into
``fail_json(msg=..., **details)``; nothing in the library should let another exception
escape to the user as a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno as _errno
import os


class DattobdError(Exception):
    """A failure with an actionable message."""

    def __init__(self, msg, hint=None, **details):
        super(DattobdError, self).__init__(msg)
        self.msg = msg
        self.hint = hint
        self.details = details

    @property
    def full_msg(self):
        if self.hint:
            return '%s %s' % (self.msg.rstrip(), self.hint)
        return self.msg

    def to_result(self):
        """Keyword arguments for ``module.fail_json``.

        ``warnings`` gathered before the failure are not among them (ansible-core 2.19 deprecates
        passing them to ``fail_json``): :func:`fail_module` hands them to ``module.warn``.
        """
        result = dict(self.details)
        result.pop('warnings', None)
        result['msg'] = self.full_msg
        if self.hint:
            result['hint'] = self.hint
        return result

    @property
    def warnings(self):
        return list(self.details.get('warnings') or [])


def fail_module(module, exc, defaults=None, msg_prefix='', **overrides):
    """``module.fail_json`` for a :class:`DattobdError`: the one failure path of every module.

    The warnings gathered before the failure (``exc.details['warnings']``) go through
    ``module.warn``, so they reach the task result with the module's own earlier warnings.
    ``defaults`` fill result keys the error did not set, ``overrides`` replace them and
    ``msg_prefix`` goes in front of the message.
    """
    for warning in exc.warnings:
        module.warn(warning)
    result = dict(defaults or {})
    result.update(exc.to_result())
    result.update(overrides)
    result['msg'] = msg_prefix + result['msg']
    module.fail_json(**result)


class SyncError(DattobdError):
    """A sync (or a verification of a copy) that cannot run or did not complete."""


class DriverTimeout(DattobdError):
    """A driver call or /proc read did not return in time (a wedged driver)."""


class DriverWedged(DriverTimeout):
    """The driver is wedged: a driver call of this module call or of this boot timed out (``wedge.py``)."""


class ParseError(DattobdError):
    """Driver output that cannot be understood."""


def errno_name(num):
    """Return the symbolic name of an errno, accepting negative values (``-27`` -> ``EFBIG``)."""
    if num is None:
        return None
    try:
        num = abs(int(num))
    except (TypeError, ValueError):
        return None
    return _errno.errorcode.get(num, 'E%d' % num)


def errno_text(num):
    """strerror() of an errno, accepting negative values."""
    if num is None:
        return None
    try:
        return os.strerror(abs(int(num)))
    except (TypeError, ValueError):
        return None
