"""The worker process's Celery app (`celery -A workers.celery_app worker`): tasks, engines, heartbeat.

The app itself comes from `backend.queue.app.create_celery` (the web tier builds the same one to
send tasks by name); here it gains the task module and the worker's own lifecycle: each pool process
loads its engines once, the worker announces itself (heartbeat) and sweeps abandoned jobs.
"""

from __future__ import annotations

import os
import socket

from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from backend.core.log_masking import install_key_masking
from backend.core.log_setup import configure_logging
from backend.core.metrics import serve_metrics
from backend.core.request_context import install_request_ids
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue.app import create_celery
from backend.queue.heartbeat import HeartbeatThread, WorkerInfo
from backend.queue.routing import DEFAULT_QUEUE, QA_QUEUE, WEBHOOK_QUEUE
from backend.services.job_runner import close_usage_recorder
from workers.engine_loader import engine_descriptions, load_engines
from workers.reaper import StalledJobSweeper

install_key_masking()
install_request_ids()
configure_logging(get_settings())
celery_app = create_celery(include=("workers.tasks",))
_heartbeat: HeartbeatThread | None = None


@worker_init.connect
def _lower_priority(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """`LOCKN_WORKER_NICE`: the worker (and the pool it forks) yields the CPU to processes of normal priority,
    e.g. `make run`'s batch worker to the worker serving interactive requests on the same machine."""
    if nice := get_settings().worker_nice:
        os.nice(nice)


@worker_process_init.connect
def _load_engines(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Each pool process loads its engines once, before its first job (not once per job)."""
    load_engines()


@worker_process_shutdown.connect
def _flush_usage(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Pool processes exit without running atexit handlers: write buffered usage explicitly."""
    close_usage_recorder()


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    global _heartbeat
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else [DEFAULT_QUEUE]
    # The QA and webhook workers load no engine: announcing one would make /health believe an engine is up.
    engines = engine_descriptions(get_settings().engine_names) if set(queues) - {QA_QUEUE, WEBHOOK_QUEUE} else []
    info = WorkerInfo(hostname=getattr(sender, "hostname", socket.gethostname()), queues=queues, engines=engines)
    _heartbeat = HeartbeatThread(get_redis(), info)
    _heartbeat.start()
    StalledJobSweeper().start()
    if port := get_settings().worker_metrics_port:  # a worker machine's own /metrics, for Prometheus to scrape
        serve_metrics(port)


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    if _heartbeat is not None:
        _heartbeat.stop()
