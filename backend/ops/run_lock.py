"""`make run`'s claim on its data directory: one LockN process tree per data directory.

Two trees on one data directory would share the SQLite database, the embedded broker's socket and append-only
file, and the metrics folder, and a second one clears those at start (and queues again jobs the first is still
running). So `make run` takes an exclusive `flock` on `<data dir>/lockn.lock` before it touches anything, and
writes its pid and port into the file for the message a second one prints.

The lock belongs to the open file, not to a pid: every child of the tree inherits it, so it is held while any
process of the tree lives (a supervisor killed with SIGKILL leaves it held until its watchdog has stopped the
children), and the kernel drops it when the last one exits. A lock file nobody holds is therefore stale whatever
pid it names (even one reused by an unrelated process): it is taken over, never deleted (deleting a lock file
races with the next taker).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backend.ops.watchdog import exists

LOCK_NAME = "lockn.lock"
#: How long a refused start waits for the holder's pid and port to be written (the holder writes them at once).
READ_OWNER_WAIT_S = 2.0


@dataclass(frozen=True)
class LockRecord:
    """What the lock file says about the tree that holds (or held) it."""

    pid: int | None = None
    port: int | None = None
    url: str = ""
    started_at: str = ""

    @classmethod
    def parse(cls, text: str) -> LockRecord | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), int(data["port"]), str(data.get("url", "")), str(data.get("started_at", "")))
        except (ValueError, KeyError, TypeError):
            return None


class DataDirInUse(RuntimeError):
    """Another LockN process tree holds the data directory; the message names its pid and port."""

    def __init__(self, data_dir: Path, record: LockRecord | None, holders: list[int]) -> None:
        self.record, self.holders = record, holders
        if record is None:
            who = "another LockN (its pid and port are not recorded)"
        else:
            who = f"another LockN (pid {record.pid}, port {record.port}{', ' + record.url if record.url else ''})"
        message = f"{who} is already running with the data directory {data_dir}."
        if record is not None and record.pid is not None and not exists(record.pid) and holders:
            message += (f" Its supervisor is gone, but processes it started still hold the directory: pids "
                        f"{', '.join(map(str, holders))}. Stop them (kill {' '.join(map(str, holders))}) and start again.")
        else:
            stop = f"`kill {record.pid}`" if record is not None else "stop it"
            message += (f" Stop it first (Ctrl-C where it runs, or {stop}), or give this one its own "
                        "LOCKN_DATA_DIR (and LOCKN_PORT).")
        super().__init__(message)


class RunLock:
    """The data directory's lock, held by this process (and, through inheritance, by its children)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, port: int, url: str = "") -> LockRecord | None:
        """Take the lock or raise `DataDirInUse`; returns what a stale lock file said (a tree that died), if any."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                record = _wait_for_record(fd)
                raise DataDirInUse(self.data_dir, record, lock_holders(self.path)) from None
            finally:
                os.close(fd)
        stale = LockRecord.parse(_read(fd))
        record = {"pid": os.getpid(), "port": port, "url": url,
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self.fd = fd
        return stale

    def release(self) -> None:
        """A clean stop: the record is emptied (nothing stale is left to report) and the lock dropped."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace")


def _wait_for_record(fd: int) -> LockRecord | None:
    """The holder's record; a holder that has just taken the lock writes it a moment later."""
    deadline = time.monotonic() + READ_OWNER_WAIT_S
    while (record := LockRecord.parse(_read(fd))) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return record


def lock_holders(path: Path) -> list[int]:
    """Pids of this user's processes with the lock file open (read from /proc; others' are not readable)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    holders = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            descriptors = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                found = os.stat(f"/proc/{entry}/fd/{descriptor}")
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                holders.append(int(entry))
                break
    return sorted(holders)
