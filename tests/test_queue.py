"""A real Celery worker, started the way `make run` starts it, runs a job through the embedded broker."""

from __future__ import annotations

import os
import time

from backend.ops.supervisor import Supervisor, worker_command
from backend.core.redis_client import get_redis
from backend.queue import heartbeat


def wait_for_worker(timeout_s: float = 30.0) -> list[heartbeat.WorkerInfo]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if workers := heartbeat.live_workers(get_redis()):
            return workers
        time.sleep(0.2)
    raise AssertionError(f"no worker reported within {timeout_s} s")


def test_worker_reports_in_runs_a_job_and_withdraws_on_shutdown(embedded_broker: str) -> None:
    from backend.queue.app import create_celery

    supervisor = Supervisor()
    supervisor.start("worker", worker_command(), env=dict(os.environ))
    try:
        (worker,) = wait_for_worker()
        assert worker.queues == ["cpu", "cpu-batch"]
        result = create_celery().send_task("lockn.ping", queue="cpu")
        assert result.get(timeout=20)["pong"] > 0
    finally:
        supervisor.stop_all()
    assert heartbeat.live_workers(get_redis()) == [], "a cleanly stopped worker must stop counting at once"
