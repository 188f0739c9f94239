"""The Celery application shared by the web tier (to enqueue) and the workers (to run).

Settings chosen for long synthesis jobs (see FIELD-NOTES, "Queue"): a task is
acknowledged only after it finishes, a worker takes one task at a time, and a
task whose pool process dies is requeued, so a killed worker loses no job.
"""

from __future__ import annotations

import socket

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from backend.log_masking import install_key_masking
from backend.redis_client import get_redis
from backend.settings import get_settings
from workers.heartbeat import HeartbeatThread, WorkerInfo

#: Queues by hardware; GPU machines consume `gpu`, every machine can consume `cpu`.
QUEUES = ("cpu", "gpu")
#: Longer than the longest job, so Redis redelivers a dead worker's task only when it is really dead.
VISIBILITY_TIMEOUT_S = 2 * 60 * 60


def create_celery() -> Celery:
    """Build the Celery app from settings."""
    settings = get_settings()
    app = Celery("lockn", broker=settings.broker_url, backend=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        task_track_started=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app


install_key_masking()
celery_app = create_celery()
_heartbeat: HeartbeatThread | None = None


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    global _heartbeat
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else ["cpu"]
    info = WorkerInfo(hostname=getattr(sender, "hostname", socket.gethostname()), queues=queues)
    _heartbeat = HeartbeatThread(get_redis(), info)
    _heartbeat.start()


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    if _heartbeat is not None:
        _heartbeat.stop()
