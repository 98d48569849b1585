# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""COW integrity in the sync path, over the real fixture (cow-seq1.cow of dattobd 0.12.1).

The corruption table damages the real COW file in many ways (truncations, header fields, index
entries, the changed-block count, random bit flips with fixed seeds) and runs the sync from the
real seq-2 snapshot (expected.img) into the real base image. Each variant must be refused before a
byte is written (image and its metadata unchanged), or fail verification (the image stays journalled
as pending, never recorded as good), or give exactly ``updated.img`` (what the upstream tool made
from the undamaged file). None may end ok with another image.

Also: a finished sync run again ends ok with ``changed=false`` (check mode too), and a sync into an
image at another seq_id or of another series is still refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import random
import re
import shutil
import struct

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import cow
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import image as im
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

# The golden fixture lookup (and its decompression) is the one of test_sync.py.
from .test_sync import GOLDEN, UUID, golden_images, reader_for, sha  # noqa: F401 pylint: disable=unused-import

B = 4096
FIXTURE_COW = os.path.join(GOLDEN, 'cow-seq1.cow')
INDEX = 4096                 # first index entry
NBLOCKS = 16384              # 64 MiB device, 4 index sections
DATA_LO = (4096 + 4 * 32768) // B   # 33: first data-area block number of the fixture
FPOS = 45                    # header fpos of the fixture
# Blocks the fixture lists (index entries that are non-zero) and some it does not.
CHANGED_FIRST, CHANGED_LAST = 0, 5368
UNCHANGED = 100              # base.img == expected.img there
LIVE_COW = 3636              # base == updated, but expected.img differs (live COW file of seq 2)


def fixture_bytes():
    with open(FIXTURE_COW, 'rb') as f:
        return bytearray(f.read())


def entry(data, block):
    return struct.unpack_from('<Q', data, INDEX + 8 * block)[0]


def set_entry(data, block, value):
    struct.pack_into('<Q', data, INDEX + 8 * block, value)
    return data


def set_field(fmt, offset, value):
    def mutate(data):
        struct.pack_into(fmt, data, offset, value)
        return data
    return mutate


def xor_byte(offset, mask):
    def mutate(data):
        data[offset] ^= mask
        return data
    return mutate


def truncate(n):
    return lambda data: data[:n]


def chain(*mutations):
    def mutate(data):
        for m in mutations:
            data = m(data)
        return data
    return mutate


def changed_blocks(data):
    return [b for b in range(NBLOCKS) if entry(data, b)]


def slot_blocks(data):
    """Blocks whose entry is a data-area block number (written in snapshot mode)."""
    return [b for b in changed_blocks(data) if entry(data, b) != 1]


def random_flips(seed, count, start, end):
    def mutate(data):
        rng = random.Random(seed)
        for dummy in range(count):
            bit = rng.randrange((end - start) * 8)
            data[start + bit // 8] ^= 1 << (bit % 8)
        return data
    return mutate


def move_entry(src, dst):
    """Clear ``src`` and give ``dst`` its value: the count stays right, the change list is wrong."""
    def mutate(data):
        value = entry(data, src)
        set_entry(data, src, 0)
        return set_entry(data, dst, value)
    return mutate


def swap_entries(a, b):
    def mutate(data):
        va, vb = entry(data, a), entry(data, b)
        set_entry(data, a, vb)
        return set_entry(data, b, va)
    return mutate


def swap_first_slot_with_filler(data):
    slot, filler = slot_blocks(data)[0], changed_blocks(data)[0]
    assert entry(data, filler) == 1 and slot != filler
    return swap_entries(slot, filler)(data)


def duplicate_slot(data):
    slots = slot_blocks(data)
    return set_entry(data, changed_blocks(data)[0], entry(data, slots[0]))


REFUSED, SAME, VERIFY_FAILED = 'refused', 'same', 'verify-failed'
HEADER_DAMAGE = 'COW file .* (damaged|truncated|too short|bad magic|not closed|unknown format|index larger)'
COUNT = r'lists 1?7[678] changed blocks but its header counts'

CORRUPTIONS = [
    # (name, mutation of the file's bytes, expected outcome, message of a refusal or the block a failed
    #  verification must name, verify mode)
    # --- truncations and extensions
    ('trunc-20', truncate(20), REFUSED, 'too short', 'changed'),
    ('trunc-63', truncate(63), REFUSED, 'too short', 'changed'),
    ('trunc-header-only', truncate(4096), REFUSED, 'truncated index', 'changed'),
    ('trunc-one-section', truncate(4096 + 32768), REFUSED, 'truncated index', 'changed'),
    ('trunc-mid-entry', truncate(4096 + 2 * 32768 + 3), REFUSED, 'truncated index', 'changed'),
    ('trunc-last-byte', truncate(135167), REFUSED, 'truncated index', 'changed'),
    ('extra-byte', lambda d: d + b'\0', REFUSED, 'index larger than the device', 'changed'),
    ('extra-section', lambda d: d + bytes(32768), REFUSED, 'index larger than the device', 'changed'),
    # --- header fields
    ('magic', xor_byte(0, 0x01), REFUSED, 'bad magic', 'changed'),
    ('flag-clean-cleared', xor_byte(4, cow.FLAG_CLEAN), REFUSED, 'not closed cleanly', 'changed'),
    ('flag-index-only-cleared', xor_byte(4, cow.FLAG_INDEX_ONLY), REFUSED, 'not an index-only', 'changed'),
    ('flag-vmalloc-set', xor_byte(4, cow.FLAG_VMALLOC_UPPER), SAME, None, 'changed'),
    ('flag-unknown-bit', xor_byte(4, 0x08), REFUSED, 'unknown flag', 'changed'),
    ('flag-high-bit', xor_byte(7, 0x80), REFUSED, 'unknown flag', 'changed'),
    ('fpos-zero', set_field('<Q', 8, 0), REFUSED, 'next data block', 'changed'),
    ('fpos-below-data', set_field('<Q', 8, DATA_LO - 1), REFUSED, 'next data block', 'changed'),
    ('fpos-past-device', set_field('<Q', 8, DATA_LO + NBLOCKS + 1), REFUSED, 'next data block', 'changed'),
    ('fpos-lowered', set_field('<Q', 8, FPOS - 3), REFUSED, 'index entry .* out of range', 'changed'),
    ('fsize-zero', set_field('<Q', 16, 0), REFUSED, 'smaller than its own header and index', 'changed'),
    ('fsize-small', set_field('<Q', 16, 135168 - 4096), REFUSED, 'smaller than its own header and index',
     'changed'),
    ('seq-zero', set_field('<Q', 24, 0), REFUSED, 'does not immediately follow', 'changed'),
    ('seq-live', set_field('<Q', 24, 2), REFUSED, 'is the live COW file', 'changed'),
    ('seq-high-bit', xor_byte(31, 0x80), REFUSED, 'does not immediately follow', 'changed'),
    ('uuid-byte', xor_byte(32 + 7, 0x10), REFUSED, 'belongs to snapshot series', 'changed'),
    ('version-2', set_field('<Q', 48, 2), REFUSED, 'unknown format version 2', 'changed'),
    ('version-0-with-count', set_field('<Q', 48, 0), REFUSED, 'version 0 .* changed-block count', 'changed'),
    # A consistent version-0 header (no count kept): the index itself is intact.
    ('version-0-consistent', chain(set_field('<Q', 48, 0), set_field('<Q', 56, 0)), SAME, None, 'changed'),
    ('padding-byte', xor_byte(100, 0x01), REFUSED, 'header padding', 'changed'),
    ('padding-last-byte', xor_byte(4095, 0x40), REFUSED, 'header padding', 'changed'),
    # --- the changed-block count
    ('count-minus-one', set_field('<Q', 56, 176), REFUSED, COUNT, 'changed'),
    ('count-plus-one', set_field('<Q', 56, 178), REFUSED, COUNT, 'changed'),
    ('count-zero', set_field('<Q', 56, 0), REFUSED, COUNT, 'changed'),
    ('count-high-bit', xor_byte(63, 0x80), REFUSED, COUNT, 'changed'),
    # --- index entries
    ('cleared-first', lambda d: set_entry(d, CHANGED_FIRST, 0), REFUSED, COUNT, 'changed'),
    ('cleared-last', lambda d: set_entry(d, CHANGED_LAST, 0), REFUSED, COUNT, 'changed'),
    ('cleared-slot-entry', lambda d: set_entry(d, slot_blocks(d)[0], 0), REFUSED, COUNT, 'changed'),
    ('set-extra', lambda d: set_entry(d, UNCHANGED, 1), REFUSED, COUNT, 'changed'),
    ('set-extra-last-entry', lambda d: set_entry(d, NBLOCKS - 1, 1), REFUSED, COUNT, 'changed'),
    # An extra entry with the count raised to match: the file is consistent, and the block is the
    # same in both snapshots, so the copy gives the same image.
    ('set-extra-and-count', chain(lambda d: set_entry(d, UNCHANGED, 1), set_field('<Q', 56, 178)), SAME, None,
     'changed'),
    ('cleared-and-count', chain(lambda d: set_entry(d, CHANGED_LAST, 0), set_field('<Q', 56, 176)), VERIFY_FAILED,
     CHANGED_LAST, 'full'),
    ('value-2', lambda d: set_entry(d, CHANGED_FIRST, 2), REFUSED, 'index entry .* out of range', 'changed'),
    ('value-below-data', lambda d: set_entry(d, CHANGED_FIRST, DATA_LO - 1), REFUSED, 'index entry .* out of range',
     'changed'),
    ('value-fpos', lambda d: set_entry(d, CHANGED_FIRST, FPOS), REFUSED, 'index entry .* out of range', 'changed'),
    ('value-huge', lambda d: set_entry(d, CHANGED_FIRST, 1 << 63), REFUSED, 'index entry .* out of range', 'changed'),
    ('value-on-unchanged', lambda d: set_entry(d, UNCHANGED, 1 << 40), REFUSED, 'index entry .* out of range',
     'changed'),
    ('duplicate-slot', duplicate_slot, REFUSED, 'gives data block 35 to two index entries', 'changed'),
    ('swap-two-changed', swap_first_slot_with_filler, SAME, None, 'changed'),
    ('swap-changed-unchanged-same-page', swap_entries(CHANGED_FIRST, 200), VERIFY_FAILED, CHANGED_FIRST,
     'full'),
    # A change moved to another block keeps every count right: the file cannot show it. Only a
    # verification that reads outside the change list finds the block the image lacks.
    ('moved-entry', move_entry(CHANGED_LAST, UNCHANGED), VERIFY_FAILED, CHANGED_LAST, 'full'),
    ('moved-entry-to-live-cow-block', move_entry(CHANGED_FIRST, LIVE_COW), VERIFY_FAILED, CHANGED_FIRST,
     'full'),
    # --- random bit flips with fixed seeds
    ('flips-index-64-seed1', random_flips(1, 64, 4096, 135168), REFUSED, None, 'changed'),
    ('flips-index-64-seed2', random_flips(2, 64, 4096, 135168), REFUSED, None, 'changed'),
    ('flips-index-64-seed3', random_flips(3, 64, 4096, 135168), REFUSED, None, 'changed'),
    ('flips-index-1-seed4', random_flips(4, 1, 4096, 135168), REFUSED, None, 'changed'),
    ('flips-changed-page-seed5', random_flips(5, 8, 4096, 4096 + 512), REFUSED, None, 'changed'),
    ('flips-header-1-seed6', random_flips(6, 1, 0, 64), REFUSED, None, 'changed'),
    ('flips-header-8-seed7', random_flips(7, 8, 0, 4096), REFUSED, None, 'changed'),
    ('flips-whole-file-16-seed8', random_flips(8, 16, 0, 135168), REFUSED, None, 'changed'),
]


@pytest.fixture
def world(golden_images, tmp_path, monkeypatch):  # pylint: disable=redefined-outer-name
    """The real base image (seq 1, with metadata) and the real seq-2 snapshot as /dev/datto1."""
    out, sums = golden_images
    snap = tmp_path / 'snap'
    snap.mkdir()
    os.symlink(str(out / 'expected.img'), str(snap / 'datto1'))
    monkeypatch.setattr(sync, 'SNAPSHOT_DEVICE', str(snap / 'datto%d'))
    d = tmp_path / 'b'
    d.mkdir(mode=0o700)
    image = str(d / 'vdc1.img')
    shutil.copy(str(out / 'base.img'), image)
    os.chmod(image, 0o600)
    im.init(image, UUID, 1, NBLOCKS * B)
    return {'image': image, 'sums': sums, 'dir': tmp_path, 'expected': str(out / 'expected.img')}


def _sidecar(image):
    with open(im.sidecar_path(image), 'rb') as f:
        return f.read()


def _run(world, path, **kw):
    kw.setdefault('procinfo_reader', reader_for(seq_id=2))
    return sync.run(1, path, world['image'], **kw)


def test_fixture_is_accepted_and_reproduces_updated_img(world):
    """The undamaged real file passes every new check (nr_changed_blocks 177 == 177 set entries)."""
    res = _run(world, FIXTURE_COW, verify='changed')
    assert res['cow']['nr_changed_blocks'] == 177 == res['blocks']
    assert sha(world['image']) == world['sums']['updated.img']


def test_cleared_index_entry_is_refused_before_writing(world, tmp_path):
    """Finding 1: one cleared entry made the sync copy 176 blocks, record seq_id 2 and report ok."""
    data = set_entry(fixture_bytes(), CHANGED_LAST, 0)
    path = str(tmp_path / 'cow')
    with open(path, 'wb') as f:
        f.write(data)
    before = _sidecar(world['image'])
    with pytest.raises(DattobdError) as info:
        _run(world, path)
    msg = info.value.to_result()['msg']
    assert 'lists 176 changed blocks but its header counts 177' in msg
    assert 'full backup' in msg and 'chain' in msg
    assert info.value.details.get('cow_damaged') is True
    assert sha(world['image']) == world['sums']['base.img'] and _sidecar(world['image']) == before
    assert im.load(world['image'])['seq_id'] == 1
    # Refused in check mode as well, and the image is still usable with the real file.
    with pytest.raises(DattobdError, match='lists 176 changed blocks'):
        _run(world, path, check_mode=True)
    _run(world, FIXTURE_COW)
    assert sha(world['image']) == world['sums']['updated.img']


@pytest.mark.parametrize('name,mutate,outcome,message,verify', CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corruption_table(world, tmp_path, name, mutate, outcome, message, verify):
    data = bytes(mutate(fixture_bytes()))
    assert data != bytes(fixture_bytes()), 'the variant must change the file'
    path = str(tmp_path / 'cow')
    with open(path, 'wb') as f:
        f.write(data)
    image = world['image']
    sums = world['sums']
    before = _sidecar(image)
    try:
        res = _run(world, path, verify=verify)
    except DattobdError as exc:
        msg = exc.to_result()['msg']
        if 'Verification' in msg:
            got = VERIFY_FAILED
            # Never recorded as good: the sync stays journalled and the image resumable.
            meta = im.load(image)
            assert meta['seq_id'] == 1 and meta['pending']['seq_id_to'] == 2, meta
            # The block the damaged change list lost is among the differences found.
            assert message in exc.details['mismatched_blocks'], exc.details['mismatched_blocks']
        else:
            got = REFUSED
            assert sha(image) == sums['base.img'], 'a refused COW file changed the image'
            assert _sidecar(image) == before, 'a refused COW file changed the image metadata'
            assert message is None or re.search(message, msg), msg
            if re.search(HEADER_DAMAGE + '|' + COUNT + '|out of range|two index entries', msg):
                assert 'full backup' in msg, msg
    else:
        got = SAME
        assert sha(image) == sums['updated.img'], 'ended ok with an image that differs from updated.img'
        assert res['seq_id_to'] == 2 and im.load(image)['seq_id'] == 2
    assert got == outcome


def test_corruption_table_is_large_enough():
    assert len(CORRUPTIONS) >= 25
    assert len({c[0] for c in CORRUPTIONS}) == len(CORRUPTIONS)


def test_real_sync_run_again_is_ok_and_unchanged(world):
    """Finding 5: the same finished sync again failed with "refusing to apply it twice" (check mode too)."""
    first = _run(world, FIXTURE_COW, verify='changed')
    assert first['changed'] and sha(world['image']) == world['sums']['updated.img']
    meta = _sidecar(world['image'])
    for check in (True, False):
        res = _run(world, FIXTURE_COW, verify='changed', check_mode=check)
        assert res['changed'] is False and res['blocks'] == 0 and res['seq_id_to'] == 2
        assert res['cow_sha256'] == first['cow_sha256']
        assert _sidecar(world['image']) == meta and sha(world['image']) == world['sums']['updated.img']
    # A genuinely different case is still refused: the image at another seq_id, or of another series.
    im.init(world['image'], UUID, 3, NBLOCKS * B)
    with pytest.raises(DattobdError, match='holds snapshot 3 but the COW file lists the changes since snapshot 1'):
        _run(world, FIXTURE_COW, check_mode=True)
    im.init(world['image'], 'ab' * 16, 2, NBLOCKS * B)
    with pytest.raises(DattobdError, match='belongs to another snapshot series'):
        _run(world, FIXTURE_COW)
