# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""python3 boot_from_disk.py <guest dir> <disk name> <ssh key> [ssh timeout]: point a guest's next boot at one of its disks.

Powers the guest off (stop-guest <dir> poweroff), then starts its qemu again with the same command
line except that <dir>/<disk name>.raw is the first disk (the one the BIOS boots) and the root disk
(<dir>/root.qcow2) is no longer attached: the guest boots what was restored onto that disk, and
nothing of the old root disk can be mounted by mistake (a restored root file system has the same
UUID). Every other argument (SSH port, serial log, monitor, pid file) stays; the serial log of the
boot before is kept as serial.<n>.log. Waits for SSH (wait-ssh) and prints the new drive order.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def die(msg):
    sys.stderr.write('boot_from_disk: %s\n' % msg)
    sys.exit(1)


def drive_file(arg):
    for part in arg.split(','):
        if part.startswith('file='):
            return part[len('file='):]
    return None


def reorder(argv, root, disk):
    """argv without the root disk's -drive and with the disk's -drive where the first -drive was."""
    drives = dict((drive_file(argv[i + 1]), argv[i + 1]) for i in range(len(argv) - 1) if argv[i] == '-drive')
    if disk not in drives:
        die('%s is not a disk of this guest (drives: %s)' % (disk, ', '.join(sorted(f for f in drives if f))))
    out, placed, i = [], False, 0
    while i < len(argv):
        if argv[i] == '-drive' and i + 1 < len(argv):
            if not placed:
                out += ['-drive', drives[disk]]
                placed = True
            if drive_file(argv[i + 1]) not in (root, disk):
                out += argv[i:i + 2]
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main():
    if len(sys.argv) not in (4, 5):
        die('usage: boot_from_disk.py <guest dir> <disk name> <ssh key> [ssh timeout seconds]')
    gdir, name, key = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
    timeout = sys.argv[4] if len(sys.argv) == 5 else '900'
    pidfile = os.path.join(gdir, 'qemu.pid')
    try:
        with open(pidfile) as f:
            pid = f.read().strip()
        with open('/proc/%s/cmdline' % pid, 'rb') as f:
            argv = [a.decode() for a in f.read().split(b'\0') if a]
    except OSError as e:
        die('cannot read the running qemu of %s: %s' % (gdir, e))
    if not argv or 'qemu-system' not in os.path.basename(argv[0]) or not any(gdir + '/' in a for a in argv):
        die('pid %s is not the qemu of %s' % (pid, gdir))
    new = reorder(argv, os.path.join(gdir, 'root.qcow2'), os.path.join(gdir, name + '.raw'))
    rc = subprocess.run([os.path.join(HERE, 'stop-guest'), gdir, 'poweroff'], check=False).returncode
    if rc != 0:
        die('the guest did not stop')
    serial = os.path.join(gdir, 'serial.log')
    n = 1
    while os.path.exists(os.path.join(gdir, 'serial.%d.log' % n)):
        n += 1
    if os.path.exists(serial):
        shutil.move(serial, os.path.join(gdir, 'serial.%d.log' % n))
    res = subprocess.run(new, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        die('qemu did not start: %s' % (res.stderr.strip() or res.returncode))
    port = next(a.split('hostfwd=tcp:127.0.0.1:', 1)[1].split('-', 1)[0] for a in new if 'hostfwd=tcp:127.0.0.1:' in a)
    res = subprocess.run([os.path.join(HERE, 'wait-ssh'), port, key, pidfile, timeout], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        die('no SSH after the boot from %s: %s %s' % (name, res.stdout.strip(), res.stderr.strip()))
    print('ssh: %s' % res.stdout.strip())
    drives = [os.path.basename(drive_file(new[i + 1]) or '?') for i in range(len(new) - 1) if new[i] == '-drive']
    print('drives now: %s' % ', '.join(drives))


if __name__ == '__main__':
    main()
