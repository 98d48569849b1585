#!/usr/bin/env python
"""reset-mid-copy.py SIDECAR DELAY MAXWAIT: a hard reset of this guest in the middle of a backup copy.

Waits (at most MAXWAIT seconds) until the image metadata SIDECAR (<image>.snapfleet.json) journals an
incremental copy (``pending`` names a sync, not a re-baseline), waits DELAY seconds more so part of
the copy is written, and if the copy is still journalled, resets the machine through sysrq b: the
kernel's emergency reboot, no sync, no unmount (a power cut as far as the disks can tell).
Prints one JSON line before the reset. Exits 1 when the copy was not seen, or ended before the reset.
"""
import json
import sys
import time


def pending(path):
    try:
        with open(path) as handle:
            value = json.load(handle).get('pending')
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and not value.get('rebaseline') else None


def main():
    sidecar, delay, maxwait = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    start = time.monotonic()
    while pending(sidecar) is None:
        if time.monotonic() - start > maxwait:
            print(json.dumps({'reset': False, 'why': 'no copy journalled in %s within %s s' % (sidecar, maxwait)}))
            return 1
        time.sleep(0.05)
    seen = time.monotonic() - start
    time.sleep(delay)
    journal = pending(sidecar)
    if journal is None:
        print(json.dumps({'reset': False, 'why': 'the copy ended within %s s, before the reset' % delay}))
        return 1
    print(json.dumps({'reset': True, 'copy_seen_after': round(seen, 2), 'delay': delay, 'pending': journal}))
    sys.stdout.flush()
    with open('/proc/sysrq-trigger', 'w') as handle:
        handle.write('b')
    time.sleep(60)  # not reached
    return 1


if __name__ == '__main__':
    sys.exit(main())
