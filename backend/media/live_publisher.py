"""Live audio goes to the broker from a background thread, so the engine never waits on Redis.

Every Redis round trip costs the synthesis loop the time the broker takes to answer, and on a small
machine the broker shares the CPU with the engine's own threads. Profiled with py-spy at 4 concurrent
clients, the loop spent about 3 % of each job waiting on those answers (mostly the PCM chunks).
One thread per worker process now sends the stream's events, in order, while the engine speaks the
next sentence; a job waits for its events once, before it returns (`flush`).

Publishing never fails the job: a broker that stops answering is waited out for a while
(`live_stream.RECONNECT_WINDOW_S`); an event given up on after that is logged, and clients streaming that job
get an error at the gap instead of audio with a hole in it (the finished job is served whole from its file).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

import redis

from backend.core.redis_client import get_binary_redis

logger = logging.getLogger("lockn.worker")

Publisher = Callable[..., None]  # backend.media.live_stream's publish_* functions: (client, job_id, ...)
#: How long a job waits for its live events before it returns anyway (the broker may be down).
FLUSH_TIMEOUT_S = 5.0


class LivePublisher:
    """An ordered queue of stream events and the thread that sends them; made again after a fork."""

    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Publisher, tuple] | threading.Event] = queue.SimpleQueue()

    def publish(self, publisher: Publisher, *args: object) -> None:
        """Queue `publisher(client, *args)`; returns at once."""
        self._ensure_thread()
        self._queue.put((publisher, args))

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until everything queued so far is sent (or dropped); False if that took over `timeout_s`."""
        self._ensure_thread()
        sent = threading.Event()
        self._queue.put(sent)
        return sent.wait(timeout_s)

    def _ensure_thread(self) -> None:
        # Celery's prefork pool forks after import: a thread started in the parent does not exist in a child.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._send_forever, name="lockn-live-audio", daemon=True).start()
                self._pid = os.getpid()

    def _send_forever(self) -> None:
        events = self._queue
        while True:
            item = events.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            publisher, args = item
            try:
                publisher(get_binary_redis(), *args)
            except redis.RedisError as exc:
                logger.warning("live audio of job %s: an event was not sent (%s); its streaming clients get an "
                               "error, the stored file is whole", args[0] if args else "?", exc)
            except Exception:  # noqa: BLE001 - a bad event must not stop the events after it
                logger.exception("could not publish live audio")


#: The worker process's publisher (one thread per process).
live_publisher = LivePublisher()
