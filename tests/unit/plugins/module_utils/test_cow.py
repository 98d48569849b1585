# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of module_utils/_dattobd/cow.py: the real fixture, synthetic files, every rejection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import struct

import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cow
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError
from ansible_collections.snapfleet.dattobd.tests.unit.plugins.module_utils.cowfile import write_cow

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'fixtures', 'golden')
FIXTURE_COW = os.path.join(GOLDEN, 'cow-seq1.cow')
MIB = 1 << 20
UUID = '00112233445566778899aabbccddeeff'


def expected_runs(blocks):
    runs = []
    for b in sorted(set(blocks)):
        if runs and runs[-1][0] + runs[-1][1] == b:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    return [tuple(r) for r in runs]


# --- the real driver's file -------------------------------------------------------------------

def test_fixture_header_and_runs():
    c = cow.CowFile(FIXTURE_COW, device_size=64 * MIB)
    d = c.to_dict()
    assert (d['magic'], d['flags'], d['seq_id'], d['version'], d['nr_changed_blocks']) == (4776, 3, 1, 1, 177)
    assert d['clean'] and d['index_only'] and d['flags_text'] == 'clean,index-only'
    assert c.index_sections == 4 and c.data_offset == 135168 == c.file_size
    with open(os.path.join(GOLDEN, 'blockdiff.json')) as f:
        diff = json.load(f)
    blocks = diff['blocks_differing_base_vs_updated']
    assert list(c.runs()) == expected_runs(blocks)
    assert sum(n for s, n in c.runs()) == 177 == len(blocks)
    assert list(c.changed_blocks()) == sorted(blocks)


def test_fixture_without_device_size_uses_file_size():
    c = cow.CowFile(FIXTURE_COW)
    assert c.entries == 16384 and c.device_size is None
    assert sum(n for s, n in c.runs()) == 177


def test_summary_counts_and_digest_covers_header_and_index(tmp_path):
    s = cow.CowFile(FIXTURE_COW).summary()
    assert (s['blocks'], s['runs'], s['ignored_blocks']) == (177, len(list(cow.CowFile(FIXTURE_COW).runs())), 0)
    p = str(tmp_path / 'c.cow')
    with open(FIXTURE_COW, 'rb') as f:
        data = bytearray(f.read())
    data[4096 + 8 * 16000] = 1
    struct.pack_into('<Q', data, 56, 178)  # the count the driver would have written
    with open(p, 'wb') as f:
        f.write(data)
    s2 = cow.CowFile(p).summary()
    assert s2['blocks'] == 178 and s2['sha256'] != s['sha256']


# --- synthetic files --------------------------------------------------------------------------

@pytest.mark.parametrize('version', [0, 1])
def test_writer_layout_and_both_versions(tmp_path, version):
    p = str(tmp_path / 'v.cow')
    n = write_cow(p, 10 * MIB + 512, [0, 1, 2, 7, 2559], seq_id=5, uuid=UUID, version=version)
    assert n == 5
    # 10 MiB + one sector: 2560 blocks (the partial one is not indexed) -> 1 section
    assert os.path.getsize(p) == 4096 + 32768
    with open(p, 'rb') as f:
        raw = f.read()
    magic, flags, fpos, fsize, seq, uuid, ver, nr = cow.HEADER.unpack(raw[:64])
    assert (magic, flags, fpos, fsize, seq, ver) == (4776, 3, 9, 36864, 5, version)
    assert nr == (5 if version else 0)
    assert raw[64:4096] == bytes(4032)
    assert struct.unpack_from('<Q', raw, 4096 + 7 * 8)[0] == 1
    c = cow.CowFile(p, device_size=10 * MIB + 512)
    assert c.uuid == UUID and c.version == version and c.seq_id == 5
    assert c.to_dict()['nr_changed_blocks'] == (5 if version else None)
    assert list(c.runs()) == [(0, 3), (7, 1), (2559, 1)]


def test_snapshot_mode_file_with_data_area(tmp_path):
    p = str(tmp_path / 's.cow')
    size = 40 * MIB  # 10240 blocks -> 3 sections
    write_cow(p, size, [5, 6, 9000], values={5: 25, 6: 26}, flags=cow.FLAG_CLEAN, data_blocks=3)
    with pytest.raises(DattobdError, match='device size is needed'):
        cow.CowFile(p)
    c = cow.CowFile(p, device_size=size)
    assert not c.index_only and c.index_sections == 3
    assert list(c.runs()) == [(5, 2), (9000, 1)]


def test_runs_limit_max_run_and_chunking(tmp_path):
    p = str(tmp_path / 'l.cow')
    blocks = list(range(500, 530)) + list(range(4090, 4100)) + [8191]
    write_cow(p, 32 * MIB, blocks)
    c = cow.CowFile(p, device_size=32 * MIB)
    # runs cross chunk and section boundaries unharmed
    assert list(c.runs(chunk_bytes=8)) == [(500, 30), (4090, 10), (8191, 1)]
    assert list(c.runs(chunk_bytes=4096 + 8)) == [(500, 30), (4090, 10), (8191, 1)]
    assert list(c.runs(max_run=8)) == [(500, 8), (508, 8), (516, 8), (524, 6), (4090, 8), (4098, 2), (8191, 1)]
    assert list(c.runs(limit=4095)) == [(500, 30), (4090, 5)]
    assert c.ignored_blocks == 6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.sets(st.integers(min_value=0, max_value=3 * 4096 - 1), max_size=400),
       chunk=st.sampled_from([8, 4096, 12288, 1 << 20]), version=st.sampled_from([0, 1]))
def test_property_runs_equal_the_written_set(tmp_path, blocks, chunk, version):
    p = str(tmp_path / 'p.cow')
    write_cow(p, 3 * 4096 * 4096, blocks, version=version)
    c = cow.CowFile(p, device_size=3 * 4096 * 4096)
    runs = list(c.runs(chunk_bytes=chunk))
    assert runs == expected_runs(blocks)
    assert all(runs[i][0] + runs[i][1] < runs[i + 1][0] for i in range(len(runs) - 1))


# --- rejections -------------------------------------------------------------------------------

def _bad(tmp_path, name, mutate=None, size=16 * MIB, **kw):
    p = str(tmp_path / name)
    write_cow(p, size, [1, 2, 3], **kw)
    if mutate:
        mutate(p)
    return p


REJECTIONS = [
    # (name, writer kwargs, mutation, device size given to the reader, expected message)
    ('magic', dict(magic=1234), None, 16 * MIB, 'bad magic 1234'),
    ('dirty', dict(flags=cow.FLAG_INDEX_ONLY), None, 16 * MIB, 'not closed cleanly'),
    ('version', dict(version=7), None, 16 * MIB, 'unknown format version 7'),
    ('truncated-vs-device', {}, lambda p: os.truncate(p, 4096 + 32768 - 8), 16 * MIB, 'truncated index'),
    ('truncated-alone', {}, lambda p: os.truncate(p, 4096 + 1000), None, 'truncated index'),
    ('header-only', {}, lambda p: os.truncate(p, 4096), None, 'truncated index'),
    ('short', {}, lambda p: os.truncate(p, 20), None, 'too short'),
]


@pytest.mark.parametrize('name,kw,mutate,device_size,message', REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections(tmp_path, name, kw, mutate, device_size, message):
    p = _bad(tmp_path, name, mutate, **kw)
    with pytest.raises(cow.CowError, match=message) as info:
        cow.CowFile(p, device_size=device_size)
    assert info.value.to_result()['msg']


def test_rejects_index_larger_than_device(tmp_path):
    p = str(tmp_path / 'big.cow')
    write_cow(p, 64 * MIB, [1])  # 4 sections
    with pytest.raises(cow.CowError, match='index larger than the device: 4 sections for 2048 blocks') as info:
        cow.CowFile(p, device_size=8 * MIB)
    assert 'another (larger) device' in info.value.hint


def test_rejects_missing_and_unreadable(tmp_path):
    with pytest.raises(cow.CowError, match='No such file') as info:
        cow.CowFile(str(tmp_path / 'nope'))
    assert 'PREVIOUS COW file' in info.value.hint
    with pytest.raises(cow.CowError, match='Cannot read COW file'):
        cow.CowFile(str(tmp_path))  # a directory


def test_require_clean_false_reads_dirty_file(tmp_path):
    p = _bad(tmp_path, 'd', flags=cow.FLAG_INDEX_ONLY)
    assert list(cow.CowFile(p, require_clean=False).runs()) == [(1, 3)]


def test_file_shrinking_while_reading_is_an_error(tmp_path):
    p = _bad(tmp_path, 's')
    c = cow.CowFile(p)
    os.truncate(p, 4096 + 100)
    with pytest.raises(cow.CowError, match='short read of the index'):
        list(c.runs())


def test_writer_validates(tmp_path):
    with pytest.raises(ValueError):
        write_cow(str(tmp_path / 'x'), 16 * MIB, [4096 * 2])
    with pytest.raises(ValueError):
        write_cow(str(tmp_path / 'x'), 16 * MIB, [], uuid=b'short')
    with pytest.raises(DattobdError, match='Invalid device size'):
        cow.CowFile(_bad(tmp_path, 'ok'), device_size=-1)
    write_cow(str(tmp_path / 'y'), 16 * MIB, [], uuid=b'\x01' * 16)
    assert cow.CowFile(str(tmp_path / 'y')).uuid == '01' * 16


# --- integrity of the index (issue 15, finding 1) --------------------------------------------

def _patched(tmp_path, name, mutate, **kw):
    p = str(tmp_path / name)
    write_cow(p, kw.pop('size', 16 * MIB), kw.pop('blocks', [1, 2, 3]), **kw)
    with open(p, 'rb') as f:
        data = bytearray(f.read())
    mutate(data)
    with open(p, 'wb') as f:
        f.write(data)
    return p


def _entry(block, value):
    return lambda d: struct.pack_into('<Q', d, 4096 + 8 * block, value)


def test_fixture_passes_every_integrity_check():
    c = cow.CowFile(FIXTURE_COW, device_size=64 * MIB)
    assert (c.fpos, c.fsize, c.nr_changed_blocks) == (45, 135168, 177)
    assert c.summary()['blocks'] == 177  # 168 filler entries, 9 data-area block numbers 35..43


def test_entry_past_the_device_is_damage(tmp_path):
    # 10 MiB: 2560 blocks, one section of 4096 entries; entries 2560.. are padding the driver never sets.
    p = _patched(tmp_path, 'pad', _entry(3000, 1), size=10 * MIB, blocks=[1, 2])
    with pytest.raises(cow.CowError, match='1 index entry set past the last block of the 2560-block device') as info:
        list(cow.CowFile(p, device_size=10 * MIB).runs())
    assert info.value.details['cow_damaged'] and 'full backup' in info.value.hint
    # Without the device size every entry is in range: only the count tells (2 set + 1 = 3, header 2).
    with pytest.raises(cow.CowError, match='lists 3 changed blocks but its header counts 2'):
        cow.CowFile(p).summary()


@pytest.mark.parametrize('little', [True, False])
def test_data_area_values_and_duplicates(tmp_path, monkeypatch, little):
    monkeypatch.setattr(cow, '_LITTLE', little)
    size = 16 * MIB  # 1 section: data area starts at block 9
    good = str(tmp_path / 'good')
    write_cow(good, size, [1, 2, 600], values={1: 9, 600: 10}, data_blocks=2)
    with open(good, 'r+b') as f:  # the file after transition-to-incremental: index only, fpos kept
        f.truncate(4096 + 32768)
        f.seek(4)
        f.write(struct.pack('<I', 3))
        f.seek(16)
        f.write(struct.pack('<Q', 4096 + 32768))
    assert list(cow.CowFile(good, device_size=size).runs()) == [(1, 2), (600, 1)]
    with open(good, 'rb') as f:
        data = bytearray(f.read())
    for value, message in ((8, 'value 8 is neither'), (11, 'value 11 is neither'), (2, 'value 2 is neither'),
                           (9, 'gives data block 9 to two index entries .the second: block 700.')):
        bad = bytearray(data)
        _entry(700, value)(bad)
        struct.pack_into('<Q', bad, 56, 4)
        p = str(tmp_path / ('v%d' % value))
        with open(p, 'wb') as f:
            f.write(bad)
        with pytest.raises(cow.CowError, match=message):
            cow.CowFile(p, device_size=size).summary()


def test_duplicate_check_is_skipped_above_the_bitmap_cap(tmp_path, monkeypatch):
    p = _patched(tmp_path, 'dup', _entry(2, 9), blocks=[1, 2], values={1: 9}, data_blocks=1,
                 flags=cow.FLAG_CLEAN)
    with pytest.raises(cow.CowError, match='gives data block 9 to two'):
        cow.CowFile(p, device_size=16 * MIB).summary()
    monkeypatch.setattr(cow, 'MAX_SLOT_BITMAP', 0)
    assert cow.CowFile(p, device_size=16 * MIB).summary()['blocks'] == 2


def test_dirty_file_index_is_not_checked(tmp_path):
    """A dirty (live) file has a stale count and fpos: reading it is allowed, its index is not judged."""
    p = _patched(tmp_path, 'dirty', _entry(100, 1), flags=cow.FLAG_INDEX_ONLY)
    assert cow.CowFile(p, require_clean=False).summary()['blocks'] == 4


def test_version_0_file_has_no_count_to_check(tmp_path):
    p = _patched(tmp_path, 'v0', _entry(100, 1), version=0)
    assert cow.CowFile(p).summary()['blocks'] == 4


HEADER_DAMAGE = [
    ('flags', lambda d: struct.pack_into('<I', d, 4, 0x13), 'unknown flag bits 0x10'),
    ('padding', lambda d: d.__setitem__(64, 1), 'non-zero bytes in its header padding'),
    ('v0-count', lambda d: struct.pack_into('<QQ', d, 48, 0, 3), 'format version 0 but holds a changed-block count'),
    ('fsize', lambda d: struct.pack_into('<Q', d, 16, 4096), 'fsize. of 4096 bytes, smaller than its own header'),
    ('fpos-low', lambda d: struct.pack_into('<Q', d, 8, 8), r'fpos. as 8, outside 9..4105'),
    ('fpos-high', lambda d: struct.pack_into('<Q', d, 8, 4106), r'fpos. as 4106, outside 9..4105'),
]


@pytest.mark.parametrize('name,mutate,message', HEADER_DAMAGE, ids=[h[0] for h in HEADER_DAMAGE])
def test_header_damage(tmp_path, name, mutate, message):
    p = _patched(tmp_path, name, mutate)
    with pytest.raises(cow.CowError, match=message) as info:
        cow.CowFile(p, device_size=16 * MIB)
    assert info.value.details['cow_damaged'] and 'incremental chain is broken' in info.value.hint


# --- the index parsed once per cycle (remembered_runs) -------------------------------------------

def count_parses(monkeypatch):
    """The paths whose COW index is read from now on (one entry per parse)."""
    calls = []
    real = cow.CowFile.iter_index_chunks

    def counting(self, *a, **kw):
        calls.append(self.path)
        return real(self, *a, **kw)

    monkeypatch.setattr(cow.CowFile, 'iter_index_chunks', counting)
    return calls


def test_remembered_runs_parses_each_file_once_inside_the_scope_only(tmp_path, monkeypatch):
    path = str(tmp_path / 'c.cow')
    write_cow(path, 64 << 20, [1, 2, 3, 100, 7000], seq_id=2)
    calls = count_parses(monkeypatch)
    want = [(1, 3), (100, 1), (7000, 1)]
    assert list(cow.CowFile(path).runs()) == want and list(cow.CowFile(path).runs()) == want
    assert len(calls) == 2                                 # outside a scope: read every time
    with cow.remembered_runs():
        first = cow.CowFile(path, device_size=64 << 20)
        assert list(first.runs()) == want and first.ignored_blocks == 0
        assert list(cow.CowFile(path, device_size=64 << 20).runs()) == want
        assert list(cow.CowFile(path, device_size=64 << 20).runs(max_run=1))[:3] == [(1, 1), (2, 1), (3, 1)]
        assert len(calls) == 4                             # once for the default limit, once for max_run=1
        with cow.remembered_runs():                        # a nested scope shares the outer one
            assert list(cow.CowFile(path, device_size=64 << 20).runs()) == want
        assert len(calls) == 4
        small = cow.CowFile(path, device_size=64 << 20)    # another limit: its own entry, its own count
        assert list(small.runs(limit=1024)) == [(1, 3), (100, 1)] and small.ignored_blocks == 1
        again = cow.CowFile(path, device_size=64 << 20)
        assert list(again.runs(limit=1024)) == [(1, 3), (100, 1)] and again.ignored_blocks == 1
        assert len(calls) == 5
    assert list(cow.CowFile(path).runs()) == want and len(calls) == 6    # the scope ended


def test_remembered_runs_reads_a_changed_file_again(tmp_path, monkeypatch):
    path = str(tmp_path / 'c.cow')
    write_cow(path, 64 << 20, [5, 6], seq_id=2)
    calls = count_parses(monkeypatch)
    with cow.remembered_runs():
        assert list(cow.CowFile(path).runs()) == [(5, 2)]
        os.unlink(path)
        write_cow(path, 64 << 20, [9], seq_id=3)           # another file under the same name
        assert list(cow.CowFile(path).runs()) == [(9, 1)]
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))   # the same file, touched
        assert list(cow.CowFile(path).runs()) == [(9, 1)]
        assert len(calls) == 3


def test_remembered_runs_keeps_nothing_of_a_damaged_or_unfinished_read(tmp_path, monkeypatch):
    path = str(tmp_path / 'c.cow')
    write_cow(path, 64 << 20, [5, 6, 9], seq_id=2)
    with open(path, 'r+b') as handle:                       # the header says 3 blocks; the index has 2
        handle.seek(4096 + 9 * 8)
        handle.write(bytes(8))
    calls = count_parses(monkeypatch)
    with cow.remembered_runs():
        for dummy in range(2):
            with pytest.raises(DattobdError, match='nr_changed_blocks|changed blocks'):
                list(cow.CowFile(path).runs())
        assert len(calls) == 2                              # a damaged index is never remembered as good
        good = str(tmp_path / 'g.cow')
        write_cow(good, 64 << 20, [5, 6, 9], seq_id=2)
        runs = cow.CowFile(good).runs()
        assert next(runs) == (5, 2)                          # read in part only: not remembered
        assert list(cow.CowFile(good).runs()) == [(5, 2), (9, 1)]
        assert list(cow.CowFile(good).runs()) == [(5, 2), (9, 1)]
        assert len(calls) == 4


def test_remembered_runs_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(cow, 'MEMO_MAX_RUNS', 3)
    many, few = str(tmp_path / 'many.cow'), str(tmp_path / 'few.cow')
    write_cow(many, 64 << 20, [1, 3, 5, 7], seq_id=2)       # 4 runs: more than the memo holds
    write_cow(few, 64 << 20, [1, 3], seq_id=2)
    calls = count_parses(monkeypatch)
    with cow.remembered_runs():
        for dummy in range(2):
            assert len(list(cow.CowFile(many).runs())) == 4
            assert len(list(cow.CowFile(few).runs())) == 2
        assert calls == [many, few, many]
