"""The Celery application shared by the web tier (to enqueue) and the workers (to run).

Settings chosen for long synthesis jobs (see FIELD-NOTES, "Queue"): a task is
acknowledged only after it finishes, a worker takes one task at a time, and a
task whose pool process dies is requeued, so a killed worker loses no job.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from dataclasses import asdict

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from backend.log_masking import install_key_masking
from backend.redis_client import get_redis
from backend.settings import Settings, get_settings
from workers.heartbeat import HeartbeatThread, WorkerInfo
from workers.reaper import StalledJobSweeper

#: Queues by hardware; GPU machines consume `gpu`, every machine can consume `cpu`.
QUEUES = ("cpu", "gpu")
#: The nightly QA run's own queue, consumed only by `backend.cli beat`: the suite it runs sends synthesis
#: jobs to `cpu`, which a QA task occupying the only `cpu` slot would never see done.
QA_QUEUE = "qa"
QA_TASK = "lockn.qa_regression"


def qa_beat_schedule(settings: Settings) -> dict[str, dict]:
    """Celery beat's schedule: the nightly QA run at `LOCKN_QA_NIGHTLY_AT` (UTC), or nothing when it is off."""
    when = settings.qa_nightly_time
    if when is None:
        return {}
    hour, minute = when
    return {"nightly-qa": {"task": QA_TASK, "schedule": crontab(hour=hour, minute=minute),
                           "options": {"queue": QA_QUEUE}}}


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
        task_time_limit=settings.job_time_limit_s + 30,
        task_soft_time_limit=settings.job_time_limit_s,
        # Longer than the longest job, so Redis redelivers a dead worker's task only when it is really dead.
        broker_transport_options={
            "visibility_timeout": settings.redelivery_timeout_s,
            # kombu sweeps for abandoned messages every interval × throttle seconds (100 s by default);
            # sweep every few seconds instead, so redelivery follows the timeout closely.
            "unacked_restore_interval": max(1, min(10, settings.redelivery_timeout_s // 3)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.redelivery_timeout_s},
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # A running job survives a broker blip: it finishes and is stored; its redelivered message then
        # finds it `succeeded` and returns at once (see workers.synthesis.run_job).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes={QA_TASK: {"queue": QA_QUEUE}},
        timezone="UTC",
        beat_schedule=qa_beat_schedule(settings),
    )
    return app


install_key_masking()
celery_app = create_celery()


@lru_cache(maxsize=4)
def _celery_for(broker_url: str) -> Celery:
    return celery_app if celery_app.conf.broker_url == broker_url else create_celery()


def get_celery() -> Celery:
    """The app for the broker settings name now: the producer side follows settings changes (tests, CLI)."""
    return _celery_for(get_settings().broker_url)
_heartbeat: HeartbeatThread | None = None


@worker_process_init.connect
def _load_engines(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Each pool process loads its engines once, before its first job (not once per job)."""
    from workers.synthesis import load_engines

    load_engines(get_settings().engine_names)


@worker_process_shutdown.connect
def _flush_usage(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Pool processes exit without running atexit handlers: write buffered usage explicitly."""
    from workers.synthesis import usage_recorder

    if usage_recorder.cache_info().currsize:
        usage_recorder().close()


def engine_descriptions(names: list[str]) -> list[dict]:
    """What the heartbeat says about each engine this worker can run: info and voices, without loading models."""
    from workers.engines import engine_class

    described = []
    for name in names:
        cls = engine_class(name)
        if cls.available() is None:
            engine = cls()
            described.append({**engine.describe().as_dict(), "queue": cls.queue,
                              "voices": [asdict(v) for v in engine.voices()]})
    return described


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    global _heartbeat
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else ["cpu"]
    # The QA worker loads no engine: announcing one would make /health believe an engine is up.
    engines = engine_descriptions(get_settings().engine_names) if set(queues) - {QA_QUEUE} else []
    info = WorkerInfo(hostname=getattr(sender, "hostname", socket.gethostname()), queues=queues, engines=engines)
    _heartbeat = HeartbeatThread(get_redis(), info)
    _heartbeat.start()
    StalledJobSweeper().start()


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    if _heartbeat is not None:
        _heartbeat.stop()
