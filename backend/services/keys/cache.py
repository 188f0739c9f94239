"""The in-process cache of verified keys, and the bus that invalidates it in every process.

Verifying a key from the cache costs a digest and a dictionary lookup. A revoke
or rotate drops the entry here at once and publishes the key id on Redis
(`lockn:keys:invalidate`); every other process's subscriber drops it too. The
TTL bounds staleness if a message were ever missed (e.g. Redis restarting).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis
from cachetools import TTLCache

from backend.services.keys.lineage import Budget

logger = logging.getLogger("lockn.keys")
CHANNEL = "lockn:keys:invalidate"
#: Published (or applied locally) to drop every cached key.
ALL = "*"
POSITIVE_TTL_S = 30.0
NEGATIVE_TTL_S = 5.0
#: Bounds: real keys a process verifies at once, and "no such key" answers (anyone can send forged keys
#: with a valid checksum, unauthenticated; the oldest answers are dropped first, never the real keys).
MAX_KEYS, MAX_MISSES = 100_000, 10_000


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
    #: Characters its lineage (and the keys it created) had used this month when the entry was loaded (flushed).
    month_chars: int
    month: tuple[int, int]
    #: Every budget a request of the key spends, its own first (`services/key_lineage.py`).
    budgets: tuple[Budget, ...] = ()
    ancestry: str = ""


class KeyCache:
    """digest → CachedKey (or None for "no such key"), with TTLs, bounded sizes and invalidation by key id."""

    def __init__(self, positive_ttl_s: float = POSITIVE_TTL_S, negative_ttl_s: float = NEGATIVE_TTL_S,
                 max_keys: int = MAX_KEYS, max_misses: int = MAX_MISSES) -> None:
        self._keys: TTLCache[str, CachedKey] = TTLCache(max_keys, positive_ttl_s)
        self._misses: TTLCache[str, bool] = TTLCache(max_misses, negative_ttl_s)
        self._digest_by_id: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, CachedKey | None]:
        """(hit, entry); a hit with entry None means "known not to exist"."""
        with self._lock:
            if (entry := self._keys.get(digest)) is not None:
                return True, entry
            return digest in self._misses, None

    def put(self, digest: str, entry: CachedKey | None) -> None:
        with self._lock:
            if entry is None:
                self._misses[digest] = True
                return
            self._keys[digest] = entry
            self._digest_by_id[entry.id] = digest
            if len(self._digest_by_id) > 2 * self._keys.maxsize:  # ids of entries that expired since
                self._digest_by_id = {e.id: d for d, e in self._keys.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys) + len(self._misses)

    def invalidate(self, key_id: str) -> None:
        if key_id == ALL:
            self.clear()
            return
        with self._lock:
            digest = self._digest_by_id.pop(key_id, None)
            if digest is not None:
                self._keys.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._misses.clear()
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
            except Exception:  # noqa: BLE001 - e.g. redis-py's ValueError on a socket closed under a read (seen in
                # CI): this thread must outlive anything, or other processes would learn of revocations only by TTL
                logger.exception("key invalidation listener failed; subscribing again")
                self.subscribed.clear()
                self._stopped.wait(1.0)
