"""Synthesis jobs from the web tier: validate, record, enqueue; and read their status back.

`enqueue_synthesis` and `job_status` are the only two doors: the voice API, the
OpenAI-compatible endpoint and the Studio all call them, so a job looks the same
everywhere (`queued → running (percent, chars) → succeeded | failed`).
Bad input is refused here, before anything is written or queued.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlmodel import Session

from backend.db import get_engine
from backend.models import Job
from backend.redis_client import get_redis
from workers import heartbeat
from workers.audio import FORMATS
from workers.engines import ENGINE_QUEUES

MAX_TEXT_CHARS = 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0
TASK_NAME = "lockn.synthesize"


class InvalidJobRequest(ValueError):
    """The request can never succeed as asked; `field` names what to fix."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class ServiceUnavailable(RuntimeError):
    """The broker or every worker for the voice's engine is down: try again later (503)."""


class JobNotFound(LookupError):
    """No job with that id belongs to this owner."""


@dataclass(frozen=True)
class JobStatus:
    id: str
    status: str
    progress: float
    chars_done: int
    text_chars: int
    voice: str
    engine: str
    format: str
    error: str | None
    duration_s: float | None
    engine_time_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    audio_path: str | None


def live_voices() -> dict[str, tuple[str, heartbeat.WorkerInfo]]:
    """Voice id → (engine, a worker serving it), from the workers' heartbeats."""
    try:
        workers = heartbeat.live_workers(get_redis())
    except redis.RedisError as exc:
        raise ServiceUnavailable("the job queue is unreachable; try again in a moment") from exc
    voices: dict[str, tuple[str, heartbeat.WorkerInfo]] = {}
    for worker in workers:
        for engine in worker.engines:
            for voice in engine.get("voices", []):
                voices.setdefault(voice["id"], (engine["name"], worker))
    return voices


def validate_request(text: str, voice: str, fmt: str, speed: float) -> str:
    """Check everything that does not need a worker; returns the engine for `voice`."""
    if not text or not text.strip():
        raise InvalidJobRequest("text is empty: give 1–4096 characters to speak", "text")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidJobRequest(f"text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}", "text")
    if fmt not in FORMATS:
        raise InvalidJobRequest(f"format {fmt!r} is not supported; choose {', '.join(FORMATS)}", "format")
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidJobRequest(f"speed must be between {MIN_SPEED} and {MAX_SPEED}", "speed")
    served = live_voices()
    if not served:
        raise ServiceUnavailable("no synthesis worker is running; start one with `make worker`")
    if voice not in served:
        raise InvalidJobRequest(f"unknown voice {voice!r}; list voices at /api/voice/voices", "voice")
    return served[voice][0]


def enqueue_synthesis(owner: str, text: str, voice: str, fmt: str = "wav", speed: float = 1.0,
                      key_id: str | None = None) -> Job:
    """Record a queued job and hand it to the queue of the voice's engine. Nothing is left behind on failure."""
    engine = validate_request(text, voice, fmt, speed)
    job = Job(id="job_" + secrets.token_hex(10), owner=owner, key_id=key_id, voice_id=voice, engine=engine,
              text=text, text_chars=len(text), format=fmt, speed=speed)
    with Session(get_engine(), expire_on_commit=False) as session:
        session.add(job)
        session.commit()
    try:
        send_job(job)
    except (BrokerError, redis.RedisError, OSError) as exc:
        with Session(get_engine()) as session:
            session.delete(session.get(Job, job.id))
            session.commit()
        raise ServiceUnavailable("the job queue is unreachable; nothing was queued, try again in a moment") from exc
    return job


def send_job(job: Job) -> None:
    from workers.celery_app import get_celery

    get_celery().send_task(TASK_NAME, args=[job.id], queue=ENGINE_QUEUES.get(job.engine, "cpu"), task_id=job.id)


def job_status(job_id: str, owner: str) -> JobStatus:
    """The job's state as stored by its worker; another owner's job is indistinguishable from none."""
    with Session(get_engine()) as session:
        job = session.get(Job, job_id)
    if job is None or job.owner != owner:
        raise JobNotFound(job_id)
    return JobStatus(job.id, job.status, job.progress, job.chars_done, job.text_chars, job.voice_id, job.engine,
                     job.format, job.error, job.duration_s, job.engine_time_s, job.created_at, job.started_at,
                     job.finished_at, job.audio_path)
