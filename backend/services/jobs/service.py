"""Synthesis jobs from the web tier: validate, record, enqueue; and read their status back.

`enqueue_synthesis` and `job_status` are the only two doors: the voice API, the
OpenAI-compatible endpoint and the Studio all call them, so a job looks the same
everywhere (`queued → running (percent, chars) → succeeded | failed`).
Bad input is refused here, before anything is written or queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import redis
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.metrics import ADMISSION_REFUSALS
from backend.core.models import Job, as_utc
from backend.core.request_context import current_facts
from backend.services.common.errors import ServiceUnavailable
from backend.media.captions import to_json, to_srt, to_vtt
from backend.services.common.ownership import owned_row
from backend.services.common.pagination import BadCursor, newest_first
from backend.services.jobs.admission import (
    Overloaded, TooFast, TooManyConcurrent, acquire, check_queue_room, check_user_rate, holders_of, release,
)
from backend.services.jobs.reaper import is_stalled, reap_stalled_jobs
from backend.services.jobs.records import (  # noqa: F401 - the web tier's doors import these from here too
    CANCELLED_MESSAGE, FINISHED, MAX_TEXT_CHARS, QUEUE_UNREACHABLE, InvalidJobRequest, JobNotFound, cache_key,
    cached_job, cancel_job, cleaned_text, new_job, request_address, send_job, send_written_job, validate_request,
    write_job,
)
from backend.services.jobs.text_input import normalised_text
from backend.services.keys.service import KeyRejected, VerifiedKey, get_key_service
from backend.services.keys.studio_usage import StudioQuotaReached, refund_studio_chars, reserve_studio_chars

JobState = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobStatus:
    id: str
    status: JobState
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
    text: str
    #: Whether captions were asked for (they are at `…/captions.{json,srt,vtt}` once the job succeeded).
    captions: bool = False
    #: The spoken-style direction the request gave ("" for none).
    instructions: str = ""
    #: The speed it was asked for (the Studio's Replay puts it back on the control).
    speed: float = 1.0

    @classmethod
    def of(cls, job: Job) -> JobStatus:
        return cls(job.id, job.status, job.progress, job.chars_done, job.text_chars, job.voice_id, job.engine,
                   job.format, job.error, job.duration_s, job.engine_time_s, as_utc(job.created_at),
                   as_utc(job.started_at), as_utc(job.finished_at), job.audio_path, job.text, job.captions_requested,
                   job.instructions, job.speed)


def enqueue_synthesis(owner: str, text: str, voice: str, fmt: str = "wav", speed: float = 1.0,
                      key: VerifiedKey | None = None, captions: bool = False, instructions: str = "",
                      engine: str | None = None) -> Job:
    """Record a job and hand it to the queue of the voice's engine, or answer at once from the cache.

    A cache hit is a new job row, already `succeeded`, pointing at the earlier audio (so history and
    usage see every request). Nothing is left behind when anything fails, in this order:
    1. admission: without a key (the Studio), the user's rate limit (`TooFast`); for a job that goes to the
       queue (not a cache hit), room on the engine's queue (`Overloaded`) and a free slot among the key's
       (or the Studio user's) concurrent jobs (`TooManyConcurrent`);
    2. with `key`, the characters are reserved on its monthly quota (`KeyRejected` when they do not fit)
       and counted in its usage, and so are a cache hit's audio seconds (the worker counts the rest);
       without, on the Studio user's monthly quota (`StudioQuotaReached`; the job row is their usage record);
    3. the row is written and the message sent.
    Before all of it, the text and instructions are cleaned by the one rule of `text_input` (a text with nothing
    to speak is an `InvalidJobRequest` with code `empty_text`): what is counted, addressed and stored is the
    cleaned text.
    """
    text, instructions = cleaned_text(text), normalised_text(instructions)
    chosen, version = validate_request(owner, text, voice, fmt, speed, instructions, engine)
    if key is None:  # a Studio request: the user's own rate limit (a key has its own)
        check_studio_rate(owner)
    address = request_address(owner, text, voice, fmt, speed, chosen, version, instructions)
    job = new_job(owner, text, voice, chosen, fmt, speed, address, key_id=key.id if key else None,
                   captions_requested=captions, instructions=instructions)
    hit = cached_job(address, owner, captions)
    with ExitStack() as undo:
        if hit is None:
            _broker_call(_admit, job, holders_of(key, owner))
            undo.callback(release, job.id)
        reserve_quota(undo, owner, key, len(text))
        _record_and_send(job, hit)
        undo.pop_all()  # queued (or answered): keep the slot and the reservation
    if (facts := current_facts()) is not None:  # for the request log
        facts.job_id, facts.chars = job.id, job.text_chars
    return job


#: What a built-in voice says in the library, and who owns the job that says it: LockN itself, so a sample is
#: made once per voice (and engine version) for everyone, and is never anyone's history, usage or quota.
SAMPLE_TEXT = "Hello! This is how I sound when I read your text aloud."
SAMPLE_OWNER = "lockn|voice-samples"


def voice_sample_job(voice: str) -> Job:
    """The job whose MP3 is the built-in `voice`'s library sample: the one already made, or a new one queued.

    No per-user limits apply (there are as many samples as voices, each made once); the queue's room does.
    Two first plays at once may both queue one; either answers, and later plays find the newest."""
    engine, version = validate_request(SAMPLE_OWNER, SAMPLE_TEXT, voice, "mp3", 1.0)
    address = cache_key(SAMPLE_OWNER, SAMPLE_TEXT, voice, "mp3", 1.0, version)
    made = cached_job(address, SAMPLE_OWNER)
    if made is not None:
        return made
    job = new_job(SAMPLE_OWNER, SAMPLE_TEXT, voice, engine, "mp3", 1.0, address)
    _broker_call(check_queue_room, engine)
    _record_and_send(job, None)
    return job


def check_studio_rate(owner: str) -> None:
    """Count one Studio generation (a request, or a batch upload) on the user's rate limit, or raise `TooFast`."""
    _broker_call(check_user_rate, owner)


def _admit(job: Job, holders: list[tuple[str, int]]) -> None:
    check_queue_room(job.engine)
    acquire(holders, job.id)


#: Admission's refusals, as the `lockn_admission_refusals` metric names their reasons.
REFUSAL_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (TooFast, "studio_rate_limited"), (TooManyConcurrent, "too_many_concurrent"), (Overloaded, "overloaded"),
    (StudioQuotaReached, "studio_quota_exceeded"), (KeyRejected, "quota_exceeded"))


def _broker_call(function: Callable[..., None], *args: object) -> None:
    """`function(*args)`, with an unreachable broker turned into the answer a person can act on (and a
    refusal counted by its reason)."""
    try:
        function(*args)
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailable(QUEUE_UNREACHABLE) from exc
    except tuple(kind for kind, _ in REFUSAL_REASONS) as exc:
        ADMISSION_REFUSALS.labels(next(reason for kind, reason in REFUSAL_REASONS if isinstance(exc, kind))).inc()
        raise


def reserve_quota(undo: ExitStack, owner: str, key: VerifiedKey | None, chars: int) -> None:
    """Reserve `chars` on the key's monthly quota (`KeyRejected`), or without a key on the Studio user's
    (`StudioQuotaReached`), and have `undo` give them back should what they were for not happen."""
    _broker_call(_reserve, owner, key, chars)
    undo.callback(refund_quota, owner, key, chars)


def _reserve(owner: str, key: VerifiedKey | None, chars: int) -> None:
    if key is not None:
        get_key_service().reserve_chars(key, chars)
    else:
        reserve_studio_chars(owner, chars)


def refund_quota(owner: str, key: VerifiedKey | None, chars: int) -> None:
    """Give back characters `reserve_quota` took for work that never ran (best effort: with the broker down the
    reservation stays, erring on the quota's side)."""
    if key is not None:
        _refund(get_key_service().refund_chars, key, chars)
    else:
        _refund(refund_studio_chars, owner, chars)


def _refund(refund: Callable[..., None], *args: object) -> None:
    try:
        refund(*args)
    except redis.RedisError:
        pass  # the broker is down: the reservation stays, erring on the quota's side


def _record_and_send(job: Job, hit: Job | None) -> None:
    write_job(job, hit)
    if job.status != "succeeded":
        send_written_job(job)
    _record_usage(job)


def _record_usage(job: Job) -> None:
    if job.key_id is None:
        return
    audio_seconds = (job.duration_s or 0.0) if job.status == "succeeded" else 0.0
    get_key_service().record_usage(job.key_id, chars=job.text_chars, audio_seconds=audio_seconds)


def _owned_job(job_id: str, owner: str) -> Job:
    """The owner's job, or `JobNotFound` (another owner's job is indistinguishable from none)."""
    with Session(get_engine()) as session:
        job = owned_row(session, Job, job_id, owner, JobNotFound)
    return job


class CaptionsUnavailable(Exception):
    """The job has no captions (yet): the message says why, in words."""


def job_captions(job_id: str, owner: str) -> dict:
    """The captions document of one of the owner's jobs (see `backend/media/captions.py`)."""
    job = _owned_job(job_id, owner)
    if not job.captions_requested:
        raise CaptionsUnavailable("this job was made without captions: ask for them with \"captions\": true")
    if job.captions is None:
        raise CaptionsUnavailable(f"this job is {job.status}: captions come with its audio")
    return job.captions


CaptionFormat = Literal["json", "srt", "vtt"]


def captions_file(job_id: str, owner: str, fmt: CaptionFormat) -> str:
    """One of the owner's job's captions as a file: JSON (sentences and words), SRT or VTT."""
    document = job_captions(job_id, owner)
    return json.dumps(to_json(document)) if fmt == "json" else to_srt(document) if fmt == "srt" else to_vtt(document)


def job_status(job_id: str, owner: str) -> JobStatus:
    """The job's state as stored by its worker; another owner's job is indistinguishable from none."""
    job = _owned_job(job_id, owner)
    if is_stalled(job):  # its worker died for good: say so now rather than "running" forever
        reap_stalled_jobs()
        return job_status(job_id, owner)
    return JobStatus.of(job)


def list_jobs(owner: str, limit: int = 20, cursor: str | None = None) -> tuple[list[JobStatus], str | None]:
    """The owner's jobs, newest first, and the cursor of the next page (None on the last). A batch's lines are
    not among them (a thousand of them would bury everything else): they are in the batch's manifest."""
    with Session(get_engine()) as session:
        try:
            page = newest_first(session, Job, owner, limit, cursor, [col(Job.batch_id).is_(None)])
        except BadCursor:
            raise InvalidJobRequest("cursor is not a job of yours", "cursor") from None
    return [JobStatus.of(job) for job in page.items], page.next_cursor


def delete_job(job_id: str, owner: str) -> None:
    """Forget a job; its audio file goes too unless a cached twin still points at it."""
    with Session(get_engine()) as session:
        job = owned_row(session, Job, job_id, owner, JobNotFound)
        path, active = job.audio_path, job.status not in FINISHED
        session.delete(job)
        session.commit()
        if active:
            release(job_id)
        shared = path and session.exec(select(Job.id).where(Job.audio_path == path)).first()
    if path and not shared:
        Path(path).unlink(missing_ok=True)
