"""Admission control: a request that cannot be served soon is refused at once, with when to come back.

Two gates, both checked before a job is recorded, both atomic across every web replica:
- **Per holder** (an API key, or a signed-in Studio user): at most `cap` jobs queued or running at once.
  Each holder's active jobs are a Redis sorted set, added to in one Lua check-and-add and removed from
  when the job ends (`release`); an entry a crash never removed expires after the longest a job can
  live, so a lost release never locks a holder out for good.
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
from backend.services.job_reaper import stalled_after_s
from backend.services.keys import RateLimit, get_key_service

#: KEYS[1] the holder's set; ARGV now, expiry, cap, job id. 1 admitted, 0 refused.
_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2] - ARGV[1]) + 1)
return 1
"""
#: How far back the drain rate of a queue is measured, and the bounds of the Retry-After it gives.
DRAIN_WINDOW_S = 300
RETRY_AFTER_BOUNDS_S = (1, 600)


class TooManyConcurrent(Exception):
    """The holder already has its cap of jobs queued or running."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"{cap} job(s) of yours are already queued or running, the most at once; "
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


def holder_of(key_id: str | None, owner: str) -> str:
    """Whose cap a job counts against: its API key's, or (from the Studio) its owner's."""
    return f"key:{key_id}" if key_id else f"user:{owner}"


def _active_set(holder: str) -> str:
    return f"lockn:active:{holder}"


def acquire(holder: str, job_id: str, cap: int) -> None:
    """Count `job_id` against `holder`'s cap, or raise `TooManyConcurrent` (nothing is counted then)."""
    now = time.time()
    expiry = now + stalled_after_s(get_settings())
    client = get_redis()
    if not client.register_script(_ACQUIRE_LUA)(keys=[_active_set(holder)], args=[now, expiry, cap, job_id]):
        raise TooManyConcurrent(cap)


def release(holder: str, job_id: str) -> None:
    """The job ended (or was never queued): it no longer counts. Best effort: an entry left expires."""
    try:
        get_redis().zrem(_active_set(holder), job_id)
    except redis.RedisError:
        pass


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
