"""Following a job as its worker reports it: progress, the finished file, or the audio as it is spoken.

Everything here reads the job's live stream (`backend/media/live_stream.py`), so
waiting costs no polling and a streaming client hears the first sentence as soon
as the worker has made it. It is the one progress mechanism: the Studio follows a
job with `follow_job`, the API waits with `finished_audio` and streams with
`live_chunks`. A job answered from the cache is already a file.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from backend.core.redis_client import get_binary_redis
from backend.core.settings import get_settings
from backend.media.codecs import StreamEncoder
from backend.media.live_stream import StreamEvent, read_events
from backend.services.errors import ServiceUnavailable
from backend.services.jobs import FINISHED, JobStatus, job_status

#: How often a follower re-reads the job row while the stream is silent: a job cancelled or reaped
#: while it waited in the queue has no worker to say so, and a broker restart loses the stream.
RECHECK_S = 2.0


class JobFailed(RuntimeError):
    """The worker gave up on the job; the message is the worker's, meant for people."""


def _events(job_id: str, until: tuple[str, ...] = ("done", "error"), idle: bool = False) -> Iterator[StreamEvent]:
    timeout_s = get_settings().job_time_limit_s + 30
    try:
        yield from read_events(get_binary_redis(), job_id, timeout_s, until, idle)
    except redis.RedisError as exc:
        raise ServiceUnavailable("lost the connection to the job queue while waiting for audio") from exc


def follow_job(job_id: str, owner: str) -> Iterator[JobStatus]:
    """The job's status now, then again at each change the worker reports, until it ends.

    The last status yielded is `succeeded` or `failed`, unless the worker stayed silent past the
    job's time limit (then it is whatever the row says at that moment)."""
    status = job_status(job_id, owner)
    yield status
    if status.status in FINISHED:
        return
    read_at = time.monotonic()
    for event in _events(job_id, idle=True):
        if event.kind == "progress":
            status = dataclasses.replace(status, status="running", progress=event.progress,
                                         chars_done=event.chars_done)
        elif event.kind == "audio" and status.status == "queued":
            status = dataclasses.replace(status, status="running")
        elif event.kind in ("done", "error") or time.monotonic() - read_at >= RECHECK_S:
            status, read_at = job_status(job_id, owner), time.monotonic()
        else:
            continue
        yield status
        if status.status in FINISHED:
            return
    final = job_status(job_id, owner)
    if final != status:
        yield final


def finished_audio(job_id: str, owner: str) -> tuple[JobStatus, Path]:
    """Block until the job has succeeded (or raise `JobFailed`) and return its audio file."""
    for status in follow_job(job_id, owner):
        pass
    if status.status != "succeeded" or not status.audio_path:
        raise JobFailed(status.error or "the job did not finish in time")
    return status, Path(status.audio_path)


def live_chunks(job_id: str, owner: str, fmt: str) -> Iterator[bytes]:
    """The job's audio in `fmt`, chunk by chunk as the worker speaks.

    The first chunk is produced before this returns control to the caller's response, so a job
    that fails at once raises `JobFailed` while an error status can still be sent.
    """
    events = (event for event in _events(job_id, until=("spoken", "done")) if event.kind != "progress")
    first = next(events)
    if first.kind == "error":
        raise JobFailed(first.message)
    return _encode_stream(first, events, fmt)


def _encode_stream(first: StreamEvent, rest: Iterator[StreamEvent], fmt: str) -> Iterator[bytes]:
    encoder: StreamEncoder | None = None
    for event in itertools.chain([first], rest):
        if event.kind != "audio":
            break
        if encoder is None:
            encoder = StreamEncoder(fmt, event.rate)
            yield encoder.header()
        yield encoder.encode(event.pcm)
    if encoder is not None:
        yield encoder.finish()
