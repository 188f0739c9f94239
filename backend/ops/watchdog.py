"""The supervisor's watchdog: when the supervisor dies, even of SIGKILL, its process groups die with it.

The supervisor starts this process (in a session of its own, so a signal to the supervisor's group does not
reach it) with the read end of a pipe whose only write end the supervisor holds. Through it the supervisor says
`+PGID` for each process group it starts, `-PGID` for each it has stopped, and `exit` before it closes the pipe
on a clean stop. End of file without `exit` means the supervisor is gone, however it died: the kernel closed its
end. Then every group still listed gets SIGTERM, and SIGKILL after `GRACE_S`, grandchildren included (a
Celery worker's pool, Granian's processes), which a parent-death signal on the direct children alone would miss.

Only the standard library is imported: it starts in a few milliseconds and cannot fail on the app's settings.
Run as `python -m backend.ops.watchdog FD`.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: Seconds the orphaned groups get to stop after SIGTERM before they are killed.
GRACE_S = 3.0


def exists(ident: int, group: bool = False) -> bool:
    """True while the process (with `group`: any process of the group) exists; a zombie counts (it is gone once
    whoever adopted it reaps it), and so does another user's process."""
    try:
        (os.killpg if group else os.kill)(ident, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_groups(groups: set[int], sig: signal.Signals) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_groups(groups: set[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM every group, then SIGKILL the groups that still have a process after `grace_s`."""
    signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_has_live_process(pgid) for pgid in groups):
        time.sleep(0.05)
    signal_groups(groups, signal.SIGKILL)


def _has_live_process(pgid: int) -> bool:
    """A group whose every process has exited may still hold zombies until init reaps them: those count as gone."""
    if not exists(pgid, group=True):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":  # fields after the name: state, ppid, pgrp
            return True
    return False


def watch(fd: int, supervisor_pid: int) -> int:
    """Follow the supervisor's announcements on `fd` until it says `exit` (0) or dies (the groups are stopped)."""
    groups: set[int] = set()
    pending = b""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line == b"exit":
                    return 0
                if line[:1] == b"+":
                    groups.add(int(line[1:]))
                elif line[:1] == b"-":
                    groups.discard(int(line[1:]))
    live = {pgid for pgid in groups if exists(pgid, group=True)}
    if live:
        print(f"LockN: the supervisor (pid {supervisor_pid}) died; stopping the {len(live)} process group(s) it "
              "had started.", file=sys.stderr, flush=True)
        stop_groups(live)
    return 0


def main(argv: list[str]) -> int:
    # Ctrl-C or a closed terminal is the supervisor's to handle; this process acts on end of file.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    return watch(int(argv[1]), os.getppid())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
