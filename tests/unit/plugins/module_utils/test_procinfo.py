# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""/proc/datto-info parser: every golden sample, every transcript snapshot, hostile inputs."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import procinfo
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError, ParseError

from ...conftest import GOLDEN

INFO_DIR = os.path.join(GOLDEN, 'datto-info')

# file -> (minor, state, state_name, failed, error_name, phase, mode)
SAMPLES = {
    'empty': None,
    'state-0': (0, 0, 'dormant incremental', False, None, 'dormant', 'incremental'),
    'state-1': (0, 1, 'dormant snapshot', False, None, 'dormant', 'snapshot'),
    'state-2': (0, 2, 'active incremental', False, None, 'active', 'incremental'),
    'state-3': (0, 3, 'active snapshot', False, None, 'active', 'snapshot'),
    'state-4': (0, 4, 'unverified incremental', False, None, 'unverified', 'incremental'),
    'state-5': (0, 5, 'unverified snapshot', False, None, 'unverified', 'snapshot'),
    'state-3-error': (3, 3, 'failed active snapshot (EFBIG)', True, 'EFBIG', 'active', 'snapshot'),
    'state-4-error': (0, 4, 'failed unverified incremental (ENOENT)', True, 'ENOENT', 'unverified', 'incremental'),
    'state-5-error': (0, 5, 'failed unverified snapshot (ENOENT)', True, 'ENOENT', 'unverified', 'snapshot'),
}


def read_sample(name):
    with open(os.path.join(INFO_DIR, 'datto-info.%s.json' % name), 'rb') as f:
        return f.read()


def test_all_samples_listed():
    names = sorted(n[len('datto-info.'):-len('.json')] for n in os.listdir(INFO_DIR))
    assert names == sorted(SAMPLES)


@pytest.mark.parametrize('name', sorted(SAMPLES))
def test_golden_sample(name):
    info = procinfo.parse(read_sample(name))
    assert info.loaded and info.version == '0.12.1'
    expected = SAMPLES[name]
    if expected is None:
        assert info.devices == []
        assert info.free_minors() == list(range(24))
        return
    (dev,) = info.devices
    minor, state, state_name, failed, error_name, phase, mode = expected
    d = dev.to_dict()
    assert (d['minor'], d['state'], d['state_name'], d['failed'], d['error_name'], d['phase'], d['mode']) == expected
    assert d['block_device'] == '/dev/vdb'
    assert d['snapshot_device'] == '/dev/datto%d' % minor
    assert info.by_minor(minor) is dev and info.by_minor(99) is None
    assert minor not in info.free_minors()
    assert info.used_minors() == [minor]
    assert info.to_dict()['devices'][0]['minor'] == minor
    assert repr(dev).startswith('Tracker(')
    if failed:
        assert d['error_text']
    if state in (4, 5):
        assert d['seq_id'] is None and d['uuid'] is None


def _transcript_proc_texts():
    with open(os.path.join(GOLDEN, 'transcript.jsonl')) as f:
        for line in f:
            r = json.loads(line)
            for key in ('proc_before', 'proc_after'):
                # '<read ... blocked ...>' is the recorder's note of a wedged read, not driver output
                if r.get(key) and not r[key].startswith('<'):
                    yield '%d-%s' % (r['seq'], key), r[key]


TRANSCRIPT = list(_transcript_proc_texts())


@pytest.mark.parametrize('label, text', TRANSCRIPT, ids=[t[0] for t in TRANSCRIPT])
def test_every_transcript_snapshot_parses(label, text):
    info = procinfo.parse(text)
    assert info.loaded
    for dev in info.devices:
        assert dev.state in procinfo.STATE_NAMES
        assert dev.to_dict()['state_name']


def render(devices, version='0.12.1'):
    """The driver's exact layout (src/proc_seq_file.c), paths NOT escaped."""
    out = ['{\n\t"version": "%s",\n\t"devices": [\n' % version]
    items = []
    for d in devices:
        lines = ['\t\t{\n']
        keys = list(d)
        for key in keys:
            value = d[key]
            comma = ',' if key != keys[-1] else ''
            if isinstance(value, dict):
                inner = ',\n'.join('\t\t\t\t"%s": %d' % kv for kv in value.items())
                lines.append('\t\t\t"%s": {\n%s\n\t\t\t}%s\n' % (key, inner, comma))
            elif isinstance(value, int):
                lines.append('\t\t\t"%s": %d%s\n' % (key, value, comma))
            else:
                lines.append('\t\t\t"%s": "%s"%s\n' % (key, value, comma))
        lines.append('\t\t}')
        items.append(''.join(lines))
    out.append(',\n'.join(items) if items else '')
    out.append('\n\t]\n}\n')
    return ''.join(out)


def dev(minor=0, cow='/.datto0', bdev='/dev/vdb', state=3, **extra):
    d = {'minor': minor, 'cow_file': cow, 'block_device': bdev, 'max_cache': 314572800, 'fallocate': 26214400,
         'cow_size_current': 26843545, 'seq_id': 1, 'uuid': 'f9b2e03b8553433d9fc904d0a92227c1', 'version': 1,
         'nr_changed_blocks': 5}
    d.update(extra)
    d['state'] = state
    return d


@pytest.mark.parametrize('cow', [
    '/with "quote".cow', '/back\\slash', '/with space/x', '/ünïcödé', '/tab\tin', '/brace},{"x', '/a", "b": "c',
    '/trailing\\', '/"', '/comma,\n\t\t\t"minor": 9,',
])
def test_hostile_paths_parse_verbatim(cow):
    text = render([dev(cow=cow), dev(minor=1, cow='/.ok', bdev='/dev/sd"b')])
    info = procinfo.parse(text)
    assert [d.minor for d in info.devices] == [0, 1]
    assert info.devices[0].cow_file == cow
    assert info.devices[1].block_device == '/dev/sd"b'


def test_invalid_utf8_path():
    text = render([dev(cow='/PLACEHOLDER')]).encode('utf-8').replace(b'PLACEHOLDER', b'bad\xff\xfe')
    info = procinfo.parse(text)
    assert os.fsencode(info.devices[0].cow_file) == b'/bad\xff\xfe'
    assert info.devices[0].to_dict()['cow_file'] == '/bad\\xff\\xfe'
    json.dumps(info.to_dict())


def test_auto_expand_and_unknown_keys():
    text = render([dev(auto_expand={'step_size_mib': 512, 'reserved_space_mib': 1024}, error=-27)])
    info = procinfo.parse(text)
    d = info.devices[0]
    assert d.auto_expand == {'step_size_mib': 512, 'reserved_space_mib': 1024}
    assert d.failed and d.to_dict()['error_name'] == 'EFBIG'
    # the same through the tolerant path (a quote in a path forces it)
    text = render([dev(cow='/q"', auto_expand={'step_size_mib': 5, 'reserved_space_mib': 0}, future_key=7,
                       other={'a': 1})])
    d = procinfo.parse(text).devices[0]
    assert d.auto_expand == {'step_size_mib': 5, 'reserved_space_mib': 0}
    assert d.extra['future_key'] == 7
    assert 'other' in d.extra
    # unknown keys through strict JSON
    obj = json.loads(render([dev(new_thing='x')]))
    d = procinfo.parse(json.dumps(obj)).devices[0]
    assert d.extra == {'new_thing': 'x'}


@pytest.mark.parametrize('text, message', [
    ('', 'empty'),
    ('   \n', 'empty'),
    ('{', 'truncated'),
    ('{\n\t"version": "0.12.1",\n\t"devices": [\n\t\t{\n\t\t\t"minor": 0,\n', 'truncated'),
    ('not json at all', 'does not start'),
    ('[]', 'devices'),
    ('{"devices": 5}', 'devices'),
    ('{"version": 3, "devices": []}', 'version'),
    ('{"version": "1", "devices": [5]}', 'not an object'),
    ('{"version": "1", "devices": [{"minor": 0}]}', 'lacks'),
    ('{"version": "1", "devices": [{"minor": "0", "cow_file": "/x", "block_device": "/y", "state": 3}]}',
     'not an integer'),
    ('{"version": "1", "devices": [{"minor": true, "cow_file": "/x", "block_device": "/y", "state": 3}]}',
     'not an integer'),
    ('{"version": "1", "devices": [{"minor": -1, "cow_file": "/x", "block_device": "/y", "state": 3}]}',
     'negative'),
    ('{"version": "1", "devices": [{"minor": 0, "cow_file": 5, "block_device": "/y", "state": 3}]}',
     'not a string'),
    ('{"version": "1", "devices": [{"minor": 0, "cow_file": "/x", "block_device": "/y", "state": 3, '
     '"auto_expand": 5}]}', 'auto_expand'),
    ('{' + '[' * 100000 + ']' * 100000 + '}', 'dattobd'),
    ('{\n\t"version": "0.12.1",\n\t"devices": [\n\t\tgarbage\n\t]\n}\n', 'cannot parse the device entry'),
])
def test_bad_inputs_raise_parse_error(text, message):
    with pytest.raises(ParseError) as exc:
        procinfo.parse(text)
    assert message in exc.value.msg


def test_duplicate_minors():
    with pytest.raises(ParseError, match='twice'):
        procinfo.parse(render([dev(), dev(cow='/x"')]))
    with pytest.raises(ParseError, match='twice'):
        procinfo.parse(json.dumps({'version': '1', 'devices': [json.loads(render([dev()]))['devices'][0]] * 2}))


def test_layout_errors():
    good = render([dev(cow='/q"'), dev(minor=1, cow='/r"')])
    with pytest.raises(ParseError, match='unexpected text'):
        procinfo.parse(good.replace('\t\t},\n\t\t{', '\t\t}X\n\t\t{', 1))
    with pytest.raises(ParseError, match='cannot parse'):
        procinfo.parse(good.replace('"seq_id": 1', '"seq_id": x', 1))
    with pytest.raises(ParseError, match='layout'):
        procinfo.parse('{\n"x": "/q""\n}\n')


def test_not_loaded_and_read(tmp_path):
    assert procinfo.parse(None).loaded is False
    assert procinfo.read(str(tmp_path / 'missing')).loaded is False
    p = tmp_path / 'datto-info'
    p.write_bytes(read_sample('state-3'))
    assert procinfo.read(str(p), timeout=5).devices[0].state == 3
    assert procinfo.ProcInfo(False).to_dict() == {'loaded': False, 'version': None, 'devices': []}


def test_unknown_state_and_display():
    t = procinfo.Tracker(0, '/x', '/dev/x', 9)
    assert 'unknown state' in t.state_name
    assert procinfo.display_text(None) is None


@pytest.mark.parametrize('content, expected', [('64\n', 64), ('0\n', 24), ('300\n', 24), ('x', 24), (None, 24)])
def test_max_snap_devices(tmp_path, content, expected):
    p = tmp_path / 'max'
    if content is not None:
        p.write_text(content)
    assert procinfo.max_snap_devices(str(p)) == expected


def test_parse_error_is_dattobd_error():
    assert issubclass(ParseError, DattobdError)
