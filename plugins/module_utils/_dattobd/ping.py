# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pings of a backup run to a monitor, as healthchecks-style services take them (``ping_url``).

A run pings ``<url>/start`` before its first cycle, then ``<url>`` when every cycle that pings this URL
succeeded or ``<url>/fail`` when one failed, with the failures' lines (the log tail) as the request
body. The URL usually holds a secret (the check's id): messages name only its scheme and host.

A ping is best effort: one that fails (no answer within :data:`TIMEOUT` s, an HTTP error) is a warning
and never fails the backup. A run refused before it starts (a bad parameter) and check mode ping
nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import ssl
from urllib.parse import urlsplit

from .errors import DattobdError

TIMEOUT = 10
MAX_URL = 2048
MAX_BODY = 10000  # bytes of the failure lines sent (their end: the last lines matter most)
SUFFIX = {'start': '/start', 'success': '', 'fail': '/fail'}


def redact(url):
    """``https://hc-ping.com/...``: the URL without what may be a secret (its path, a user name or password)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except (TypeError, ValueError, AttributeError):
        return '(not a URL)'
    if not parts.scheme or not host:
        return '(not a URL)'
    return '%s://%s%s/...' % (parts.scheme, host, ':%d' % port if port else '')


def check_url(url, name='ping_url'):
    """The URL to ping (no trailing slash), or None when ``url`` is None or empty. Raises :class:`DattobdError`."""
    if url is None or url == '':
        return None
    bad = None
    if not isinstance(url, str):
        bad = 'it is a %s' % type(url).__name__
    elif len(url) > MAX_URL:
        bad = 'it is longer than %d characters' % MAX_URL
    elif any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        bad = 'it has a space or a control character'
    else:
        parts = urlsplit(url)
        try:
            port_ok = parts.port is None or 0 < parts.port < 65536
        except ValueError:
            port_ok = False
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            bad = 'its scheme is not http or https, or it has no host'
        elif not port_ok:
            bad = 'its port is not a number from 1 to 65535'
        elif '@' in parts.netloc:
            bad = 'it has a user name or a password (not supported: the monitor\'s secret is in the path)'
        elif parts.query or parts.fragment or url.endswith(('?', '#')):
            bad = 'it has a query or a fragment (the pings append /start and /fail to its path)'
    if bad is not None:
        raise DattobdError('%s must be an http:// or https:// URL (the monitor\'s ping URL), but %s: %s.'
                           % (name, bad, redact(url) if isinstance(url, str) else type(url).__name__),
                           step='parameters', image_state='untouched')
    return url.rstrip('/')


def send(url, body):
    """POST ``body`` (bytes) to ``url`` (checked by :func:`check_url`); None, or what went wrong (one line).

    HTTPS verifies the server's certificate against the system's trust store. A redirect is not
    followed; any answer below 400 counts as received."""
    parts = urlsplit(url)
    try:
        if parts.scheme == 'https':
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=TIMEOUT,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
        try:
            conn.request('POST', parts.path or '/', body=body,
                         headers={'User-Agent': 'snapfleet-dattobd', 'Content-Type': 'text/plain; charset=utf-8'})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, TLS, a bad answer
        return ' '.join(str(exc).split()) or type(exc).__name__
    if response.status >= 400:
        return 'HTTP %d %s' % (response.status, response.reason)
    return None


class Pings(object):
    """The pings of one run: each distinct URL of its cycles (``urls``; None and '' are no URL).

    ``sender``: tests. :meth:`finish` returns what the result reports (None when nothing pings).
    """

    def __init__(self, urls, check_mode=False, sender=None):
        self.urls = [] if check_mode else sorted(set(u.rstrip('/') for u in urls if u))
        self.sender = sender or send
        self.sent = []
        self.warnings = []

    def _ping(self, url, what, body=b''):
        error = self.sender(url + SUFFIX[what], body)
        if error is None:
            self.sent.append('%s %s' % (what, redact(url)))
        else:
            self.warnings.append('The %s ping to %s failed: %s.' % (what, redact(url), error))

    def start(self):
        for url in self.urls:
            self._ping(url, 'start')

    def finish(self, failures):
        """``failures``: url -> the lines of the cycles that failed (none: success). The result's ``ping``."""
        for url in self.urls:
            lines = failures.get(url) or []
            body = ('\n'.join(lines) + '\n').encode('utf-8')[-MAX_BODY:] if lines else b''
            self._ping(url, 'fail' if lines else 'success', body)
        if not self.urls:
            return None
        return dict(urls=[redact(u) for u in self.urls], sent=list(self.sent), warnings=list(self.warnings))
