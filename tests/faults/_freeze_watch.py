"""Freeze a server process the instant it touches a file: ``python _freeze_watch.py --pid PID ...``.

Watches one directory with Linux inotify and sends ``SIGSTOP`` to ``--pid`` as soon as the
``--count``-th matching event arrives (``access``: the server read the file, ``create``: it
created one, ``moved_to``: a rename landed there). A frozen server keeps its sockets open
but sends nothing more, so whatever the client is doing at that moment (a download, an
upload, a rename) is cut off mid-way once the test kills and restarts the server. Runs as
its own process so the freeze does not wait for the GIL of the process under test.

Prints ``watching`` when the watch is in place and ``frozen <name>`` after the signal;
exits 0 after freezing, 3 when ``--timeout`` passes first.
"""

from __future__ import annotations

import argparse
import ctypes
import fnmatch
import os
import select
import signal
import struct
import sys
import time

EVENTS = {"access": 0x001, "moved_to": 0x080, "create": 0x100}
_HEADER = struct.Struct("iIII")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="directory to watch (must exist)")
    parser.add_argument("--event", choices=sorted(EVENTS), required=True)
    parser.add_argument("--name", default="*", help="glob the file name must match")
    parser.add_argument("--count", type=int, default=1, help="freeze on the N-th matching event")
    parser.add_argument("--pid", type=int, required=True, help="process to freeze")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        print(f"inotify_init1 failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 2
    if libc.inotify_add_watch(fd, os.fsencode(args.dir), EVENTS[args.event]) < 0:
        print(f"cannot watch {args.dir}: errno {ctypes.get_errno()}", file=sys.stderr)
        return 2
    print("watching", flush=True)
    deadline = time.monotonic() + args.timeout
    seen = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(f"no matching event within {args.timeout} s", flush=True)
            return 3
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        data = os.read(fd, 65536)
        offset = 0
        while offset < len(data):
            _wd, _mask, _cookie, length = _HEADER.unpack_from(data, offset)
            name = data[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0").decode(errors="replace")
            offset += _HEADER.size + length
            if fnmatch.fnmatch(name, args.name):
                seen += 1
                if seen >= args.count:
                    os.kill(args.pid, signal.SIGSTOP)
                    print(f"frozen {name}", flush=True)
                    return 0


if __name__ == "__main__":
    sys.exit(main())
