"""Following a job as its worker reports it: progress, the finished file, or the audio as it is spoken.

Everything here reads the job's live stream (`backend/media/live_stream.py`) with
Redis' asyncio client, so a request waiting for its audio holds no thread: any
number of clients can wait at once while health checks, pages and other routes
keep answering. It is the one progress mechanism: the Studio follows a job with
`follow_job`, the API waits with `finished_audio` and streams with `live_chunks`.
Database reads are short and run off the event loop; audio is encoded in a small
bounded pool (`ENCODE_THREADS`), never on the loop itself. A job answered from
the cache is already a file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from backend.core.models import Job
from backend.core.redis_client import get_async_binary_redis
from backend.core.settings import get_settings
from backend.media.captions import Cue, caption_segment, sentence_cues
from backend.media.codecs import StreamEncoder
from backend.media.engine import NO_AUDIO_ERROR
from backend.media.live_stream import StreamEvent, read_events
from backend.services.common.errors import ServiceUnavailable
from backend.services.jobs.service import FINISHED, JobStatus, job_status

#: How often a follower re-reads the job row while the stream is silent: a job cancelled or reaped
#: while it waited in the queue has no worker to say so, and a broker restart loses the stream.
RECHECK_S = 2.0
#: Threads that encode live audio for all of this process's streaming clients together: encoding is
#: CPU work, and a bound keeps a flood of streams from taking more of the machine than this.
ENCODE_THREADS = 2
_encoders = ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="lockn-encode")


class JobFailed(RuntimeError):
    """The worker gave up on the job; the message is the worker's, meant for people. `unspeakable`: the text gave
    no audio at all (`NO_AUDIO_ERROR`), which is the request's doing, not a fault of the platform."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.unspeakable = message == NO_AUDIO_ERROR
        #: What the caller should change: the text, when it was unspeakable; nothing otherwise.
        self.field = "text" if self.unspeakable else None


async def _events(job_id: str, until: tuple[str, ...] = ("done", "error"),
                  idle: bool = False) -> AsyncIterator[StreamEvent]:
    timeout_s = get_settings().job_time_limit_s + 30
    try:
        async for event in read_events(get_async_binary_redis(), job_id, timeout_s, until, idle):
            yield event
    except redis.RedisError as exc:
        raise ServiceUnavailable("lost the connection to the job queue while waiting for audio") from exc


async def _status(job_id: str, owner: str) -> JobStatus:
    return await asyncio.to_thread(job_status, job_id, owner)


async def follow_job(job_id: str, owner: str) -> AsyncIterator[JobStatus]:
    """The job's status now, then again at each change the worker reports, until it ends.

    The last status yielded is `succeeded` or `failed`, unless the worker stayed silent past the
    job's time limit (then it is whatever the row says at that moment)."""
    status = await _status(job_id, owner)
    yield status
    if status.status in FINISHED:
        return
    read_at = time.monotonic()
    async for event in _events(job_id, idle=True):
        if event.kind == "progress":
            status = dataclasses.replace(status, status="running", progress=event.progress,
                                         chars_done=event.chars_done)
        elif event.kind == "audio" and status.status == "queued":
            status = dataclasses.replace(status, status="running")
        elif event.kind in ("done", "error") or time.monotonic() - read_at >= RECHECK_S:
            status, read_at = await _status(job_id, owner), time.monotonic()
        else:
            continue
        yield status
        if status.status in FINISHED:
            return
    final = await _status(job_id, owner)
    if final != status:
        yield final


async def finished_audio(job_id: str, owner: str) -> tuple[JobStatus, Path]:
    """Wait until the job has succeeded (or raise `JobFailed`) and return its audio file."""
    async for status in follow_job(job_id, owner):
        pass
    if status.status != "succeeded" or not status.audio_path:
        raise JobFailed(status.error or "the job did not finish in time")
    return status, Path(status.audio_path)


@dataclasses.dataclass(frozen=True)
class TimedDelta:
    """Encoded audio as it goes out, and the sentences completed since the last delta (none for a header).

    A sentence's `start`/`end` are its place in the job's audio, exact to the sample. It rides on the first
    delta after its audio is complete (a streaming engine sends a sentence in several pieces; its end is known
    only after the last one); how much of it these bytes hold depends on the codec's buffering."""

    data: bytes
    sentences: tuple[Cue, ...] = ()

    @property
    def timestamps(self) -> list[dict]:
        """The sentences as captions time them (start, end, text, estimated word times), for a client to show."""
        return [caption_segment(sentence) for sentence in self.sentences]


async def live_chunks(job_id: str, fmt: str) -> AsyncIterator[bytes]:
    """The job's audio in `fmt`, chunk by chunk as the worker speaks.

    The first event is awaited before this returns, so a job that fails at once raises `JobFailed`
    while an error status can still be sent."""
    deltas = await live_deltas(job_id, fmt)
    return (delta.data async for delta in deltas)


async def live_deltas(job_id: str, fmt: str) -> AsyncIterator[TimedDelta]:
    """As `live_chunks`, with each chunk's sentence and its times (what SSE events carry)."""
    events = (event async for event in _events(job_id, until=("spoken", "done")) if event.kind != "progress")
    first = await anext(events)
    if first.kind == "error":
        raise JobFailed(first.message)
    return _encode_stream(first, events, fmt)


#: Bytes of a stored file per delta: a job answered from the cache has no live stream, its file is sent in pieces.
FILE_DELTA_BYTES = 32 * 1024


async def stored_deltas(path: Path, captions: dict | None = None) -> AsyncIterator[TimedDelta]:
    """A finished job's file as deltas (what SSE events carry), its sentences first when it has captions.

    A cache hit is written `succeeded` and never queued, so no worker ever writes its live stream: waiting on
    that stream (as `live_deltas` does) waited for the job's time limit with no header sent."""
    sentences = tuple(Cue(**cue) for cue in (captions or {}).get("sentences", []))
    if sentences:
        yield TimedDelta(b"", sentences)
    data = await asyncio.to_thread(path.read_bytes)
    for start in range(0, len(data), FILE_DELTA_BYTES):
        yield TimedDelta(data[start:start + FILE_DELTA_BYTES])


async def job_deltas(job: Job, fmt: str) -> AsyncIterator[TimedDelta]:
    """A job just enqueued, as deltas: from its file when the cache answered it, else live as it is spoken."""
    if job.status == "succeeded" and job.audio_path:
        return stored_deltas(Path(job.audio_path), job.captions)
    return await live_deltas(job.id, fmt)


async def _encode_stream(first: StreamEvent, rest: AsyncIterator[StreamEvent], fmt: str) -> AsyncIterator[TimedDelta]:
    loop = asyncio.get_running_loop()
    encoder: StreamEncoder | None = None
    event, rate, sentence_start = first, 1, 0
    completed: list[Cue] = []
    while event.kind in ("audio", "sentence"):
        if event.kind == "sentence":
            completed += sentence_cues([(event.text, event.samples)], rate, start_sample=sentence_start)
            sentence_start += event.samples
        else:
            assert event.pcm is not None
            if encoder is None:
                rate, encoder = event.rate, StreamEncoder(fmt, event.rate)
                yield TimedDelta(encoder.header())
            data = await loop.run_in_executor(_encoders, encoder.encode, event.pcm)
            yield TimedDelta(data, tuple(completed))
            completed = []
        event = await anext(rest, StreamEvent("done"))
    if event.kind == "error":  # the job failed, or the stream lost a piece, after audio went out: no clean end
        raise JobFailed(event.message)
    if encoder is not None:
        yield TimedDelta(await loop.run_in_executor(_encoders, encoder.finish), tuple(completed))


