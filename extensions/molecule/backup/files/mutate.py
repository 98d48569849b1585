#!/usr/bin/env python
"""mutate.py STEP VOLUME[:MIB] ...

Changes the data of each volume (a mount point) for backup cycle STEP, syncs, then records the
size and sha256 of every file (dattobd COW files excluded) in <dir of this script>/manifest-<name>.json:
the content the next snapshot must hold. Prints one JSON line with what was written and the number
of SSH command sessions sshd has logged so far (LogLevel VERBOSE: "Starting session: command").

STEP: c1 (new files and a big file), c2 / c3 / c4 (overwrite parts, add, delete, append, truncate,
rename), bulk (MIB MiB of new data in one file), rewrite (the first MIB MiB of that file
overwritten in place), none (manifest only).
"""
import hashlib
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK = 4096
RANDOM = os.urandom(1 << 20)
CHUNK = 16 << 20  # a multiple of BLOCK


def data(n, seed, first=0):
    """n bytes, every 4 KiB block distinct (seed and block number, from ``first``, in front of random bytes)."""
    out = bytearray()
    i = first
    while len(out) < n:
        out += ('%d:%d:' % (seed, i)).encode().ljust(32, b'.')
        out += RANDOM[(i * BLOCK) % len(RANDOM):][:BLOCK - 32]
        i += 1
    return bytes(out[:n])


def write(path, n, seed, offset=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (0 if offset is not None else os.O_TRUNC), 0o644)
    try:
        done = 0
        while done < n:  # in pieces: a guest has too little memory for a bulk file in one buffer
            size = min(CHUNK, n - done)
            os.pwrite(fd, data(size, seed, done // BLOCK), (offset or 0) + done)
            done += size
        os.fsync(fd)
    finally:
        os.close(fd)
    return n


def mutate(root, step, mib, seed):
    rnd = random.Random(seed)
    d = os.path.join(root, 'd')
    written = 0
    if step == 'c1':
        os.makedirs(d, exist_ok=True)
        for i in range(30):
            written += write(os.path.join(d, 'f%02d' % i), rnd.randint(1, 256) * BLOCK + rnd.randint(0, 4095), seed + i)
        written += write(os.path.join(root, 'big.bin'), 48 << 20, seed)
    elif step in ('c2', 'c3', 'c4'):
        big = os.path.join(root, 'big.bin')
        written += write(big, 4 << 20, seed, offset=rnd.randrange(0, 44) << 20)  # one 4 MiB run
        for i in range(64):  # scattered 4 KiB blocks
            written += write(big, BLOCK, seed + 100 + i, offset=rnd.randrange(0, (48 << 20) // BLOCK) * BLOCK)
        names = sorted(os.listdir(d))
        for name in names[:5]:
            os.unlink(os.path.join(d, name))
        for i in range(8):
            written += write(os.path.join(d, '%s-new%d' % (step, i)), rnd.randint(1, 128) * BLOCK + 17, seed + 200 + i)
        with open(os.path.join(d, names[5]), 'ab') as handle:  # append
            handle.write(data(300000, seed + 300))
            os.fsync(handle.fileno())
            written += 300000
        os.truncate(os.path.join(d, names[6]), 1000)
        os.rename(os.path.join(d, names[7]), os.path.join(d, names[7] + '-renamed-' + step))
    elif step == 'bulk':
        written += write(os.path.join(root, 'bulk.bin'), mib << 20, seed)
    elif step == 'rewrite':  # the first MIB MiB of bulk.bin overwritten in place, every block with new content
        written += write(os.path.join(root, 'bulk.bin'), mib << 20, seed, offset=0)
    elif step != 'none':
        sys.exit('unknown step %s' % step)
    return written


def manifest(root):
    files = {}
    for top, dirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root)
        if rel_top == 'lost+found':
            dirs[:] = []
            continue
        dirs[:] = [x for x in dirs if not (rel_top == '.' and x == 'lost+found')]
        for name in names:
            if rel_top == '.' and name.startswith('.datto'):
                continue  # the tracker's COW files: the driver writes them untracked
            path = os.path.join(top, name)
            digest = hashlib.sha256()
            with open(path, 'rb') as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b''):
                    digest.update(chunk)
            files[os.path.normpath(os.path.join(rel_top, name))] = [os.path.getsize(path), digest.hexdigest()]
    return files


def sessions():
    # OpenSSH 9.8+ (Debian 13) logs a session from its own sshd-session process; two matches of one field are ORed
    out = subprocess.run(['journalctl', '-q', '--no-pager', '-o', 'cat', 'SYSLOG_IDENTIFIER=sshd',
                          'SYSLOG_IDENTIFIER=sshd-session'],
                         capture_output=True, text=True, check=False).stdout
    return sum(1 for line in out.splitlines() if 'Starting session: command' in line)


def main():
    step = sys.argv[1]
    count = sessions()  # this very session included
    report = {'step': step, 'sessions': count, 'volumes': {}}
    seed = {'c1': 1000, 'c2': 2000, 'c3': 3000, 'bulk': 4000, 'c4': 5000, 'rewrite': 6000, 'none': 0}.get(step, 9)
    for i, arg in enumerate(sys.argv[2:]):
        root, dummy, mib = arg.partition(':')
        written = mutate(root, step, int(mib or 0), seed + 50000 * i)
        os.sync()
        files = manifest(root)
        name = os.path.basename(root.rstrip('/'))
        with open(os.path.join(HERE, 'manifest-%s.json' % name), 'w') as handle:
            json.dump(files, handle)
        report['volumes'][name] = {'written': written, 'files': len(files),
                                   'bytes': sum(v[0] for v in files.values())}
    print(json.dumps(report, sort_keys=True))


if __name__ == '__main__':
    main()
