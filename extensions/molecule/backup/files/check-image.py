#!/usr/bin/env python
"""check-image.py FSTYPE MANIFEST: a verify hook of the backup module (run while the snapshot exists).

Also the reboot scenario's independent image check, with MANIFEST "-" (block comparison only).

1. Compares the image ($SNAPFLEET_IMAGE) with the snapshot device ($SNAPFLEET_SNAPSHOT) block by
   block (4 KiB), skipping only the blocks of the snapshot's own live COW file ($SNAPFLEET_COW_FILE,
   extents from FIEMAP via filefrag): dattobd does not copy-on-write its own COW file, so the
   snapshot device shows those blocks as they are now. A full backup leaves the blocks the
   filesystem reports unallocated as holes (the backup module's sparse=filesystem), so a block that
   differs is also accepted when the snapshot's filesystem calls it free, as read here with the
   filesystem's own tools (dumpe2fs, xfs_db), independently of the module's code.
2. Mounts the image read-only through a loop device (ext4: ro,noload; xfs: ro,norecovery,nouuid,
   the live filesystem has the same UUID) and compares every file with MANIFEST (size and sha256
   recorded on the live volume right before the cycle, nothing written in between).
Prints one JSON line; exits 1 on a difference, listing every differing block of the comparison that failed.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

BLOCK = 4096
CHUNK = 256  # blocks per read
ZERO = bytes(CHUNK * BLOCK)
MOUNT_OPTIONS = {'ext4': 'loop,ro,noload', 'xfs': 'loop,ro,norecovery,nouuid'}
ENV = {'LC_ALL': 'C', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}


def extents(path):
    out = subprocess.run(['filefrag', '-e', '-b%d' % BLOCK, path], check=True, capture_output=True, text=True,
                         env=ENV).stdout
    ranges = []
    for line in out.splitlines():
        m = re.match(r'\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):', line)
        if m:
            ranges.append((int(m.group(1)), int(m.group(2))))
    if not ranges:
        sys.exit('no extents found for %s (filefrag output: %r)' % (path, out))
    return ranges


def free_blocks(device, fstype):
    """4 KiB blocks of ``device`` that its filesystem reports unallocated."""
    free = set()
    if fstype == 'ext4':
        out = subprocess.run(['dumpe2fs', device], check=True, capture_output=True, text=True, env=ENV).stdout
        bsize = int(re.search(r'^Block size:\s+(\d+)', out, re.M).group(1))
        ranges = []
        for line in out.split('\nGroup 0:', 1)[1].splitlines():
            m = re.match(r'\s+Free blocks: (.*)', line)
            for item in (m.group(1).split(', ') if m and m.group(1).strip() else []):
                first, dummy, last = item.partition('-')
                ranges.append((int(first) * bsize, (int(last or first) + 1) * bsize))
    else:
        out = subprocess.run(['xfs_db', '-r', '-c', 'sb 0', '-c', 'p blocksize agblocks', '-c', 'freesp -d', device],
                             check=True, capture_output=True, text=True, env=ENV).stdout
        bsize = int(re.search(r'^blocksize = (\d+)', out, re.M).group(1))
        agblocks = int(re.search(r'^agblocks = (\d+)', out, re.M).group(1))
        ranges = []
        for m in re.finditer(r'^\s+(\d+)\s+(\d+)\s+(\d+)\s*$', out.split('from      to', maxsplit=1)[0], re.M):
            agno, agbno, n = (int(x) for x in m.groups())
            start = (agno * agblocks + agbno) * bsize
            ranges.append((start, start + n * bsize))
    for start, end in ranges:
        free.update(range((start + BLOCK - 1) // BLOCK, end // BLOCK))
    return free


def compare_blocks(image, device, cow, fstype):
    masked = set()
    for first, last in extents(cow):
        masked.update(range(first, last + 1))
    free = None
    differing = []
    differing_masked = differing_free = 0
    with open(image, 'rb') as a, open(device, 'rb') as b:
        os.posix_fadvise(a.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # read the image from disk
        size = os.fstat(a.fileno()).st_size
        dev_size = b.seek(0, os.SEEK_END)
        b.seek(0)
        if size != dev_size:
            sys.exit('size differs: image %d, device %d' % (size, dev_size))
        block = 0
        while block * BLOCK < size:
            pos = block * BLOCK
            y = b.read(CHUNK * BLOCK)
            if not y:
                sys.exit('short read of %s at offset %d' % (device, pos))
            try:
                in_hole = os.lseek(a.fileno(), pos, os.SEEK_DATA) >= pos + len(y)
            except OSError:  # ENXIO: no data after pos
                in_hole = True
            if in_hole:  # a hole of the sparse image reads as zeros: do not read them
                x = ZERO[:len(y)]
            else:
                x = os.pread(a.fileno(), len(y), pos)
            if x != y:
                for i in range(0, len(x), BLOCK):
                    n = block + i // BLOCK
                    if x[i:i + BLOCK] != y[i:i + BLOCK]:
                        if n in masked:
                            differing_masked += 1
                            continue
                        if free is None:
                            free = free_blocks(device, fstype)
                        if n not in free:
                            differing.append(n)
                        else:
                            differing_free += 1
            block += len(x) // BLOCK
    if differing:
        sys.exit('%d block(s) of %s differ from %s, outside the live COW file %s and allocated in the snapshot: %s'
                 % (len(differing), image, device, cow, describe_runs(differing)))
    return {'blocks': block, 'masked': len(masked), 'masked_differing': differing_masked,
            'unallocated_differing': differing_free}


def describe_runs(blocks, limit=40):
    """'first-last' runs of sorted block numbers (at most ``limit`` of them listed)."""
    runs = []
    for n in blocks:
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ', '.join(str(a) if a == b else '%d-%d' % (a, b) for a, b in runs[:limit])
    return text + (' (and %d more runs)' % (len(runs) - limit) if len(runs) > limit else '')


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def compare_files(image, fstype, manifest):
    with open(manifest) as handle:
        want = json.load(handle)
    mnt = tempfile.mkdtemp(prefix='sf-image-')
    subprocess.run(['mount', '-t', fstype, '-o', MOUNT_OPTIONS[fstype], image, mnt], check=True, env=ENV,
                   capture_output=True)
    try:
        have = {}
        for top, dirs, names in os.walk(mnt):
            rel_top = os.path.relpath(top, mnt)
            if rel_top == '.':
                dirs[:] = [x for x in dirs if x != 'lost+found']
            for name in names:
                if rel_top == '.' and name.startswith('.datto'):
                    continue
                path = os.path.join(top, name)
                have[os.path.normpath(os.path.join(rel_top, name))] = [os.path.getsize(path), sha256(path)]
    finally:
        subprocess.run(['umount', mnt], check=True, env=ENV)
        os.rmdir(mnt)
    if have != want:
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        changed = sorted(k for k in set(want) & set(have) if want[k] != have[k])
        sys.exit('files in the image differ from the live volume at snapshot time: missing %s, extra %s, '
                 'different %s' % (missing[:10], extra[:10], changed[:10]))
    return {'files': len(have), 'file_bytes': sum(v[0] for v in have.values())}


def main():
    fstype, manifest = sys.argv[1:3]
    image = os.environ['SNAPFLEET_IMAGE']
    out = {'mode': os.environ.get('SNAPFLEET_MODE'), 'snapshot': os.environ['SNAPFLEET_SNAPSHOT'],
           'cow_file': os.environ['SNAPFLEET_COW_FILE']}
    out.update(compare_blocks(image, out['snapshot'], out['cow_file'], fstype))
    if manifest != '-':
        out.update(compare_files(image, fstype, manifest))
    print(json.dumps(out, sort_keys=True))


if __name__ == '__main__':
    main()
