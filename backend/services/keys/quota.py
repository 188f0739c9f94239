"""Monthly character quotas, reserved atomically before a job is queued.

A request's characters are added to the month's counters of every quota it spends (a key's lineage's and its
creators', see `key_lineage.py`) in one Lua script that refuses instead of adding when any sum would pass its
quota, so any number of concurrent requests, on any number of web replicas, can never spend more than a quota
together. The counter lives in the broker's Redis (the
embedded one by default), starts the month from the usage the database has
recorded, and is refunded when a job could not be queued. Usage rows
(`UsageRecorder`) stay the record for charts; this is only the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import redis

#: Kept a little longer than the longest month; the month is part of the name, so a new month starts at zero.
COUNTER_TTL_S = 35 * 86_400
#: KEYS: the counters (a key's lineage's, then its creators'); ARGV: chars, ttl, then for each counter its quota
#: and its initial value (-1: unknown). All or nothing: the characters are added to every counter only when
#: each has room. Returns {1, used of the first} when reserved, {0, index, used} naming the (1-based) counter
#: without room, {-1, index...} asking for the initial values of counters that do not exist yet this month.
_RESERVE_LUA = """
local chars, ttl = tonumber(ARGV[1]), ARGV[2]
local missing = {-1}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    local initial = tonumber(ARGV[2 + 2 * i])
    if initial < 0 then table.insert(missing, i) else redis.call('SET', key, initial, 'EX', ttl) end
  end
end
if #missing > 1 then return missing end
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key))
  if used + chars > tonumber(ARGV[1 + 2 * i]) then return {0, i, used} end
end
local first = 0
for i, key in ipairs(KEYS) do
  local used = redis.call('INCRBY', key, chars)
  if i == 1 then first = used end
end
return {1, first}
"""


class QuotaExceeded(Exception):
    """The characters asked for would take a quota past its month; nothing was reserved anywhere.

    `index`: which of the quotas asked for (0-based) had no room."""

    def __init__(self, message: str, index: int = 0) -> None:
        super().__init__(message)
        self.index = index


def counter_key(ledger_id: str, now: datetime) -> str:
    return f"lockn:quota:{ledger_id}:{now:%Y-%m}"


class QuotaLedger:
    """Reserve and refund characters against monthly quotas, atomically, in Redis."""

    def __init__(self, client: Callable[[], redis.Redis | None], month_used: Callable[[str], int]) -> None:
        """`month_used(ledger_id)`: characters used this month as far as the database knows (a counter's start)."""
        self._client, self._month_used = client, month_used

    def _redis(self) -> redis.Redis:
        client = self._client()
        if client is None:
            raise redis.ConnectionError("no Redis configured for quota counters")
        return client

    def reserve(self, ledger_id: str, chars: int, quota: int, now: datetime) -> int:
        """Add `chars` to the month's counter and return the new total, or raise `QuotaExceeded`."""
        return self.reserve_all([(ledger_id, quota)], chars, now)

    def reserve_all(self, quotas: Sequence[tuple[str, int]], chars: int, now: datetime) -> int:
        """Add `chars` to every (ledger, quota)'s month counter, or to none and raise `QuotaExceeded` naming the
        first without room. Returns the first counter's new total."""
        client = self._redis()
        keys = [counter_key(ledger_id, now) for ledger_id, _ in quotas]
        script = client.register_script(_RESERVE_LUA)
        initials = [-1] * len(quotas)
        for _ in range(2):
            args = [chars, COUNTER_TTL_S, *(v for (_, quota), initial in zip(quotas, initials) for v in (quota, initial))]
            reply = script(keys=keys, args=args)
            if reply[0] != -1:
                break
            for index in reply[1:]:  # counters not started this month: from what the database knows
                initials[int(index) - 1] = self._month_used(quotas[int(index) - 1][0])
        if reply[0] == 1:
            return int(reply[1])
        index, used = int(reply[1]) - 1, int(reply[2])
        raise QuotaExceeded(f"{used} of {quotas[index][1]} characters used this month", index)

    def refund(self, ledger_id: str, chars: int, now: datetime) -> None:
        """Give back what `reserve` took for a job that was never queued."""
        self.refund_all([ledger_id], chars, now)

    def refund_all(self, ledger_ids: Sequence[str], chars: int, now: datetime) -> None:
        """Give back what `reserve_all` took from each counter."""
        client = self._client()
        if client is not None:
            with client.pipeline(transaction=True) as pipe:
                for ledger_id in ledger_ids:
                    pipe.decrby(counter_key(ledger_id, now), chars)
                pipe.execute()

    def used(self, ledger_id: str, now: datetime) -> int | None:
        """The month's counter, or None when it has not started (or Redis cannot be reached)."""
        return self.used_all([ledger_id], now)[0]

    def used_all(self, ledger_ids: Sequence[str], now: datetime) -> list[int | None]:
        """Each month counter (None: not started, or Redis cannot be reached), in one round trip."""
        client = self._client()
        try:
            values = client.mget([counter_key(i, now) for i in ledger_ids]) if client is not None else []
        except redis.RedisError:
            values = []
        return [int(v) if v is not None else None for v in values] or [None] * len(ledger_ids)
