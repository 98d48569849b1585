#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: sync
short_description: Copy the blocks changed since the last backup from a dattobd snapshot into an image
version_added: 0.1.0
author: snapfleet maintainers (@snapfleet)
description:
  - The C(update-img) job in Python. After C(dbdctl transition-to-snapshot <new cow> <minor>), the
    previous COW file lists every 4 KiB block changed since the snapshot the image was made from;
    this module copies exactly those blocks from C(/dev/datto<minor>) into the image.
  - Before writing anything it checks the COW file (magic, closed cleanly, index-only, flags,
    version, header padding, C(fpos) and C(fsize), index size against the snapshot size, every
    index entry in range, the number of set entries against the header's C(nr_changed_blocks)),
    that its uuid equals the snapshot's and its seq_id is the snapshot's seq_id minus one, that the
    image has the snapshot's size, is root-only, and that its metadata (C(<image>.snapfleet.json))
    holds the COW file's seq_id.
  - A COW file these checks show to be damaged is refused with RV(cow_damaged=true), the image
    untouched; the incremental chain is then broken and the next backup must be a full one.
  - Contiguous changed blocks are copied with large I/O, the image is fsynced, and any read or
    write error fails the task (the upstream tool exits 0 even when blocks failed to copy).
  - The sync is journalled in the image metadata. A sync interrupted at any point (killed, power
    loss) is run again with the same options and ends with the same image. A sync that completed
    run again ends ok with C(changed=false) and writes nothing (check mode too). A sync applied to
    an image of another series or at another seq_id is refused.
extends_documentation_fragment:
  - snapfleet.dattobd.attributes
  - snapfleet.dattobd.attributes.PLATFORM
  - snapfleet.dattobd.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Runs every check and reports the blocks and runs that would be copied, writing nothing.
  diff_mode:
    support: full
    details:
      - Shows the image metadata seq_id before and after.
options:
  snapshot:
    description:
      - The snapshot to copy from, as a minor number (C(3)) or its device (C(/dev/datto3)).
        Only the ASCII digits C(0-9) are accepted.
      - The tracker must be an active snapshot (state 3).
    type: str
    required: true
  cow_file:
    description:
      - Absolute path of the B(previous) COW file of the tracker, the one that was current before
        the last C(transition-to-snapshot). It must have been closed cleanly.
    type: path
    required: true
  image:
    description:
      - Absolute path of the raw backup image to update. It must exist, have the size of the
        snapshot, have mode 0600 and sit in a directory with mode 0700, both owned by the user the
        module runs as.
    type: path
    required: true
  engine:
    description:
      - C(python) copies with this collection's engine.
      - C(upstream) runs dattobd's C(update-img) binary (for comparison); its output is checked
        strictly (any stderr or a non-zero error count fails) and the image is fsynced after it.
    type: str
    choices: [python, upstream]
    default: python
  verify:
    description:
      - C(none) trusts the copy.
      - C(changed) reads back every copied block from the image (after dropping its cached pages)
        and compares it with the snapshot.
      - C(full) compares the whole image with the snapshot.
      - The snapshot device shows the blocks of the tracker's own live COW file as they are now (dattobd
        does not copy-on-write its own COW file), so a correct image differs from it there. Both checks
        locate that file with FIEMAP and do not count those blocks (RV(verify_masked_blocks)); blocks
        that change between two reads of the snapshot are reported in RV(verify_unstable_blocks); any
        other difference fails, unless the snapshot's filesystem (ext2/3/4 or XFS, read with C(dumpe2fs)
        or C(xfs_db)) reports the block unallocated (its content means nothing to the filesystem, and a
        full backup by M(snapfleet.dattobd.backup) leaves such blocks as holes; RV(verify_unallocated_blocks)).
    type: str
    choices: [none, changed, full]
    default: none
  adopt:
    description:
      - Accept an image that has no snapfleet metadata (for example one made with C(dd) from the
        snapshot with the COW file's seq_id) and create the metadata for it.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each read of C(/proc/datto-info) (a wedged dattobd 0.12.x blocks
        forever otherwise). The copy itself is not limited by it.
      - A read that times out marks the driver wedged until the next boot; while it is marked (a
        marker under C(/run/snapfleet-dattobd)), the module fails at once without reading the driver.
        Only a hard reset clears it (docs/troubleshooting.md).
    type: int
    default: 60
  read_depth:
    description:
      - How many reads the copy engine keeps in flight for scattered changed blocks (threads reading
        spans of up to 64 KiB; the image is still written in the order of the change list, and any
        read or write error still fails the task with the sync journalled as pending).
      - An integer from 1 to 64 (ASCII digits). V(1) reads one span at a time (the engine before this
        option). Larger runs keep their large sequential I/O whatever the depth.
      - Above V(1) it is the most the copy uses. The copy times the threads against one reader as it goes
        and keeps the faster (threads pay off on storage with reads to spare, and cost where the CPU is
        the limit, such as an emulated guest). A change list of fewer than 64 spans is read one at a time.
      - Ignored with O(engine=upstream).
    type: int
    default: 8
  update_img_path:
    description:
      - Path of the upstream C(update-img) binary for O(engine=upstream). By default it is looked
        up in C(PATH) and the usual system directories.
    type: path
notes:
  - The snapshot device shows the live content of the tracker's current COW file, so an image
    never equals a later read of the whole snapshot device in those blocks; O(verify=full)
    accounts for it.
seealso:
  - module: snapfleet.dattobd.snapshot
  - module: snapfleet.dattobd.backup
'''

EXAMPLES = r'''
- name: Move tracker 1 to a new snapshot (returns the previous COW file)
  snapfleet.dattobd.snapshot:
    device: /data
    minor: 1
    state: snapshot
  register: snap

- name: Copy the changed blocks into the image and read them back
  snapfleet.dattobd.sync:
    snapshot: 1
    cow_file: "{{ snap.previous_cow_file }}"
    image: /var/backups/snapfleet/data.img
    verify: changed
  register: synced

- name: Show the throughput
  ansible.builtin.debug:
    msg: "{{ synced.blocks }} blocks in {{ synced.seconds }} s ({{ synced.mb_per_s }} MB/s)"

- name: Adopt an image made with dd from snapshot seq_id 1, then sync it
  snapfleet.dattobd.sync:
    snapshot: /dev/datto1
    cow_file: /data/.datto_1_1
    image: /var/backups/snapfleet/data.img
    adopt: true
'''

RETURN = r'''
actions:
  description: The steps run (or planned in check mode), in order; the exact command line for O(engine=upstream).
  returned: always
  type: list
  elements: str
  sample:
    - journal sync 1 -> 2 in /var/backups/snapfleet/data.img.snapfleet.json
    - copy 177 changed blocks (11 runs, 708.0 KiB) from /dev/datto1 into /var/backups/snapfleet/data.img
    - fsync /var/backups/snapfleet/data.img
    - record seq_id 2 in /var/backups/snapfleet/data.img.snapfleet.json
blocks:
  description: Changed 4 KiB blocks copied (to be copied in check mode; 0 when the sync had completed before).
  returned: success
  type: int
  sample: 177
bytes:
  description: Bytes copied.
  returned: success
  type: int
  sample: 724992
runs:
  description: Runs of contiguous changed blocks.
  returned: success
  type: int
  sample: 11
seconds:
  description: Time spent copying (0 in check mode).
  returned: success
  type: float
  sample: 0.04
mb_per_s:
  description: Copy throughput in MiB/s (null when nothing was timed).
  returned: success
  type: float
  sample: 412.5
seq_id_from:
  description: seq_id the image held before (the COW file's).
  returned: success
  type: int
  sample: 1
seq_id_to:
  description: seq_id the image holds after (the snapshot's).
  returned: success
  type: int
  sample: 2
uuid:
  description: The snapshot series uuid.
  returned: success
  type: str
  sample: 3eb8aa94e0b440389b06f7a10a5f3cc1
verified:
  description: Whether the copy was read back and compared.
  returned: success
  type: bool
verify_unstable_blocks:
  description: Blocks that differed but changed in the snapshot between two reads (not a failure).
  returned: when verify is changed or full
  type: list
  elements: int
cow_file_blocks:
  description:
    - Blocks of the previous COW file itself, copied from the snapshot as well (O(engine=python)). dattobd never
      tracks its own writes to a COW file, so they are in no change list.
  returned: when engine is python and the copy ran
  type: int
cow_extents_note:
  description: Why the previous COW file's own blocks could not be located (they were then not copied).
  returned: when its extents could not be read
  type: str
verify_masked_blocks:
  description: Number of differing blocks that belong to the snapshot's own live COW file (not a failure).
  returned: when verify is changed or full
  type: int
verify_unallocated_blocks:
  description: Number of differing blocks the snapshot's filesystem reports unallocated (not a failure).
  returned: when verify is changed or full
  type: int
verify_mask_note:
  description: Why the live COW file's blocks could not be located (then every difference counts).
  returned: when the live COW file's extents could not be read
  type: str
resumed:
  description: Whether this run completed a sync that had been interrupted.
  returned: success
  type: bool
engine:
  description: The engine used.
  returned: success
  type: str
  sample: python
cow_damaged:
  description:
    - Set on a failure when the COW file is damaged (it failed a check of its format). The image
      was not written; the incremental chain is broken and the next backup must be a full one.
  returned: on failure, when the COW file is damaged
  type: bool
  sample: true
cow:
  description: The COW file header.
  returned: success
  type: dict
  sample:
    seq_id: 1
    version: 1
    flags: 3
    nr_changed_blocks: 177
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import moduleapi
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import sync as sync_lib


def main():
    moduleapi.run(AnsibleModule, sync_lib.ARGUMENT_SPEC, sync_lib.module_runner, sync_lib.UNEXPECTED,
                  defaults=dict(actions=[]), supports_check_mode=True)


if __name__ == '__main__':
    main()
