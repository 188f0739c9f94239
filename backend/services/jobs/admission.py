"""Admission control: a request that cannot be served soon is refused at once, with when to come back.

Two gates, both checked before a job is recorded, both atomic across every web replica:
- **Per holder** (an API key's lineage and each key that created it, or a signed-in Studio user): at most
  `cap` jobs queued or running at once in each. Each holder's active jobs are a Redis sorted set; a job is
  added to all of its holders' sets, or (one being full) to none, in one Lua check-and-add, which also notes
  which sets hold it, so `release` (`slots.py`) needs only the job's id when it ends; an entry a crash never removed
  expires after the longest a job can live, so a lost release never locks a holder out for good.
- **Per queue**: at most `LOCKN_MAX_QUEUE_DEPTH` waiting messages; beyond it the platform is overloaded
  and says so (503) with a `Retry-After` from how fast the queue drained lately.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import redis
from sqlmodel import Session, col, func, select

from backend.core.db import get_engine
from backend.core.models import Job, utcnow
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue.inventory import queue_depth
from backend.queue.routing import ENGINE_QUEUES, job_queues, queue_for
from backend.services.jobs.reaper import stalled_after_s
from backend.services.jobs.slots import active_set, job_record, release  # noqa: F401 - release: its door here too
from backend.services.keys.service import RateLimit, VerifiedKey, get_key_service

#: KEYS: the job's record, then each holder's set; ARGV: now, expiry, job id, then each holder's cap.
#: 0 admitted (in every set, and the record names them), else the 1-based index of the first full holder.
_ACQUIRE_LUA = """
local ttl = math.ceil(ARGV[2] - ARGV[1]) + 1
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + i]) then return i - 1 end
end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[i], ttl)
  redis.call('RPUSH', KEYS[1], KEYS[i])
end
redis.call('EXPIRE', KEYS[1], ttl)
return 0
"""
#: How far back the drain rate of a queue is measured, and the bounds of the Retry-After it gives.
DRAIN_WINDOW_S = 300
RETRY_AFTER_BOUNDS_S = (1, 600)


class TooManyConcurrent(Exception):
    """The holder (or a key above it) already has its cap of jobs queued or running."""

    def __init__(self, cap: int, inherited: bool = False) -> None:
        whose = "of the key that created this key and the keys it created" if inherited else "of yours"
        super().__init__(f"{cap} job(s) {whose} are already queued or running, the most at once; "
                         "retry when one has finished.")
        self.cap, self.retry_after_s = cap, 2


class TooFast(Exception):
    """A signed-in Studio user started more generations than `LOCKN_STUDIO_RATE_LIMIT` allows."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"You are generating faster than allowed; try again in {self.retry_after_s} s.")


class Overloaded(Exception):
    """The job's queue is full; `retry_after_s` estimates when it will have room."""

    def __init__(self, queue: str, depth: int, retry_after_s: int) -> None:
        super().__init__(f"LockN is overloaded: {depth} jobs are waiting on the {queue} queue; "
                         f"retry in about {retry_after_s} s.")
        self.retry_after_s = retry_after_s


def holders_of(key: VerifiedKey | None, owner: str) -> list[tuple[str, int]]:
    """Whose caps a job counts against, with each cap: its key's lineage's and those of the keys that created
    it, or (from the Studio) its owner's."""
    if key is None:
        return [(f"user:{owner}", get_settings().studio_max_concurrent_jobs)]
    return [(f"key:{budget.lineage_id}", budget.max_concurrent_jobs) for budget in key.budgets] or \
        [(f"key:{key.id}", key.max_concurrent_jobs)]


def acquire(holders: list[tuple[str, int]], job_id: str) -> None:
    """Count `job_id` against every (holder, cap), or raise `TooManyConcurrent` (nothing is counted then)."""
    now = time.time()
    expiry = now + stalled_after_s(get_settings())
    client = get_redis()
    full = client.register_script(_ACQUIRE_LUA)(
        keys=[job_record(job_id), *(active_set(holder) for holder, _ in holders)],
        args=[now, expiry, job_id, *(cap for _, cap in holders)])
    if full:
        raise TooManyConcurrent(holders[full - 1][1], inherited=full > 1)


def check_user_rate(owner: str) -> None:
    """Count one generation against the signed-in user's rate limit (the Studio's), or raise `TooFast`."""
    limit = RateLimit.parse(get_settings().studio_rate_limit)
    decision = get_key_service().limiter.hit(f"user:{owner}", limit.requests, limit.window_s)
    if not decision.allowed:
        raise TooFast(decision.retry_after)


def queue_depths() -> dict[str, int]:
    """Every queue's waiting jobs now (for the metrics scrape); empty when the broker cannot be reached."""
    try:
        return {queue: queue_depth(get_redis(), queue) for queue in job_queues()}
    except redis.RedisError:
        return {}


def check_queue_room(engine: str) -> None:
    """Raise `Overloaded` when the engine's queue already holds `LOCKN_MAX_QUEUE_DEPTH` waiting jobs."""
    queue = queue_for(engine)
    depth = queue_depth(get_redis(), queue)
    limit = get_settings().max_queue_depth
    if depth >= limit:
        raise Overloaded(queue, depth, _retry_after_s(queue, depth - limit + 1))


def _retry_after_s(queue: str, excess: int) -> int:
    """Seconds until `excess` jobs have left the queue, at the rate its jobs finished lately."""
    engines = [engine for engine, engine_queue in ENGINE_QUEUES.items() if engine_queue == queue]
    since = utcnow() - timedelta(seconds=DRAIN_WINDOW_S)
    with Session(get_engine()) as session:
        finished = session.exec(select(func.count()).select_from(Job).where(
            col(Job.engine).in_(engines), col(Job.finished_at) >= since, Job.engine_time_s > 0)).one()
    per_second = finished / DRAIN_WINDOW_S
    low, high = RETRY_AFTER_BOUNDS_S
    return high if per_second == 0 else max(low, min(high, math.ceil(excess / per_second)))
