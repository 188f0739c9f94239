"""Celery tasks. Synthesis tasks arrive with the engines issue; `ping` proves the round trip."""

from __future__ import annotations

import time

from workers.celery_app import celery_app


@celery_app.task(name="lockn.ping")
def ping() -> dict[str, float]:
    """Answer with the worker's clock: used by tests and the CLI to prove a job goes through the queue."""
    return {"pong": time.time()}
