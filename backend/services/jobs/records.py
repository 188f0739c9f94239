"""Job rows: checking a request, its content address, writing its row and sending its message, cancelling it.

What the web tier's doors (`service.py`, which adds admission: rate limits, concurrency, quotas) and the worker's
side (`lifecycle.py`, a batch's next line in `batch_lines.py`) share. No admission rule lives here, so the worker
side never reaches one.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import Job
from backend.core.redis_client import get_binary_redis
from backend.core.request_context import current_request_id
from backend.media.codecs import FORMATS
from backend.media.engine import MAX_INSTRUCTIONS_CHARS, MAX_SPEED, MIN_SPEED
from backend.media.live_stream import publish_end
from backend.queue.app import get_celery
from backend.queue.routing import SYNTHESIZE_TASK, queue_for
from backend.services.common.errors import ServiceUnavailable
from backend.services.common.ownership import owned_row
from backend.services.jobs.request_rules import MAX_TEXT_CHARS
from backend.services.jobs.slots import release
from backend.services.jobs.text_input import UnspeakableText, speakable_text
from backend.services.voices.service import (
    CLONED_PREFIX, VoiceNotFound, engine_for_clone, get_cloned_voice, live_voices,
    unavailable_voice_reason,
)

#: The states a job never leaves.
FINISHED = ("succeeded", "failed")
QUEUE_UNREACHABLE = "the job queue is unreachable; nothing was queued, try again in a moment"
#: The error of a job its owner cancelled.
CANCELLED_MESSAGE = "Cancelled."


class InvalidJobRequest(ValueError):
    """The request can never succeed as asked; `field` names what to fix, `code` the kind of refusal (the
    API's error code: `empty_text` for a text with nothing to speak, see `text_input`)."""

    def __init__(self, message: str, field: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.field, self.code = field, code


class JobNotFound(LookupError):
    """No job with that id belongs to this owner."""


def validate_request(owner: str, text: str, voice: str, fmt: str, speed: float, instructions: str = "",
                     engine: str | None = None) -> tuple[str, str]:
    """Check the request against the rules and the live workers; returns (engine, engine version).

    `engine` is a preference that only a cloned voice can honour (any cloning engine speaks it); a built-in
    voice belongs to one engine."""
    if not text or not text.strip():
        raise InvalidJobRequest("text is empty: give 1–4096 characters to speak", "text")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidJobRequest(f"text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}", "text")
    if fmt not in FORMATS:
        raise InvalidJobRequest(f"format {fmt!r} is not supported; choose {', '.join(FORMATS)}", "format")
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidJobRequest(f"speed must be between {MIN_SPEED} and {MAX_SPEED}", "speed")
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidJobRequest(f"instructions are {len(instructions)} characters; the limit is "
                                f"{MAX_INSTRUCTIONS_CHARS}", "instructions")
    if voice.startswith(CLONED_PREFIX):
        try:
            recorded = get_cloned_voice(owner, voice).engine
        except VoiceNotFound:
            raise InvalidJobRequest(f"unknown voice {voice!r}; list voices at /api/voice/voices", "voice") from None
        return engine_for_clone(recorded, engine)
    served = live_voices()
    if voice not in served and (reason := unavailable_voice_reason(voice)) is not None:
        raise ServiceUnavailable(reason)  # a clear refusal now, never a job that waits for weights forever
    if not served:
        raise ServiceUnavailable("no synthesis worker is running; start one with `make worker`")
    if voice not in served:
        raise InvalidJobRequest(f"unknown voice {voice!r}; list voices at /api/voice/voices", "voice")
    speaker, worker = served[voice]
    return speaker, voice_version(worker.engine(speaker), voice)


def voice_version(engine: dict, voice: str) -> str:
    """What a cache address names as the speaker's version: the engine's, and the voice's own revision when it has
    one (a Piper voice's files), so the audio of a voice replaced under the same id is never served for it."""
    revision = next((v.get("revision", "") for v in engine.get("voices", []) if v["id"] == voice), "")
    return f"{engine['version']}+{revision}" if revision else engine["version"]


def cleaned_text(text: str) -> str:
    """`text` by the rule of `text_input`, or the `InvalidJobRequest` (code `empty_text`) that says why not."""
    try:
        return speakable_text(text)
    except UnspeakableText as exc:
        raise InvalidJobRequest(str(exc), "text", exc.code) from None


def cache_key(owner: str, text: str, voice: str, fmt: str, speed: float, engine_version: str,
              instructions: str = "", engine: str = "") -> str:
    """The content address of a request: identical requests get identical audio.

    Instructions and the engine join the address only when given, so the addresses of plain requests
    (and the audio they point at) stay as they were before either existed."""
    parts = [owner, text, voice, fmt, f"{speed:.3f}", engine_version]
    if instructions or engine:
        parts += [instructions, engine]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def request_address(owner: str, text: str, voice: str, fmt: str, speed: float, engine: str, version: str,
                    instructions: str = "") -> str:
    """`cache_key` of a request spoken by `engine`: the engine joins the address only for a cloned voice (which
    several engines can speak); a built-in voice belongs to one."""
    return cache_key(owner, text, voice, fmt, speed, version, instructions,
                     engine if voice.startswith(CLONED_PREFIX) else "")


def cached_job(key: str, owner: str, captions: bool = False) -> Job | None:
    """The owner's newest succeeded job at this address whose audio is still there (and, when `captions` are
    asked for, made with them: the same audio made without is made again, with them)."""
    with Session(get_engine()) as session:
        done = session.exec(select(Job).where(Job.cache_key == key, Job.owner == owner, Job.status == "succeeded")
                            .order_by(col(Job.created_at).desc())).first()
    if done is None or not done.audio_path or not Path(done.audio_path).exists():
        return None
    return None if captions and done.captions is None else done


def new_job(owner: str, text: str, voice: str, engine: str, fmt: str, speed: float, address: str,
             **fields: object) -> Job:
    """A job row for a request (not yet written), carrying the id of the request that asked for it."""
    return Job(id="job_" + secrets.token_hex(10), owner=owner, voice_id=voice, engine=engine, text=text,
               text_chars=len(text), format=fmt, speed=speed, cache_key=address, request_id=current_request_id(),
               **fields)


def write_job(job: Job, hit: Job | None = None) -> None:
    """Write a new job's row; with `hit` (the same request made before, its audio still there) the row is written
    already `succeeded`, pointing at that audio (history and usage see every request)."""
    if hit is not None:
        job.status, job.progress, job.chars_done = "succeeded", 100.0, hit.text_chars
        job.audio_path, job.audio_bytes, job.duration_s, job.engine_time_s = \
            hit.audio_path, hit.audio_bytes, hit.duration_s, 0.0
        job.captions = hit.captions if job.captions_requested else None
        job.started_at = job.finished_at = job.created_at
    with Session(get_engine(), expire_on_commit=False) as session:
        session.add(job)
        session.commit()


def send_written_job(job: Job) -> None:
    """Send a written job's message; when the broker cannot take it, its row is deleted (nothing is left of a job
    that was never queued) and `ServiceUnavailable` says so."""
    try:
        send_job(job)
    except (BrokerError, redis.RedisError, OSError) as exc:
        with Session(get_engine()) as session:
            row = session.get(Job, job.id)
            if row is not None:
                session.delete(row)
                session.commit()
        raise ServiceUnavailable(QUEUE_UNREACHABLE) from exc


def update_job(job_id: str, *, only_while_running: bool = False, **fields: object) -> bool:
    """Write `fields` to the job's row in one UPDATE; False when no row matched.

    With `only_while_running` the condition is part of the UPDATE, so recording progress also answers
    "is the job still wanted?" (cancelled, reaped or deleted jobs are not `running`) without a query of
    its own, and a cancel that lands last is never overwritten."""
    condition = [Job.status == "running"] if only_while_running else []
    with get_engine().begin() as connection:
        result = connection.execute(update(Job).where(Job.id == job_id, *condition).values(**fields))
    return result.rowcount == 1


def send_job(job: Job) -> None:
    get_celery().send_task(SYNTHESIZE_TASK, args=[job.id], queue=queue_for(job.engine, batch=job.batch_id is not None),
                           task_id=job.id)


def cancel_job(job_id: str, owner: str) -> None:
    """Stop a queued or running job: the worker sees it at its next progress write (0.5 s apart) and stops.

    Whoever follows the job hears of it at once (its live stream ends with the cancel message), also
    when it was still waiting in the queue and no worker will ever say so."""
    with Session(get_engine()) as session:
        job = owned_row(session, Job, job_id, owner, JobNotFound)
        if job.status in FINISHED:
            return
        job.status, job.error = "failed", CANCELLED_MESSAGE
        session.add(job)
        session.commit()
    release(job_id)
    try:
        publish_end(get_binary_redis(), job_id, CANCELLED_MESSAGE)
    except redis.RedisError:
        pass  # followers re-read the row within a few seconds (job_audio.RECHECK_S)
