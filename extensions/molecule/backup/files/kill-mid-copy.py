#!/usr/bin/env python
"""kill-mid-copy.py LOCK SIDECAR [SIGNAL]: interrupt a running backup cycle in the middle of its copy.

Waits until the image metadata (SIDECAR) shows a pending sync (the copy has started, journalled),
finds the process holding the cycle's LOCK file open (the backup module), sends it SIGNAL (default
TERM), waits for it to exit and prints one JSON line: what was seen, and the tracker states from
/proc/datto-info afterwards. Exits 1 when the copy was never caught running.
"""
import json
import os
import signal
import sys
import time


def holder(lock):
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            for fd in os.listdir('/proc/%s/fd' % pid):
                if os.readlink('/proc/%s/fd/%s' % (pid, fd)) == lock:
                    return int(pid)
        except OSError:
            continue
    return None


def pending(sidecar):
    try:
        with open(sidecar) as handle:
            return json.load(handle).get('pending')
    except (OSError, ValueError):
        return None


def main():
    lock, sidecar = sys.argv[1:3]
    signum = getattr(signal, 'SIG' + (sys.argv[3] if len(sys.argv) > 3 else 'TERM'))
    began = time.monotonic()
    pid = seen = None
    while time.monotonic() - began < 600:
        pid = pid or holder(lock)
        seen = pending(sidecar)
        if seen and pid:
            break
        if pid and not os.path.exists('/proc/%d' % pid):
            sys.exit('the backup process %d ended before its copy was caught running' % pid)
        time.sleep(0.02)
    else:
        sys.exit('no backup copy seen running within 600 s')
    waited = time.monotonic() - began
    os.kill(pid, signum)
    killed = time.monotonic()
    while os.path.exists('/proc/%d' % pid) and time.monotonic() - killed < 120:
        time.sleep(0.05)
    with open('/proc/datto-info') as handle:
        info = json.load(handle)
    print(json.dumps({'pid': pid, 'signal': signum, 'waited_s': round(waited, 2), 'pending_seen': seen,
                      'exit_s': round(time.monotonic() - killed, 2), 'exited': not os.path.exists('/proc/%d' % pid),
                      'pending_after': pending(sidecar),
                      'trackers': [{k: d.get(k) for k in ('minor', 'state', 'seq_id', 'cow_file', 'error')}
                                   for d in info.get('devices', [])]}, sort_keys=True))


if __name__ == '__main__':
    main()
