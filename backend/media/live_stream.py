"""Live audio of a running job, piece by piece, over a Redis stream (`lockn:audio:<job id>`).

The worker appends each piece of PCM (16-bit, mono) as the engine yields it (a sentence, or a few codec frames
of one for a streaming engine), a `sentence` entry when a sentence's audio is complete (its text and length:
what captions and SSE timestamps are built from), a `progress`
entry whenever it records progress on the job row, a `spoken`
entry once the last sentence is out (streaming readers stop there, without
waiting for the file to be stored), and a final `done` or `error` entry; any web replica reads the stream and encodes it for the
client, so the first sentence can be heard while the rest is still being spoken.
Entries carry explicit ids, `<base>-1`, `<base>-2`, … (`base`: the attempt's first entry's time in ms), so a
write whose reply was lost can be sent again without a second copy (the broker refuses an id it already holds),
and a reader sees a piece that never arrived as a gap in the numbers: it answers an error then, never audio with a
hole in it. An end may come from another process (a cancel, from the web tier): it takes the broker's own id,
and a reader takes an end of another numbering as it is. The writer rides out a broker that stops answering for up to `RECONNECT_WINDOW_S`, as readers do.
A stream expires `STREAM_TTL_S` after its last chunk, and `FINISHED_TTL_S` after its
end: a finished job is served from its file, so keeping its PCM in Redis any longer
only grows the broker's memory with traffic (about 10 MB per minute of speech).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import redis
import redis.asyncio

STREAM_TTL_S = 600
#: Long enough for a reader that started before the end to drain the stream.
FINISHED_TTL_S = 60
BLOCK_MS = 500  # under the Redis client's 1 s socket timeout
#: How long a reader rides out a broker that stopped answering (a restart, a stalled event loop on a
#: loaded machine) before it gives up: the supervisor brings a broker back well within this.
RECONNECT_WINDOW_S = 15.0
#: What a reader answers when the stream skips an entry (a write that failed for longer than the window) or an
#: attempt restarted under it (a redelivered job): the audio so far cannot be trusted; the stored file can.
LOST_PIECE = ("the live audio lost a piece while the job queue was unreachable; the finished audio is complete: "
              "fetch it from the job")
RESTARTED = "the job was restarted on another worker while its audio was streaming; fetch the finished audio"
RETRY_PAUSE_S = 0.2

#: job id → (base, last number written) of the stream this process writes (its ids; see the module's notes).
_written: dict[str, tuple[int, int]] = {}
#: Streams with an entry given up on: their readers stop at the gap, so later entries are not waited for.
_broken: set[str] = set()
_written_lock = threading.Lock()


def stream_key(job_id: str) -> str:
    return f"lockn:audio:{job_id}"


@dataclass(frozen=True)
class StreamEvent:
    kind: str  # "audio", "progress", "spoken", "done", "error"; "idle" when nothing came for BLOCK_MS
    pcm: np.ndarray | None = None
    rate: int = 0
    message: str = ""
    progress: float = 0.0
    chars_done: int = 0
    #: A `sentence` event: the sentence just completed, and how many samples of audio it took.
    text: str = ""
    samples: int = 0


def reset_stream(client: redis.Redis, job_id: str) -> None:
    """A redelivered job starts its stream over, numbered anew."""
    _forget(job_id)
    _with_retries(lambda: client.delete(stream_key(job_id)))


def publish_chunk(client: redis.Redis, job_id: str, pcm: np.ndarray, rate: int) -> None:
    """A piece of the job's audio, as the engine yielded it."""
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    _append(client, job_id, {"kind": "audio", "rate": rate, "pcm": data}, STREAM_TTL_S)


def publish_sentence(client: redis.Redis, job_id: str, text: str, samples: int) -> None:
    """A sentence's audio is complete: it is `text`, and the last `samples` samples published hold it."""
    _append(client, job_id, {"kind": "sentence", "text": text.encode(), "samples": samples}, STREAM_TTL_S)


def publish_progress(client: redis.Redis, job_id: str, progress: float, chars_done: int) -> None:
    _append(client, job_id, {"kind": "progress", "progress": progress, "chars_done": chars_done}, STREAM_TTL_S)


def publish_spoken(client: redis.Redis, job_id: str) -> None:
    _append(client, job_id, {"kind": "spoken"}, STREAM_TTL_S)


def publish_end(client: redis.Redis, job_id: str, error: str | None = None) -> None:
    try:
        _append(client, job_id, {"kind": "error", "message": error} if error else {"kind": "done"}, FINISHED_TTL_S,
                ends=True)
    finally:
        _forget(job_id)


def _append(client: redis.Redis, job_id: str, fields: dict, ttl_s: int, ends: bool = False) -> None:
    """XADD (with the entry's own id) and EXPIRE in one round trip (the worker pays for each in engine time),
    atomically: a reader that has seen the entry sees its expiry. Sent again while the broker does not answer,
    up to RECONNECT_WINDOW_S; an id the broker already holds means an earlier try got through. Once an entry is
    given up on, the stream's later entries are dropped at once, all but its end, which is still sent: readers
    stop at the gap with an error then, rather than waiting for an end that never comes."""
    with _written_lock:
        writes_it = job_id in _written
    # An end from a process that wrote none of the stream (the web tier cancelling a job) takes the broker's
    # own id: always after the last entry, whatever the two machines' clocks say.
    key, entry_id = stream_key(job_id), _next_id(job_id) if writes_it or not ends else "*"
    if job_id in _broken and not ends:
        return

    def write() -> None:
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields, id=entry_id)
                pipe.expire(key, ttl_s)
                pipe.execute()
        except redis.ResponseError as exc:
            if "equal or smaller" not in str(exc):
                raise

    try:
        _with_retries(write)
    except redis.RedisError:
        _broken.add(job_id)
        raise


def _forget(job_id: str) -> None:
    with _written_lock:
        _written.pop(job_id, None)
        _broken.discard(job_id)


def _next_id(job_id: str) -> str:
    with _written_lock:
        base, number = _written.get(job_id) or (time.time_ns() // 1_000_000, 0)
        _written[job_id] = base, number + 1
    return f"{base}-{number + 1}"


def _with_retries(call) -> None:  # type: ignore[no-untyped-def]
    """`call()`, again every RETRY_PAUSE_S while the broker cannot be reached, for up to RECONNECT_WINDOW_S."""
    deadline = time.monotonic() + RECONNECT_WINDOW_S
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(RETRY_PAUSE_S)


async def read_events(client: redis.asyncio.Redis, job_id: str, timeout_s: float,
                      until: tuple[str, ...] = ("done", "error"), idle: bool = False) -> AsyncIterator[StreamEvent]:
    """Every event of the job's stream from the start, waiting for new ones, up to one of `until`.

    Asynchronous: a reader waits on the broker without holding a thread, so any number of clients can
    wait for their audio at once. With `idle`, an `idle` event marks each BLOCK_MS that passed without
    one (a follower can look elsewhere meanwhile, e.g. at a job cancelled before a worker saw it).
    A broker that stops answering is waited out for up to RECONNECT_WINDOW_S (a timed-out read is
    retried from the last entry seen, so nothing is read twice); only then does the error reach the caller."""
    key, last_id = stream_key(job_id), "0-0"
    numbering = _Numbering()
    deadline = time.monotonic() + timeout_s
    failing_since: float | None = None
    while time.monotonic() < deadline:
        try:
            reply = await client.xread({key: last_id}, block=BLOCK_MS, count=16)
            failing_since = None
        except (redis.ConnectionError, redis.TimeoutError):
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > RECONNECT_WINDOW_S:
                raise
            await asyncio.sleep(BLOCK_MS / 1000)
            reply = None
        if not reply and idle:
            yield StreamEvent("idle")
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id
                event = _event(fields)
                event = numbering.check(entry_id, ends=event.kind in ("done", "error")) or event
                yield event
                if event.kind in until or event.kind == "error":
                    return
    yield StreamEvent("error", message="timed out waiting for the worker")


class _Numbering:
    """A reader's check that entries follow one another: the same attempt (base), each number one more."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None

    def check(self, entry_id: bytes | str, ends: bool = False) -> StreamEvent | None:
        """None when `entry_id` follows the last one; else the error event the reader answers. An end (`ends`)
        with an id of another attempt, or with nothing before it, was written by another process (the web tier
        cancelling a job, with the broker's own id): it is read as it is."""
        raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        base, number = (int(part) for part in raw.split("-"))
        last, self.last = self.last, (base, number)
        if last is not None and base == last[0]:
            follows = number == last[1] + 1
        else:
            follows = ends or (last is None and number == 1)
        if follows:
            return None
        return StreamEvent("error", message=LOST_PIECE if last is None or base == last[0] else RESTARTED)


def _event(fields: dict[bytes, bytes]) -> StreamEvent:
    kind = fields[b"kind"].decode()
    if kind == "audio":
        return StreamEvent("audio", np.frombuffer(fields[b"pcm"], "<i2").astype(np.float32) / 32768.0,
                           int(fields[b"rate"]))
    if kind == "sentence":
        return StreamEvent("sentence", text=fields[b"text"].decode(), samples=int(fields[b"samples"]))
    if kind == "progress":
        return StreamEvent("progress", progress=float(fields[b"progress"]), chars_done=int(fields[b"chars_done"]))
    return StreamEvent(kind, message=fields.get(b"message", b"").decode())
