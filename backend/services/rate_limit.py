"""Per-key sliding-window rate limits: exact, atomic under concurrency, one interface, two stores.

A sliding *log*: each allowed request's timestamp is kept for one window; a
request is allowed while fewer than `limit` timestamps lie inside the window.
That makes the allowed count exact to the limit (no fixed-window bursts at the
boundary). `RedisRateLimiter` runs the check-and-add in one Lua script so every
web replica shares the same count; `InProcessRateLimiter` does the same under a
lock for a single process.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import redis


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    #: Unix time (seconds) at which a slot frees up / the window fully resets.
    reset_at: float
    #: Seconds to wait before retrying; 0 when allowed.
    retry_after: float

    def headers(self) -> dict[str, str]:
        """The `X-RateLimit-*` headers (and `Retry-After` when refused)."""
        values = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                  "X-RateLimit-Reset": str(math.ceil(self.reset_at))}
        if not self.allowed:
            values["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return values


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        """Count one request for `key` if it fits in the window; say whether it did."""
        ...


class InProcessRateLimiter:
    """Sliding log in this process's memory; for a single web process (the embedded default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, deque[float]] = {}

    def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        now = time.time()
        with self._lock:
            log = self._logs.setdefault(key, deque())
            while log and log[0] <= now - window_s:
                log.popleft()
            if len(log) < limit:
                log.append(now)
                return RateDecision(True, limit, limit - len(log), log[0] + window_s, 0.0)
            oldest = log[0]
            return RateDecision(False, limit, 0, oldest + window_s, oldest + window_s - now)


# KEYS[1] = the key's sorted set; ARGV = window_ms, limit, member. Redis' own clock, so replicas with skewed
# clocks still share one window, and one round trip per request. Returns {allowed, remaining, oldest_ms, now_ms}.
_SLIDING_LOG_LUA = """
local key, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {1, limit - count - 1, tonumber(oldest[2]), now}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]), now}
"""


class RedisRateLimiter:
    """Sliding log in Redis, shared by every process; the Lua script makes check-and-add atomic."""

    PREFIX = "lockn:ratelimit:"

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_SLIDING_LOG_LUA)

    def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        window_ms = int(window_s * 1000)
        allowed, remaining, oldest_ms, now_ms = self._script(
            keys=[self.PREFIX + key], args=[window_ms, limit, uuid.uuid4().hex])
        reset_ms = int(oldest_ms) + window_ms
        retry_after = 0.0 if allowed else max(0.0, (reset_ms - now_ms) / 1000)
        return RateDecision(bool(allowed), limit, int(remaining), reset_ms / 1000, retry_after)
