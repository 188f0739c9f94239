"""Getting a job's audio to a client: wait for the finished file, or stream it live as it is spoken.

Both read the job's live-audio stream (`workers/audio_stream.py`), so waiting
costs no polling and a streaming client hears the first sentence as soon as
the worker has made it. A job answered from the cache is already a file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from backend.redis_client import get_binary_redis
from backend.services.errors import ServiceUnavailable
from backend.services.jobs import JobStatus, job_status
from backend.settings import get_settings
from workers.audio import StreamEncoder
from workers.audio_stream import StreamEvent, read_events


class JobFailed(RuntimeError):
    """The worker gave up on the job; the message is the worker's, meant for people."""


def _timeout_s() -> float:
    return get_settings().job_time_limit_s + 30


def _events(job_id: str, until: tuple[str, ...] = ("done", "error")) -> Iterator[StreamEvent]:
    import redis

    try:
        yield from read_events(get_binary_redis(), job_id, _timeout_s(), until)
    except redis.RedisError as exc:
        raise ServiceUnavailable("lost the connection to the job queue while waiting for audio") from exc


def finished_audio(job_id: str, owner: str) -> tuple[JobStatus, Path]:
    """Block until the job has succeeded (or raise `JobFailed`) and return its audio file."""
    status = job_status(job_id, owner)
    if status.status not in ("succeeded", "failed"):
        for event in _events(job_id):
            if event.kind in ("done", "error"):
                break
        status = job_status(job_id, owner)
    if status.status != "succeeded" or not status.audio_path:
        raise JobFailed(status.error or "the job did not finish in time")
    return status, Path(status.audio_path)


def live_chunks(job_id: str, owner: str, fmt: str) -> Iterator[bytes]:
    """The job's audio in `fmt`, chunk by chunk as the worker speaks.

    The first chunk is produced before this returns control to the caller's response, so a job
    that fails at once raises `JobFailed` while an error status can still be sent.
    """
    events = _events(job_id, until=("spoken", "done"))
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
