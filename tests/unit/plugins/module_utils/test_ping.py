# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""ping.py against a real HTTP server on loopback: what a healthchecks-style monitor receives, and a
monitor that is down or answers an error is a warning, never an exception."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import ping
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
except ImportError:  # pragma: no cover
    pytest.skip('Python 3 only', allow_module_level=True)


@pytest.fixture
def monitor():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 pylint: disable=invalid-name
            body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            seen.append((self.path, body, self.headers.get('User-Agent')))
            self.send_response(500 if self.path.startswith('/broken') else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.daemon = True
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_start_success_and_fail_reach_the_monitor(monitor):
    base, seen = monitor
    pings = ping.Pings([base + '/k1', None, '', base + '/k1/'])
    pings.start()
    result = pings.finish({})
    assert seen == [('/k1/start', b'', 'snapfleet-dattobd'), ('/k1', b'', 'snapfleet-dattobd')]
    assert result == {'urls': ['http://127.0.0.1:%s/...' % base.rsplit(':', 1)[1]], 'warnings': [],
                      'sent': ['start http://127.0.0.1:%s/...' % base.rsplit(':', 1)[1],
                               'success http://127.0.0.1:%s/...' % base.rsplit(':', 1)[1]]}
    del seen[:]
    pings = ping.Pings([base + '/k2'])
    pings.finish({base + '/k2': ['db: failed at copy: EIO', 'x' * 20000]})
    (path, body, agent), = seen
    assert path == '/k2/fail' and len(body) == ping.MAX_BODY and body.endswith(b'x' * 100 + b'\n')


def test_a_monitor_that_is_down_or_answers_an_error_is_a_warning(monitor):
    base, seen = monitor
    pings = ping.Pings([base + '/broken'])
    pings.start()
    assert pings.sent == [] and 'failed' in pings.warnings[0] and 'Internal Server Error' in pings.warnings[0]
    pings = ping.Pings(['http://127.0.0.1:9/nothing-listens'])
    out = pings.finish({})
    assert out['sent'] == [] and out['warnings'][0].startswith('The success ping to http://127.0.0.1:9/... failed: ')


def test_check_mode_pings_nothing(monitor):
    base, seen = monitor
    pings = ping.Pings([base + '/k'], check_mode=True)
    pings.start()
    assert pings.finish({}) is None and seen == []


@pytest.mark.parametrize('url', [1, 'ftp://h/k', 'https:///k', 'https://h/k?x=1', 'https://h/k#f', 'https://h/a b',
                                 'https://u:p@h/k', 'https://h:99999/k', 'https://h:x/k',
                                 'https://h/k\n', 'https://h/' + 'k' * 2048, 'h/k'])
def test_a_bad_url_is_refused(url):
    with pytest.raises(DattobdError) as info:
        ping.check_url(url)
    assert info.value.msg.startswith('ping_url must be an http:// or https:// URL')
    assert '/k' not in info.value.msg and 'u:p' not in info.value.msg  # the secret is not repeated


def test_a_good_url_loses_its_trailing_slash():
    assert ping.check_url('https://hc-ping.com/5f6a/') == 'https://hc-ping.com/5f6a'
    assert ping.check_url('') is None and ping.check_url(None) is None
