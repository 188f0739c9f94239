"""Sliding-window limits are exact under 50 concurrent clients, in-process and in Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from backend.services.keys.rate_limit import InProcessRateLimiter, RateLimiter, RedisRateLimiter

CLIENTS, HITS_EACH, LIMIT = 50, 4, 37


@pytest.fixture(params=["in-process", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "in-process":
        return InProcessRateLimiter()
    return RedisRateLimiter(redis.Redis.from_url(request.getfixturevalue("redis_url")))


def test_allowed_count_is_exact_under_concurrency(limiter: RateLimiter) -> None:
    allowed: list[bool] = []
    lock, start = threading.Lock(), threading.Barrier(CLIENTS)

    def client() -> None:
        start.wait()
        for _ in range(HITS_EACH):
            decision = limiter.hit("key_concurrent", LIMIT, 60)
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == CLIENTS * HITS_EACH
    assert sum(allowed) == LIMIT


def test_window_slides_and_headers_tell_when_to_retry(limiter: RateLimiter) -> None:
    first = limiter.hit("key_window", 2, 1)
    assert first.allowed and first.remaining == 1
    assert first.headers()["X-RateLimit-Limit"] == "2" and "Retry-After" not in first.headers()
    assert limiter.hit("key_window", 2, 1).remaining == 0
    refused = limiter.hit("key_window", 2, 1)
    assert not refused.allowed and 0 < refused.retry_after <= 1
    assert refused.headers()["Retry-After"] == "1" and refused.headers()["X-RateLimit-Remaining"] == "0"
    time.sleep(refused.retry_after + 0.05)
    assert limiter.hit("key_window", 2, 1).allowed, "a slot frees up once the oldest hit leaves the window"


def test_keys_do_not_share_a_window(limiter: RateLimiter) -> None:
    assert limiter.hit("key_a", 1, 60).allowed
    assert not limiter.hit("key_a", 1, 60).allowed
    assert limiter.hit("key_b", 1, 60).allowed
