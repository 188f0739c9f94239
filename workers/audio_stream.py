"""Live audio of a running job, sentence by sentence, over a Redis stream (`lockn:audio:<job id>`).

The worker appends each sentence's PCM (16-bit, mono) as it is made, a `spoken`
entry once the last sentence is out (streaming readers stop there, without
waiting for the file to be stored), and a final `done` or `error` entry; any web replica reads the stream and encodes it for the
client, so the first sentence can be heard while the rest is still being spoken.
A stream expires `STREAM_TTL_S` after its last chunk, and `FINISHED_TTL_S` after its
end: a finished job is served from its file, so keeping its PCM in Redis any longer
only grows the broker's memory with traffic (about 10 MB per minute of speech).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import redis

STREAM_TTL_S = 600
#: Long enough for a reader that started before the end to drain the stream.
FINISHED_TTL_S = 60
BLOCK_MS = 500  # under the Redis client's 1 s socket timeout


def stream_key(job_id: str) -> str:
    return f"lockn:audio:{job_id}"


@dataclass(frozen=True)
class StreamEvent:
    kind: str  # "audio", "spoken", "done" or "error"
    pcm: np.ndarray | None = None
    rate: int = 0
    message: str = ""


def reset_stream(client: redis.Redis, job_id: str) -> None:
    client.delete(stream_key(job_id))


def publish_chunk(client: redis.Redis, job_id: str, pcm: np.ndarray, rate: int) -> None:
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    _append(client, job_id, {"kind": "audio", "rate": rate, "pcm": data}, STREAM_TTL_S)


def publish_spoken(client: redis.Redis, job_id: str) -> None:
    client.xadd(stream_key(job_id), {"kind": "spoken"})


def publish_end(client: redis.Redis, job_id: str, error: str | None = None) -> None:
    _append(client, job_id, {"kind": "error", "message": error} if error else {"kind": "done"}, FINISHED_TTL_S)


def _append(client: redis.Redis, job_id: str, fields: dict, ttl_s: int) -> None:
    """XADD and EXPIRE in one round trip (the worker pays for each in engine time), atomically: a reader
    that has seen the entry sees its expiry."""
    key = stream_key(job_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.xadd(key, fields)
        pipe.expire(key, ttl_s)
        pipe.execute()


def read_events(client: redis.Redis, job_id: str, timeout_s: float,
                until: tuple[str, ...] = ("done", "error")) -> Iterator[StreamEvent]:
    """Every event of the job's stream from the start, blocking for new ones, up to one of `until`."""
    import time

    key, last_id = stream_key(job_id), "0-0"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = client.xread({key: last_id}, block=BLOCK_MS, count=16)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id
                kind = fields[b"kind"].decode()
                if kind == "audio":
                    pcm = np.frombuffer(fields[b"pcm"], "<i2").astype(np.float32) / 32768.0
                    yield StreamEvent("audio", pcm, int(fields[b"rate"]))
                    continue
                yield StreamEvent(kind, message=fields.get(b"message", b"").decode())
                if kind in until or kind == "error":
                    return
    yield StreamEvent("error", message="timed out waiting for the worker")
