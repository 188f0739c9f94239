"""Shared fixtures: isolated settings per test, and the real PostgreSQL and Redis when configured.

`LOCKN_TEST_POSTGRES_URL` / `LOCKN_TEST_REDIS_URL` point the service variants at
real servers. Without them those tests skip with a visible reason; in CI
(`CI=true` or `LOCKN_REQUIRE_SERVICES=1`) a missing variable is a failure.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Metrics of the test process and the workers it starts go to a directory of this run, not the checkout's data/.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lockn-test-metrics-"))

from backend.core import db, redis_client  # noqa: E402
from backend.core.settings import Settings, get_settings
from backend.ops.harness import reset_caches, wait_for_worker_heartbeat  # noqa: F401  (tests import them from here)

ISOLATED_VARIABLES = ("LOCKN_ENV", "LOCKN_DATABASE_URL", "LOCKN_REDIS_URL", "LOCKN_SECRET_KEY", "LOCKN_PUBLIC_URL",
                      "AUTH0_DOMAIN", "AUTH0_CLIENT_ID", "AUTH0_CLIENT_SECRET", "AUTH0_AUDIENCE", "LOCKN_PORT")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own data directory and a clean environment (no `.env`, no leaked variables)."""
    for name in ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCKN_ENV", "test")
    monkeypatch.setenv("LOCKN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setitem(Settings.model_config, "env_file", None)
    reset_caches()
    yield tmp_path / "data"
    reset_caches()


def service_url(variable: str) -> str:
    """The URL of a real service for this test, or a skip (a failure in CI) when it is not configured."""
    url = os.environ.get(variable)
    if url:
        return url
    if os.environ.get("CI") == "true" or os.environ.get("LOCKN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{variable} is not set, but CI must run the service tests")
    pytest.skip(f"{variable} is not set: start the service and set it to run this variant")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    from tests.postgres import fresh_database

    with fresh_database(service_url("LOCKN_TEST_POSTGRES_URL")) as url:
        try:
            yield url
        finally:
            db.engine_for.cache_clear()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, emptied before and after the test."""
    import redis

    url = service_url("LOCKN_TEST_REDIS_URL")
    client = redis.Redis.from_url(url, socket_timeout=2)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting there fails at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded_broker(isolated_settings: Path) -> Iterator[str]:
    """The embedded redis-server `make run` starts, on this test's own socket."""
    from backend.ops.supervisor import Supervisor, embedded_broker_command, wait_for_socket

    settings = get_settings()
    supervisor = Supervisor()
    supervisor.start("broker", embedded_broker_command(settings))
    try:
        wait_for_socket(settings.embedded_broker_socket)
        yield settings.broker_url
    finally:
        supervisor.stop_all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated database: SQLite always, and PostgreSQL when LOCKN_TEST_POSTGRES_URL is set."""
    if request.param == "postgres":
        monkeypatch.setenv("LOCKN_DATABASE_URL", request.getfixturevalue("postgres_database"))
        reset_caches()
    db.migrate()
    return get_settings().sqlalchemy_url


@pytest.fixture
def key_service(database: str) -> Iterator["KeyService"]:  # noqa: F821
    """The app's key service (the one routes use), built for this test's settings, closed after it."""
    from backend.services.keys.service import get_key_service

    service = get_key_service()
    yield service
    service.close()


@pytest.fixture
def worker(embedded_broker: str, database: str) -> Iterator["Supervisor"]:  # noqa: F821
    """A real Celery worker (Piper loaded), started the way `make run` starts it, on this test's broker and DB."""
    from backend.ops.supervisor import Supervisor, worker_command

    supervisor = Supervisor()
    supervisor.start("worker", worker_command(), env=dict(os.environ))
    try:
        wait_for_worker_heartbeat()
        yield supervisor
    finally:
        supervisor.stop_all()


@pytest.fixture
def webhook_worker(embedded_broker: str, database: str) -> Iterator["Supervisor"]:  # noqa: F821
    """The webhook worker `make run` starts (the `webhooks` queue, a thread pool), on this test's broker and DB."""
    from backend.ops.supervisor import Supervisor, webhook_worker_command

    supervisor = Supervisor()
    supervisor.start("webhook-worker", webhook_worker_command(get_settings()), env=dict(os.environ))
    try:
        wait_for_worker_heartbeat(queue="webhooks")
        yield supervisor
    finally:
        supervisor.stop_all()


@pytest.fixture
def receiver() -> Iterator["Receiver"]:  # noqa: F821
    """A webhook receiver on loopback (`tests.webhook_receiver`), shut down after the test."""
    from tests.webhook_receiver import Receiver

    made = Receiver()
    yield made
    made.server.shutdown()


def run_async(coroutine):  # type: ignore[no-untyped-def]
    """Run `coroutine` to its end in a thread of its own (Playwright may already run a loop in this one)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def stream_events(job_id: str, timeout_s: float) -> list:
    """Every event of a job's live stream up to its end, read with the web tier's own (async) reader."""
    from backend.core.redis_client import get_async_binary_redis
    from backend.media.live_stream import read_events

    async def collect() -> list:
        return [event async for event in read_events(get_async_binary_redis(), job_id, timeout_s)]

    return run_async(collect())


def wait_for_job(job_id: str, owner: str, timeout_s: float = 120):  # type: ignore[no-untyped-def]
    """Job `job_id`'s status, read as its `owner` would, once it has finished (succeeded or failed)."""
    from backend.services.jobs.service import job_status

    deadline = time.monotonic() + timeout_s
    while (status := job_status(job_id, owner)).status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish"
        time.sleep(0.2)
    return status
