"""The in-process cache of verified keys, and the bus that invalidates it in every process.

Verifying a key from the cache costs a digest and a dictionary lookup. A revoke
or rotate drops the entry here at once and publishes the key id on Redis
(`lockn:keys:invalidate`); every other process's subscriber drops it too. The
TTL bounds staleness if a message were ever missed (e.g. Redis restarting).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

logger = logging.getLogger("lockn.keys")
CHANNEL = "lockn:keys:invalidate"
#: Published (or applied locally) to drop every cached key.
ALL = "*"
POSITIVE_TTL_S = 30.0
NEGATIVE_TTL_S = 5.0


@dataclass(frozen=True)
class CachedKey:
    """What verification needs to know about a key; no secret, no ORM object."""

    id: str
    owner: str
    env: str
    digest: str
    scopes: frozenset[str]
    rate_limit_requests: int
    rate_limit_window_s: int
    quota_chars: int | None
    max_concurrent_jobs: int
    expires_at: datetime | None
    revoked_at: datetime | None
    #: Characters already used this month when the entry was loaded (flushed usage only).
    month_chars: int
    month: tuple[int, int]


class KeyCache:
    """digest → CachedKey (or None for "no such key"), with TTLs and invalidation by key id."""

    def __init__(self, positive_ttl_s: float = POSITIVE_TTL_S, negative_ttl_s: float = NEGATIVE_TTL_S) -> None:
        self._entries: dict[str, tuple[CachedKey | None, float]] = {}
        self._digest_by_id: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ttl = (positive_ttl_s, negative_ttl_s)

    def get(self, digest: str) -> tuple[bool, CachedKey | None]:
        """(hit, entry); a hit with entry None means "known not to exist"."""
        found = self._entries.get(digest)
        if found is None:
            return False, None
        entry, expires = found
        if time.monotonic() >= expires:
            return False, None
        return True, entry

    def put(self, digest: str, entry: CachedKey | None) -> None:
        ttl = self._ttl[0] if entry is not None else self._ttl[1]
        with self._lock:
            self._entries[digest] = (entry, time.monotonic() + ttl)
            if entry is not None:
                self._digest_by_id[entry.id] = digest

    def invalidate(self, key_id: str) -> None:
        if key_id == ALL:
            self.clear()
            return
        with self._lock:
            digest = self._digest_by_id.pop(key_id, None)
            if digest is not None:
                self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._digest_by_id.clear()


class InvalidationBus:
    """Publishes key ids on Redis and applies what other processes publish.

    `client_factory` returns the Redis to use, or None when there is none (a
    single process needs no bus). Failures never block a revoke: the local
    cache is already invalidated, and the TTL bounds what another process sees.
    """

    def __init__(self, client_factory: Callable[[], redis.Redis | None], on_invalidate: Callable[[str], None]) -> None:
        self._client_factory = client_factory
        self._on_invalidate = on_invalidate
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.subscribed = threading.Event()

    def publish(self, key_id: str) -> None:
        client = self._client_factory()
        if client is None:
            return
        try:
            client.publish(CHANNEL, key_id)
        except redis.RedisError as exc:
            logger.warning("could not publish key invalidation (%s); other processes catch up within %.0f s",
                           exc, POSITIVE_TTL_S)

    def start(self) -> None:
        if self._thread is None and self._client_factory() is not None:
            self._thread = threading.Thread(target=self._listen, name="lockn-key-invalidation", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _listen(self) -> None:
        first = True
        while not self._stopped.is_set():
            try:
                pubsub = self._client_factory().pubsub(ignore_subscribe_messages=True)  # type: ignore[union-attr]
                pubsub.subscribe(CHANNEL)
                if not first:
                    self._on_invalidate(ALL)  # messages may have been missed while disconnected
                first = False
                self.subscribed.set()
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        self._on_invalidate(str(message["data"]))
            except (redis.RedisError, OSError, AttributeError):
                self.subscribed.clear()
                self._stopped.wait(1.0)  # Redis is away; retry, the TTL covers the gap
