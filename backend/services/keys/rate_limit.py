"""Per-key sliding-window rate limits: exact, atomic under concurrency, one interface, two stores.

A sliding *log*: each allowed request's timestamp is kept for one window; a
request is allowed while fewer than `limit` timestamps lie inside the window.
That makes the allowed count exact to the limit (no fixed-window bursts at the
boundary). A request may count against several windows at once (a key's, and those of the keys that created
it): it is counted in all of them or, when any is full, in none. `RedisRateLimiter` runs the check-and-add in one Lua script so every
web replica shares the same count; `InProcessRateLimiter` does the same under a
lock for a single process.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
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


#: One window a request counts against: (name, limit, window in seconds).
Bucket = tuple[str, int, float]


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        """Count one request for `key` if it fits in the window; say whether it did."""
        ...

    def hit_all(self, buckets: Sequence[Bucket]) -> RateDecision:
        """Count one request in every bucket if each has room, else in none. The decision is the refusing
        bucket's (the one free again last), or, when allowed, that of the bucket with the fewest left."""
        ...


class _OneBucket:
    def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        return self.hit_all([(key, limit, window_s)])  # type: ignore[attr-defined]


def _pick(decisions: list[RateDecision]) -> RateDecision:
    """What the caller is told: a refusal that lasts longest, else the bucket with the fewest requests left
    (the first, the key's own, on a tie)."""
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.retry_after)
    return min(decisions, key=lambda d: d.remaining)


class InProcessRateLimiter(_OneBucket):
    """Sliding log in this process's memory; for a single web process (the embedded default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, deque[float]] = {}

    def hit_all(self, buckets: Sequence[Bucket]) -> RateDecision:
        now = time.time()
        with self._lock:
            logs = []
            for key, limit, window_s in buckets:
                log = self._logs.setdefault(key, deque())
                while log and log[0] <= now - window_s:
                    log.popleft()
                logs.append(log)
            refusals = [RateDecision(False, limit, 0, log[0] + window_s, log[0] + window_s - now)
                        for log, (_, limit, window_s) in zip(logs, buckets) if len(log) >= limit]
            if refusals:
                return _pick(refusals)
            for log in logs:
                log.append(now)
            return _pick([RateDecision(True, limit, limit - len(log), log[0] + window_s, 0.0)
                          for log, (_, limit, window_s) in zip(logs, buckets)])


# KEYS = the buckets' sorted sets; ARGV = member, then window_ms and limit of each. Redis' own clock, so replicas
# with skewed clocks still share one window, and one round trip per request. Added to every set or, when one is
# full, to none. Returns {now_ms, allowed, then for each bucket: its remaining and oldest_ms}; when refused,
# a full bucket's remaining is -1.
_SLIDING_LOG_LUA = """
local member = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local counts, allowed = {}, 1
for i, key in ipairs(KEYS) do
  local window, limit = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  counts[i] = redis.call('ZCARD', key)
  if counts[i] >= limit then allowed = 0 end
end
local reply = {now, allowed}
for i, key in ipairs(KEYS) do
  local window, limit = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local remaining = -1
  if allowed == 1 then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, window)
    remaining = limit - counts[i] - 1
  elseif counts[i] < limit then
    remaining = limit - counts[i]
  end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  table.insert(reply, remaining)
  table.insert(reply, tonumber(oldest[2] or now))
end
return reply
"""


class RedisRateLimiter(_OneBucket):
    """Sliding log in Redis, shared by every process; the Lua script makes check-and-add atomic."""

    PREFIX = "lockn:ratelimit:"

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_SLIDING_LOG_LUA)

    def hit_all(self, buckets: Sequence[Bucket]) -> RateDecision:
        windows_ms = [int(window_s * 1000) for _, _, window_s in buckets]
        reply = self._script(keys=[self.PREFIX + key for key, _, _ in buckets],
                             args=[uuid.uuid4().hex, *(v for (_, limit, _), window_ms in zip(buckets, windows_ms)
                                                       for v in (window_ms, limit))])
        now_ms, allowed = int(reply[0]), bool(reply[1])
        decisions = []
        for (_, limit, _), window_ms, remaining, oldest_ms in zip(buckets, windows_ms, reply[2::2], reply[3::2]):
            reset_ms = int(oldest_ms) + window_ms
            if allowed:
                decisions.append(RateDecision(True, limit, int(remaining), reset_ms / 1000, 0.0))
            elif int(remaining) < 0:
                decisions.append(RateDecision(False, limit, 0, reset_ms / 1000, max(0.0, (reset_ms - now_ms) / 1000)))
        return _pick(decisions)
