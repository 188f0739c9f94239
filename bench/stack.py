"""A throwaway LockN stack for benchmarks: embedded broker, a worker, the API on Granian, a fresh key.

Shared by `bench.speech` and `bench.soak`, so both measure the same thing the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import httpx


@dataclass
class Stack:
    base_url: str
    key: str
    supervisor: object  # backend.ops.supervisor.Supervisor: imported late, after the environment is set


@contextmanager
def local_stack(worker_concurrency: int = 1, rate_per_minute: int = 100_000,
                webhook_worker: bool = False, max_concurrent_jobs: int | None = None) -> Iterator[Stack]:
    """Everything on this machine in a temporary data directory; stopped and removed afterwards. With
    `webhook_worker`, also `make run`'s webhook worker (for benches that send webhooks).

    `max_concurrent_jobs`: the key's cap (None: a key's default, which `bench.flood` floods against)."""
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.update({"LOCKN_DATA_DIR": data_dir, "LOCKN_ENV": "test"})
        for name in ("LOCKN_DATABASE_URL", "LOCKN_REDIS_URL"):
            os.environ.pop(name, None)
        from backend.ops.supervisor import (
            Supervisor, embedded_broker_command, wait_for_socket, webhook_worker_command, worker_command,
        )
        from backend.core.db import migrate
        from backend.services.keys.service import KeySpec, RateLimit, build_key_service
        from backend.core.settings import get_settings
        from backend.ops.harness import reset_caches, wait_for_worker_heartbeat

        reset_caches()  # the caller may have read settings before the environment above was set
        migrate()
        service = build_key_service(get_settings())
        spec = KeySpec("bench", rate_limit=RateLimit(rate_per_minute, 60))
        if max_concurrent_jobs is not None:
            spec = replace(spec, max_concurrent_jobs=max_concurrent_jobs)
        key = service.create("bench", spec)[1]
        service.close()
        supervisor = Supervisor()
        supervisor.start("broker", embedded_broker_command(get_settings()))
        wait_for_socket(get_settings().embedded_broker_socket)
        supervisor.start("worker", worker_command(concurrency=worker_concurrency), env=dict(os.environ))
        if webhook_worker:
            supervisor.start("webhook-worker", webhook_worker_command(get_settings()), env=dict(os.environ))
        port = 18500 + os.getpid() % 400
        supervisor.start("api", [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning", "--factory",
                                 "backend.api:serve_api"], env=dict(os.environ))
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_worker_heartbeat()
            _wait_live(base)
            yield Stack(base, key, supervisor)
        finally:
            supervisor.stop_all()


def _wait_live(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the API at {base} did not come up within {timeout_s:.0f} s")
        time.sleep(0.1)
