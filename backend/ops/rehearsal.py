"""`make prod-local`: the production topology, rehearsed on one machine.

Two web replicas (each Reflex's production server, state in Redis), two Celery
workers, the machine's PostgreSQL and Redis, and a round-robin proxy on
`LOCKN_PORT` standing in for the Caddy of a real deployment (deploy/Caddyfile).
It runs with `LOCKN_ENV=rehearsal`: production's rules, except that the
development identity provider may sign people in, because a rehearsal only
listens on loopback (see `backend.core.settings.rehearsal_problems`).
"""

from __future__ import annotations

import os
import sys

from backend.ops.supervisor import Supervisor, engine_queues, supervise, webhook_worker_command, worker_command
from backend.core.settings import Settings
from backend.ops.web_replica import build_frontend, replica_workers, web_command


def replica_ports(settings: Settings, replicas: int) -> list[int]:
    """Replicas listen on the ports right after the public one (3001, 3002 behind 3000)."""
    return [settings.port + 1 + index for index in range(replicas)]


def proxy_command(settings: Settings, ports: list[int]) -> list[str]:
    backends = [arg for port in ports for arg in ("--backend", f"127.0.0.1:{port}")]
    return [sys.executable, "-m", "backend.ops.local_proxy", "--listen", f"{settings.host}:{settings.port}", *backends]


def run_rehearsal(settings: Settings, replicas: int = 2, workers: int = 2) -> int:
    """Migrate, build the frontend once, then run proxy, replicas and workers until Ctrl-C."""
    from backend.core.db import migrate

    if not settings.distributed:
        raise SystemExit("prod-local needs LOCKN_ENV=rehearsal (or prod) with LOCKN_DATABASE_URL and LOCKN_REDIS_URL; "
                         "`make prod-local` sets them")
    if not settings.uses_sqlite:
        create_database_if_missing(settings.sqlalchemy_url)
    migrate()
    build_frontend(settings)
    ports = replica_ports(settings, replicas)
    web_env = {**os.environ, "GRANIAN_WORKERS": replica_workers()}

    def start(supervisor: Supervisor) -> None:
        for index in range(workers):
            supervisor.start(f"worker {index + 1}", worker_command(engine_queues(settings), index=index))
        supervisor.start("webhook worker", webhook_worker_command(settings, index=workers))
        for port in ports:
            supervisor.start(f"web :{port}", web_command(port), env=web_env)
        supervisor.start("proxy", proxy_command(settings, ports))
        print(f"LockN rehearsal on {settings.base_url}: {replicas} web replicas ({', '.join(map(str, ports))}), "
              f"{workers} workers and a webhook worker, PostgreSQL and Redis  (Ctrl-C stops everything)", flush=True)

    return supervise(start)


def create_database_if_missing(url: str) -> None:
    """The rehearsal's PostgreSQL database, created on first use (a real deployment provisions its own)."""
    import psycopg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{target.database}"')
