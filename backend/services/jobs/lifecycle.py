"""A job's life after it is queued, and everything that follows each step, in one place.

    queued ──start──▶ running ──succeed──▶ succeeded
                         │ └────fail─────▶ failed
                         └──(cancelled)──▶ failed "Cancelled."  (by its owner: `records.cancel_job`)

A job enters the queue through `records` (its row written, its message sent: the web tier's doors after their
admission checks, or `batch_lines` for a batch's next line). From there the worker (`runner` speaks and stores,
`workers/tasks.py` maps errors) moves it on only through this module, which owns what every end brings:
the admission slot given back, metrics, the log line, the key's usage (written in the transaction that ends the
job, so a worker killed a moment later has lost nothing), the live stream's end, the webhook event, and for a
batch's line its record and the next line sent (`batch_lines.line_finished`). No admission rule is applied here.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import Session

from backend.core.db import get_engine
from backend.core.metrics import JOBS, QUEUE_WAIT, REALTIME_FACTOR
from backend.core.models import Job, as_utc, utcnow
from backend.core.request_context import request_id_scope
from backend.media.engine import SynthesisError
from backend.media.live_publisher import live_publisher
from backend.media.live_stream import publish_end
from backend.services.jobs import batch_lines
from backend.services.jobs.records import CANCELLED_MESSAGE, update_job
from backend.services.jobs.slots import release
from backend.services.keys.usage import add_usage
from backend.services.webhooks import service as webhooks

logger = logging.getLogger("lockn.jobs")
#: A job whose worker died this many times (its message redelivered each time) is failed, not retried.
MAX_ATTEMPTS = 3


class JobCancelled(Exception):
    """The owner cancelled the job: stop, leave the row as the owner left it."""


def start(job_id: str, redelivered: bool) -> Job | dict:
    """queued → running: the job, claimed by this worker; or, when there is nothing to run, why (a dict for the
    task's result).

    A job already `running` is taken over only from a redelivered message (its worker died); a fresh
    message for it is a second copy (a lost job sent again while its first message was being
    delivered), and two workers never run one job: the claim is one conditional UPDATE on `attempts`. A batch's
    line starts only while its batch runs (`batch_lines.may_start`, in the same UPDATE)."""
    with Session(get_engine(), expire_on_commit=False) as session:
        job = session.get(Job, job_id)
    if job is None:
        raise SynthesisError(f"job {job_id} does not exist")
    if job.status == "succeeded":
        return {"job_id": job.id, "status": "succeeded", "redelivered": True}
    if job.status == "failed":  # cancelled while it waited in the queue, or reaped
        return {"job_id": job.id, "status": "failed", "error": job.error}
    if job.status == "running" and not redelivered:
        return {"job_id": job.id, "status": "running", "duplicate": True}
    if job.attempts >= MAX_ATTEMPTS:  # it took its worker down every time: stop handing it out
        raise SynthesisError(f"this job stopped its worker {job.attempts} times and was given up; "
                             "try a shorter text or another voice")
    claimed = {"status": "running", "started_at": utcnow(), "attempts": job.attempts + 1, "progress": 0.0,
               "chars_done": 0, "error": None}
    with get_engine().begin() as connection:
        won = connection.execute(update(Job).where(Job.id == job_id, Job.status == job.status,
                                                   Job.attempts == job.attempts, batch_lines.may_start())
                                 .values(**claimed)).rowcount == 1
    if not won:
        if batch_lines.stop_if_cancelled(job):  # a line of a batch cancelled before it could start
            return {"job_id": job.id, "status": "failed", "error": "the batch was cancelled"}
        return {"job_id": job.id, "status": "running", "duplicate": True}
    for name, value in claimed.items():
        setattr(job, name, value)
    QUEUE_WAIT.labels(job.engine).observe(max(0.0, (job.started_at - as_utc(job.created_at)).total_seconds()))
    return job


def succeed(job: Job, **fields: object) -> None:
    """running → succeeded with `fields` (its audio, duration, engine time…), and the job's audio seconds on its
    key's usage, in one transaction; `JobCancelled` when the row is no longer `running` (a cancel that landed
    last wins). A batch line's usage is written with its line's record instead (`batch_lines`)."""
    fields = {**fields, "status": "succeeded", "finished_at": utcnow()}
    duration = float(fields.get("duration_s") or 0.0)
    with get_engine().begin() as connection:
        won = connection.execute(update(Job).where(Job.id == job.id, Job.status == "running")
                                 .values(**fields)).rowcount == 1
        if won and job.key_id is not None and job.batch_id is None:
            add_usage(connection, job.key_id, audio_seconds=duration)
    if not won:
        raise JobCancelled(job.id)
    for name, value in fields.items():
        setattr(job, name, value)
    end_live_audio(job.id)
    engine_time = float(job.engine_time_s or 0.0)
    logger.info("job %s succeeded: %.1f s of %s audio in %.2f s", job.id, duration, job.engine, engine_time)
    if duration > 0:
        REALTIME_FACTOR.labels(job.engine).observe(engine_time / duration)
    _ended(job)


def fail(job_id: str, message: str) -> None:
    """→ failed, with a message a person can act on (streaming readers are told at once)."""
    message = message[:500]
    update_job(job_id, status="failed", error=message, finished_at=utcnow())  # no row if deleted meanwhile
    end_live_audio(job_id, message)
    with Session(get_engine()) as session:
        job = session.get(Job, job_id)
    if job is None:
        return
    with request_id_scope(job.request_id):
        logger.warning("job %s failed: %s", job_id, message)
    _ended(job)


def cancelled(job_id: str) -> None:
    """The worker stopped a job its owner cancelled (the row says so already): end its live stream, and for a
    batch's line record it and send the next."""
    end_live_audio(job_id, CANCELLED_MESSAGE)
    with Session(get_engine()) as session:
        job = session.get(Job, job_id)
    if job is not None:
        batch_lines.line_finished(job)


def end_live_audio(job_id: str, error: str | None = None) -> None:
    """Close the job's live stream (`done`, or `error` with a message) and wait until it is sent, so a
    client streaming the job stops at once rather than waiting out its timeout."""
    live_publisher.publish(publish_end, job_id, error)
    live_publisher.flush()


def _ended(job: Job) -> None:
    """What every end of a job brings, once its row says so."""
    release(job.id)
    JOBS.labels(job.engine, job.status).inc()
    webhooks.job_event(job)
    batch_lines.line_finished(job)
