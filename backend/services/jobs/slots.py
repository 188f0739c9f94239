"""The bookkeeping of admission's concurrency slots: where a job's slot is noted, and giving it back.

Admission (`admission.py`, the web tier's rules) takes a slot for a job in every set of its holders and notes
which sets hold it; whoever ends the job (the worker's `lifecycle`, a cancel, a delete) gives the slot back here
knowing only the job's id. Kept apart from admission so that ending a job never reaches admission's rules.
"""

from __future__ import annotations

import redis

from backend.core.redis_client import get_redis

#: KEYS[1]: the job's record; ARGV[1]: the job id. Removes the job from every set that holds it, once.
_RELEASE_LUA = """
for _, holder in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do redis.call('ZREM', holder, ARGV[1]) end
redis.call('DEL', KEYS[1])
"""


def active_set(holder: str) -> str:
    """The sorted set of a holder's jobs queued or running."""
    return f"lockn:active:{holder}"


def job_record(job_id: str) -> str:
    """The list of the sets that hold a job's slot."""
    return f"lockn:active-job:{job_id}"


def release(job_id: str) -> None:
    """The job ended (or was never queued): it no longer counts anywhere. Idempotent. Best effort: an entry
    left expires."""
    try:
        get_redis().register_script(_RELEASE_LUA)(keys=[job_record(job_id)], args=[job_id])
    except redis.RedisError:
        pass
