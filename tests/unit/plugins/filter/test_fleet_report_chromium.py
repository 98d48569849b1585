# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render a sample fleet report in headless Chromium and check the screenshot.

The page must lead with what needs a person: the test decodes the PNG (standard library only)
and follows the coloured left borders down the page: the red headline ("2 of 4 hosts need
attention"), the rows of the "Needs attention" list, then the volume table (drawn by the page's
script) with its red (problem) rows above its green (healthy) ones. Skipped when no chromium binary is installed (``apt-get install chromium``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import struct
import subprocess
import zlib

import pytest

from ansible_collections.snapfleet.dattobd.plugins.filter import fleet_report as fr

CHROMIUM = next((shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome')
                 if shutil.which(n)), None)

RED = (0xcf, 0x22, 0x2e)
GREEN = (0x2d, 0xa4, 0x4e)
YELLOW = (0xd4, 0xa7, 0x2c)


def read_png(path):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG into (width, height, rows of RGB tuples)."""
    with open(path, 'rb') as handle:
        data = handle.read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat, width = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            width, height, depth, ctype, dummy, dummy2, interlace = struct.unpack('>IIBBBBB', body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
            bpp = 3 if ctype == 2 else 4
        elif kind == b'IDAT':
            idat.append(body)
        pos += 12 + length
    raw = zlib.decompress(b''.join(idat))
    stride = width * bpp
    rows, prev, off = [], bytearray(stride), 0
    for dummy in range(height):
        ftype, line = raw[off], bytearray(raw[off + 1:off + 1 + stride])
        off += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xff
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xff
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xff
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xff
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def near(pixel, colour, tol=24):
    return all(abs(p - c) <= tol for p, c in zip(pixel, colour))


@pytest.mark.skipif(CHROMIUM is None, reason='chromium not installed (apt-get install -y chromium)')
def test_report_screenshot(tmp_path):
    hosts = {
        'web-%02d' % i: {'info': {'loaded': True, 'version': '0.12.1',
                                  'trackers': [{'minor': 0, 'block_device': '/dev/vdb', 'state': 2}]},
                         'records': [{'device': '/dev/vdb', 'minor': 0, 'last_result': 'ok',
                                      'last_success': '2026-01-02T11:00:00Z', 'next_run': 'incremental'}]}
        for i in range(2)
    }
    failed_tracker = {'minor': 1, 'block_device': '/dev/vdc', 'state': 3, 'error': -27}
    hosts['db-01'] = {'info': {'loaded': True, 'trackers': [failed_tracker]}, 'records': []}
    hosts['off-01'] = {'unreachable': True, 'msg': 'powered off'}
    page = tmp_path / 'report.html'
    page.write_text(fr.fleet_report_html(fr.fleet_report(hosts, generated='2026-01-02T12:00:00Z')))
    shot = tmp_path / 'report.png'
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
           '--window-size=1000,900', '--screenshot=%s' % shot, page.as_uri()]
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=env, check=False)
    if not shot.exists():
        pytest.skip('chromium could not take a screenshot here: %s' % proc.stderr[-500:])
    width, height, rows = read_png(str(shot))
    assert (width, height) == (1000, 900)
    # Scan a column inside the left borders (body margin 1.5em = 21px).
    col = None
    for x in range(15, 60):
        if any(near(rows[y][x], GREEN) for y in range(height)):
            col = x
            break
    assert col is not None, 'no healthy volume row drawn'
    runs, current = [], None
    for y in range(height):
        window = [rows[y][x] for x in range(max(0, col - 3), col + 4)]
        colour = ('red' if any(near(px, RED) for px in window) else
                  'yellow' if any(near(px, YELLOW) for px in window) else
                  'green' if any(near(px, GREEN) for px in window) else None)
        if colour != current:
            if colour:
                runs.append(colour)
            current = colour
    # the headline, the problem list (off-01 unreachable and db-01's failed tracker in red, then
    # db-01's "never backed up" warning), the volume rows of off-01 and db-01, then the two
    # healthy hosts' rows (adjacent rows make one run).
    assert runs == ['red', 'red', 'yellow', 'red', 'green'], runs
