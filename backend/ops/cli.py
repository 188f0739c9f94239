"""`python -m backend.ops.cli`: run, migrate and serve LockN. `make run` calls `run`.

`run` is a small supervisor: it claims the data directory (`run_lock`: a second
`make run` on it is refused, naming the pid and port of the first), applies
migrations, builds the pages when their code changed since the last build, starts
the embedded broker (when no `LOCKN_REDIS_URL` is set), the Celery workers (speech,
batch lines, webhooks) and the web process (Reflex's production server with the built
pages), each in its own process group, and on Ctrl-C (or SIGTERM) stops every one of
them, so nothing is left behind; if it is killed outright, its children die with it
(see `supervisor`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from backend.core.log_masking import install_key_masking
from backend.core.settings import ProductionConfigError, Settings, get_settings
from backend.ops.key_cli import add_key_commands
from backend.ops.models import add_model_commands, run_model_command
from backend.ops.qa_cli import QA_COMMANDS, add_qa_commands, beat_command, run_qa_command
from backend.ops.run_lock import DataDirInUse, RunLock
from backend.ops.supervisor import (
    Supervisor, embedded_broker_command, engine_queues, supervise, wait_for_socket, webhook_worker_command,
    worker_command,
)
from backend.ops.web_replica import build_frontend_if_changed, reflex_environment, web_command
from backend.queue.routing import queues_for


#: `main`'s exit code when the configuration is refused (as for bad command-line input).
EXIT_BAD_CONFIG = 2
#: `main`'s exit code when another LockN already runs on the data directory.
EXIT_DATA_DIR_IN_USE = 3
#: How much `make run`'s batch worker yields the CPU to the interactive one (see LOCKN_WORKER_NICE).
BATCH_WORKER_NICE = 10


def run_platform(settings: Settings, with_worker: bool = True) -> int:
    """Claim the data directory, migrate, then run broker, worker and web until we are told to stop; a child
    that exits is restarted.

    With the embedded broker, this process tree holds the only worker: before it starts (and before it is
    started again after a crash) no job can be running, so jobs cut off mid-way and jobs the broker lost
    are queued again (`job_recovery`). The data directory's lock is what makes "no job can be running" true:
    a second tree on it is refused before it clears or requeues anything."""
    lock = RunLock(settings.data_dir)
    try:
        stale = lock.acquire(settings.port, settings.base_url)
    except DataDirInUse as refusal:
        print(f"LockN: {refusal}", file=sys.stderr, flush=True)
        return EXIT_DATA_DIR_IN_USE
    if stale is not None:
        print(f"LockN: the previous run (pid {stale.pid}, port {stale.port}) ended without stopping cleanly and "
              "nothing of it is left; taking over its data directory.", flush=True)
    try:
        return _run_locked(settings, with_worker, lock)
    finally:
        lock.release()


def _run_locked(settings: Settings, with_worker: bool, lock: RunLock) -> int:
    from backend.core.db import migrate
    from backend.core.metrics import reset_metrics_dir

    migrate()
    reset_metrics_dir()  # every process started below counts afresh
    build_frontend_if_changed(settings)
    embedded = not settings.redis_url

    started: set[str] = set()

    def clear_socket() -> None:
        settings.embedded_broker_socket.unlink(missing_ok=True)

    def open_socket() -> None:
        wait_for_socket(settings.embedded_broker_socket)
        if "broker" in started:  # a restarted broker: what its last second held before the crash is resent
            recover_jobs(after_crash=False)
        started.add("broker")

    def recover(name: str = "") -> None:
        """At start (no name) every job a crash cut off; after one worker's crash, only that worker's kind (the
        other worker is still running its own jobs)."""
        if embedded and name in ("", "worker", "batch-worker"):
            recover_jobs(after_crash=True, batch={"worker": False, "batch-worker": True}.get(name))

    def start(supervisor: Supervisor) -> None:
        if embedded:
            supervisor.start("broker", embedded_broker_command(settings), before_start=clear_socket,
                             after_start=open_socket)
        if with_worker:
            recover()
            supervisor.start("worker", worker_command(queues_for(settings.engine_names)),
                             warm_stop_s=settings.worker_stop_grace_s)
            # Batch lines run in a worker of their own, at a lower CPU priority: a batch never slows the Studio
            # or /v1 by more than the machine's spare cycles.
            supervisor.start("batch-worker", worker_command(queues_for(settings.engine_names, batch=True), index=1),
                             env={**os.environ, "LOCKN_WORKER_NICE": str(BATCH_WORKER_NICE)},
                             warm_stop_s=settings.worker_stop_grace_s)
            supervisor.start("webhook-worker", webhook_worker_command(settings, index=2),
                             warm_stop_s=settings.webhook_timeout_s + 5)
        if settings.qa_nightly_at:
            supervisor.start("qa-nightly", beat_command(settings))
        supervisor.start("web", web_command(settings.port), env=reflex_environment(settings))
        print(f"LockN is starting on {settings.base_url}  (Ctrl-C stops everything)", flush=True)

    return supervise(start, on_restart=recover, keep_fds=(lock.fd,) if lock.fd is not None else ())


def recover_jobs(after_crash: bool, batch: bool | None = None) -> None:
    """Queue again what a crash or a restart cut off; says so when there was anything.

    `after_crash` (no worker is running): also the jobs that were running. Otherwise only the queued jobs
    the broker does not hold, however new (a job row is written before its message; a copy sent twice
    is harmless, since a worker claims a job only from `queued`). `batch`: only batch lines' jobs (True), only
    the others (False), or both (None)."""
    from backend.services.jobs.recovery import requeue_lost_jobs

    try:
        if count := requeue_lost_jobs(after_crash=after_crash, lost_after_s=0, batch=batch):
            print(f"LockN: queued {count} job(s) again that a restart had cut off.", flush=True)
    except Exception as exc:  # noqa: BLE001 - the broker may be restarting; the worker's sweeps retry
        print(f"LockN: could not check for lost jobs yet ({type(exc).__name__}); the worker will.", flush=True)


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
    commands.add_parser("webhook-worker", help="run the webhook worker (the `webhooks` queue) in the foreground")
    web = commands.add_parser("web", help="serve one web replica (built frontend, API, websocket)")
    web.add_argument("--port", type=int, default=None, help="default: LOCKN_PORT")
    web.add_argument("--no-frontend", action="store_true", help="API and websocket only (a proxy serves pages)")
    commands.add_parser("build", help="build the static frontend once, for the replicas to serve")
    rehearsal = commands.add_parser("prod-local", help="rehearse production here: proxy, web replicas, workers")
    rehearsal.add_argument("--replicas", type=int, default=2)
    rehearsal.add_argument("--workers", type=int, default=2)
    add_key_commands(commands)
    add_qa_commands(commands)
    add_model_commands(commands)
    args = parser.parse_args(argv)
    # Everything this process tree writes (database, audio, clips, the broker's file) is the owner's alone.
    os.umask(0o077)
    try:
        settings = get_settings()
    except ProductionConfigError as refusal:
        print(refusal.report(), file=sys.stderr)
        return EXIT_BAD_CONFIG
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # also a data directory made before LockN kept its files private
    if args.command == "keys":
        from backend.core.db import migrate
        from backend.ops.key_cli import run_key_command

        install_key_masking()
        migrate()
        return run_key_command(args)
    if args.command == "models":
        return run_model_command(args, settings)
    if args.command in QA_COMMANDS:
        install_key_masking()
        return run_qa_command(args)
    if args.command == "migrate":
        from backend.core.db import migrate

        migrate()
        print(f"database is at the latest revision ({'SQLite' if settings.uses_sqlite else 'PostgreSQL'})")
        return 0
    if args.command == "worker":
        os.execv(sys.executable, worker_command(args.queues or engine_queues(settings), args.concurrency))
    if args.command == "webhook-worker":
        os.execv(sys.executable, webhook_worker_command(settings))
    if args.command == "web":
        from backend.ops.web_replica import serve

        serve(settings, args.port or settings.port, with_frontend=not args.no_frontend)
        return 0
    if args.command == "build":
        from backend.ops.web_replica import build_frontend

        build_frontend(settings)
        return 0
    if args.command == "prod-local":
        from backend.ops.rehearsal import run_rehearsal

        return run_rehearsal(settings, replicas=args.replicas, workers=args.workers)
    return run_platform(settings, with_worker=not args.no_worker)


if __name__ == "__main__":
    sys.exit(main())
