"""Monthly character quotas, reserved atomically before a job is queued.

A request's characters are added to the key's counter for the month in one Lua
script that refuses instead of adding when the sum would pass the quota, so any
number of concurrent requests, on any number of web replicas, can never spend
more than the quota together. The counter lives in the broker's Redis (the
embedded one by default), starts the month from the usage the database has
recorded, and is refunded when a job could not be queued. Usage rows
(`UsageRecorder`) stay the record for charts; this is only the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import redis

#: Kept a little longer than the longest month; the month is part of the name, so a new month starts at zero.
COUNTER_TTL_S = 35 * 86_400
#: KEYS[1] counter; ARGV chars, quota, initial (-1: unknown), ttl. Returns {allowed, used}; {-1, 0} asks for
#: the initial value (the month's counter does not exist yet).
_RESERVE_LUA = """
local used = redis.call('GET', KEYS[1])
if not used then
  if tonumber(ARGV[3]) < 0 then return {-1, 0} end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4], 'NX')
  used = redis.call('GET', KEYS[1])
end
used = tonumber(used)
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, used} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""


class QuotaExceeded(Exception):
    """The characters asked for would take the key past its monthly quota; nothing was reserved."""


def counter_key(key_id: str, now: datetime) -> str:
    return f"lockn:quota:{key_id}:{now:%Y-%m}"


class QuotaLedger:
    """Reserve and refund characters against monthly quotas, atomically, in Redis."""

    def __init__(self, client: Callable[[], redis.Redis | None], month_used: Callable[[str], int]) -> None:
        """`month_used(key_id)`: characters the key has used this month as far as the database knows."""
        self._client, self._month_used = client, month_used

    def reserve(self, key_id: str, chars: int, quota: int, now: datetime) -> int:
        """Add `chars` to the month's counter and return the new total, or raise `QuotaExceeded`."""
        client = self._client()
        if client is None:
            raise redis.ConnectionError("no Redis configured for quota counters")
        key = counter_key(key_id, now)
        script = client.register_script(_RESERVE_LUA)
        allowed, used = script(keys=[key], args=[chars, quota, -1, COUNTER_TTL_S])
        if allowed == -1:
            allowed, used = script(keys=[key], args=[chars, quota, self._month_used(key_id), COUNTER_TTL_S])
        if allowed != 1:
            raise QuotaExceeded(f"{used} of {quota} characters used this month")
        return int(used)

    def refund(self, key_id: str, chars: int, now: datetime) -> None:
        """Give back what `reserve` took for a job that was never queued."""
        client = self._client()
        if client is not None:
            client.decrby(counter_key(key_id, now), chars)

    def used(self, key_id: str, now: datetime) -> int | None:
        """The month's counter, or None when it has not started (or Redis cannot be reached)."""
        client = self._client()
        try:
            value = client.get(counter_key(key_id, now)) if client is not None else None
        except redis.RedisError:
            return None
        return int(value) if value is not None else None
