#!/usr/bin/env python
"""state.py [--free FILE | --fill FILE] IMAGE...: the tracker states (/proc/datto-info) and each
image's metadata (seq_id, pending sync) as one JSON line. --free removes FILE first (frees the backup
disk); --fill allocates FILE so that only about 16 MiB stay free in its filesystem, root's reserve
included (what the backup module counts)."""
import json
import os
import sys


def main():
    args = sys.argv[1:]
    freed = filled = None
    if args[:1] == ['--fill']:
        filled = args[1]
        vfs = os.statvfs(os.path.dirname(filled))
        size = vfs.f_bfree * vfs.f_frsize - (16 << 20)
        while size > 0:
            fd = os.open(filled, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
                break
            except OSError:  # ext4 keeps some blocks even from root: a little less
                os.ftruncate(fd, 0)
                size -= 4 << 20
            finally:
                os.close(fd)
        os.sync()
        vfs = os.statvfs(os.path.dirname(filled))
        filled = {'file': filled, 'bytes': os.path.getsize(filled), 'free_after': vfs.f_bfree * vfs.f_frsize}
        args = args[2:]
    if args[:1] == ['--free']:
        freed = args[1]
        if os.path.exists(freed):
            os.unlink(freed)
            os.sync()
        args = args[2:]
    with open('/proc/datto-info') as handle:
        info = json.load(handle)
    images = {}
    for image in args:
        with open(image + '.snapfleet.json') as handle:
            meta = json.load(handle)
        images[os.path.basename(image)] = {'seq_id': meta.get('seq_id'), 'pending': meta.get('pending'),
                                           'size': os.path.getsize(image)}
    print(json.dumps({'freed': freed, 'filled': filled, 'images': images,
                      'trackers': {d['block_device']: {k: d.get(k) for k in ('minor', 'state', 'seq_id', 'error')}
                                   for d in info.get('devices', [])}}, sort_keys=True))


if __name__ == '__main__':
    main()
