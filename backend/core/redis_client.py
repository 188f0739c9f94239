"""One way to reach Redis from any process: the broker, rate limits, heartbeats, cache invalidation.

Celery spells the embedded broker's Unix socket `redis+socket://PATH`; redis-py
spells it `unix://PATH`. This module owns that translation so no caller repeats it.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio

from backend.core.settings import get_settings

#: Short timeouts: a dead Redis must turn into a clear 503, never a hung request.
SOCKET_TIMEOUT_S = 1.0


def redis_py_url(url: str) -> str:
    """`url` as redis-py understands it."""
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://"):]
    return url


@lru_cache(maxsize=8)
def client_for(url: str) -> redis.Redis:
    """A pooled client for `url` that fails fast instead of hanging."""
    return redis.Redis.from_url(redis_py_url(url), socket_timeout=SOCKET_TIMEOUT_S,
                                socket_connect_timeout=SOCKET_TIMEOUT_S, decode_responses=True)


def get_redis() -> redis.Redis:
    """The client for the configured broker (Redis in production, the embedded one in development)."""
    return client_for(get_settings().broker_url)


@lru_cache(maxsize=8)
def binary_client_for(url: str) -> redis.Redis:
    """Like `client_for`, but returns bytes: for audio chunks."""
    return redis.Redis.from_url(redis_py_url(url), socket_timeout=SOCKET_TIMEOUT_S,
                                socket_connect_timeout=SOCKET_TIMEOUT_S)


def get_binary_redis() -> redis.Redis:
    return binary_client_for(get_settings().broker_url)


#: asyncio clients belong to the event loop that made them: one per (loop, URL), dropped with its loop.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = \
    weakref.WeakKeyDictionary()


def get_async_binary_redis() -> redis.asyncio.Redis:
    """An asyncio bytes client for the running event loop: what a request waits on without holding a thread."""
    url = get_settings().broker_url
    clients = _ASYNC_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    if url not in clients:
        clients[url] = redis.asyncio.Redis.from_url(redis_py_url(url), socket_timeout=SOCKET_TIMEOUT_S,
                                                    socket_connect_timeout=SOCKET_TIMEOUT_S)
    return clients[url]
