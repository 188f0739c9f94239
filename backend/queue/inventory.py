"""Which tasks the broker holds: waiting in a queue, or delivered to a worker and not yet acknowledged.

Celery's Redis transport (kombu) keeps each queue as a list (one more per priority
step, `<queue>\\x06\\x16<step>`) of JSON messages, and delivered-but-unacknowledged
messages in the hash `unacked`. Reading them tells which jobs the broker would still
hand out, so jobs it has lost (a broker restarted without its data) can be sent again.
"""

from __future__ import annotations

import json

import redis

#: kombu.transport.redis: the priority sub-queue separator, the priority steps, the unacknowledged hash.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
UNACKED_HASH = "unacked"
UNACKED_INDEX = "unacked_index"


def _queue_keys(queue: str) -> list[str]:
    """The lists kombu keeps for `queue`: the queue itself and one per priority step."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def _task_id(payload: object) -> str | None:
    headers = payload.get("headers") if isinstance(payload, dict) else None
    return headers.get("id") if isinstance(headers, dict) else None


def held_task_ids(client: redis.Redis, queues: list[str], delivered: bool = True) -> set[str]:
    """Ids of the tasks waiting in `queues`, and (with `delivered`) those delivered to a worker and not yet
    acknowledged (on any queue). Without `delivered`: after a crash, when no worker holds anything."""
    keys = [key for queue in queues for key in _queue_keys(queue)]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(UNACKED_HASH)
        *lists, unacked = pipe.execute()
    ids = {_task_id(json.loads(raw)) for messages in lists for raw in messages}
    if delivered:
        ids |= {_task_id(json.loads(raw)[0]) for raw in unacked}
    ids.discard(None)
    return ids  # type: ignore[return-value]


def forget_unacked(client: redis.Redis, task_ids: set[str]) -> int:
    """Drop the unacknowledged deliveries of `task_ids` (their worker is gone and they were sent anew), so
    the broker does not hand them out a second time later; returns how many were dropped."""
    tags = [tag for tag, raw in client.hgetall(UNACKED_HASH).items() if _task_id(json.loads(raw)[0]) in task_ids]
    if tags:
        with client.pipeline(transaction=True) as pipe:
            pipe.hdel(UNACKED_HASH, *tags)
            pipe.zrem(UNACKED_INDEX, *tags)
            pipe.execute()
    return len(tags)


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in `queue`, every priority step included (delivered ones are not waiting)."""
    with client.pipeline(transaction=False) as pipe:
        for key in _queue_keys(queue):
            pipe.llen(key)
        return sum(pipe.execute())
