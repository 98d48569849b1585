#!/usr/bin/env python
"""compare-masked.py IMAGE SNAPSHOT_DEVICE LIVE_COW_FILE

Compare a backup image with a dattobd snapshot device block by block (4 KiB), skipping only the
blocks of the snapshot's own live COW file: dattobd does not copy-on-write its own COW file, so the
snapshot device shows those blocks as they are now. The extents come from FIEMAP (filefrag -e).
Prints a one-line summary; exits 1 on the first difference outside the mask (naming the block).
"""
import os
import re
import subprocess
import sys

BLOCK = 4096
CHUNK = 256  # blocks per read


def cow_extents(path):
    out = subprocess.run(['filefrag', '-e', '-b%d' % BLOCK, path], check=True,
                         capture_output=True, text=True, env={'LC_ALL': 'C', 'PATH': os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}).stdout
    ranges = []
    for line in out.splitlines():
        m = re.match(r'\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):', line)
        if m:
            ranges.append((int(m.group(1)), int(m.group(2))))
    if not ranges:
        sys.exit('no extents found for %s (filefrag output: %r)' % (path, out))
    return ranges


def main():
    image, device, cow = sys.argv[1:4]
    masked = set()
    for first, last in cow_extents(cow):
        masked.update(range(first, last + 1))
    with open(image, 'rb') as a, open(device, 'rb') as b:
        size = os.fstat(a.fileno()).st_size
        dev_size = b.seek(0, os.SEEK_END)
        b.seek(0)
        if size != dev_size:
            sys.exit('size differs: image %d, device %d' % (size, dev_size))
        block = compared = 0
        while True:
            x = a.read(CHUNK * BLOCK)
            y = b.read(CHUNK * BLOCK)
            if not x:
                break
            if x != y:
                for i in range(0, len(x), BLOCK):
                    n = block + i // BLOCK
                    if n not in masked and x[i:i + BLOCK] != y[i:i + BLOCK]:
                        sys.exit('block %d differs (offset %d) outside the live COW file' % (n, n * BLOCK))
            compared += len(x) // BLOCK
            block += len(x) // BLOCK
    print('identical: %d blocks compared, %d masked (live COW file %s)' % (compared, len(masked), cow))


if __name__ == '__main__':
    main()
