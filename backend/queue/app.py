"""The Celery application factory, shared by the web tier (to enqueue) and the workers (to run).

Settings chosen for long synthesis jobs (see FIELD-NOTES, "Queue"): a task is
acknowledged only after it finishes, a worker takes one task at a time, and a
task whose pool process dies is requeued, so a killed worker loses no job.
The web tier only ever sends tasks by name (`backend.queue.routing`); the task
code itself lives in `workers/tasks.py`, which only the worker process imports.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from celery.schedules import crontab

from backend.core.settings import Settings, get_settings
from backend.queue.routing import DEFAULT_QUEUE, QA_QUEUE, QA_TASK, WEBHOOK_QUEUE, WEBHOOK_TASK


def qa_beat_schedule(settings: Settings) -> dict[str, dict]:
    """Celery beat's schedule: the nightly QA run at `LOCKN_QA_NIGHTLY_AT` (UTC), or nothing when it is off."""
    when = settings.qa_nightly_time
    if when is None:
        return {}
    hour, minute = when
    return {"nightly-qa": {"task": QA_TASK, "schedule": crontab(hour=hour, minute=minute),
                           "options": {"queue": QA_QUEUE}}}


def create_celery(settings: Settings | None = None, include: tuple[str, ...] = ()) -> Celery:
    """Build the Celery app from settings; the worker passes the modules that define its tasks."""
    settings = settings or get_settings()
    app = Celery("lockn", broker=settings.broker_url, backend=settings.broker_url, include=list(include))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
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
        # finds it `succeeded` and returns at once (see backend.services.jobs.runner.run_job).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes={QA_TASK: {"queue": QA_QUEUE}, WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}},
        timezone="UTC",
        beat_schedule=qa_beat_schedule(settings),
    )
    return app


@lru_cache(maxsize=4)
def _celery_for(broker_url: str) -> Celery:
    return create_celery()


def get_celery() -> Celery:
    """The producer's app for the broker settings name now (follows settings changes in tests and the CLI)."""
    return _celery_for(get_settings().broker_url)
