#!/usr/bin/env python
"""extents.py FILE...: what each file's blocks share, from FIEMAP (the kernel's own extent map).

Prints one JSON object: ``files`` maps each file to its size, allocated bytes and the bytes of its
extents flagged shared (reflinked with another file, FIEMAP_EXTENT_SHARED); ``fs`` has the bytes
used on the file system of the first file (statvfs), to compare what a step allocated.
"""
import fcntl
import json
import os
import struct
import sys

FS_IOC_FIEMAP = 0xC020660B
HEAD = struct.Struct('=QQLLLL')           # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, fm_reserved
EXTENT = struct.Struct('=QQQQQLLLL')      # fe_logical, fe_physical, fe_length, 2 reserved, fe_flags, 3 reserved
COUNT = 512
FLAG_LAST = 0x1
FLAG_SHARED = 0x2000
FIEMAP_FLAG_SYNC = 0x1


def extents(path):
    allocated = shared = 0
    start = 0
    with open(path, 'rb') as handle:
        while True:
            buf = bytearray(HEAD.pack(start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, COUNT, 0)
                            + bytes(EXTENT.size * COUNT))
            fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, buf)
            mapped = HEAD.unpack_from(buf)[3]
            if not mapped:
                return allocated, shared
            for i in range(mapped):
                fields = EXTENT.unpack_from(buf, HEAD.size + i * EXTENT.size)
                logical, length, flags = fields[0], fields[2], fields[5]
                allocated += length
                if flags & FLAG_SHARED:
                    shared += length
                start = logical + length
                if flags & FLAG_LAST:
                    return allocated, shared


def main():
    files = {}
    for path in sys.argv[1:]:
        allocated, shared = extents(path)
        files[path] = {'size': os.path.getsize(path), 'allocated': allocated, 'shared': shared}
    st = os.statvfs(sys.argv[1])
    print(json.dumps({'files': files, 'fs': {'used': (st.f_blocks - st.f_bfree) * st.f_frsize}}, sort_keys=True))


if __name__ == '__main__':
    main()
