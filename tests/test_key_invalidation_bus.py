"""The key cache's invalidation listener outlives any failure of its connection (real embedded broker).

Seen in CI: redis-py raised `ValueError: I/O operation on closed file` from a read whose socket was closed under
it; the listener thread died, and from then on other processes learnt of a revoked key only when its cache entry
expired."""

from __future__ import annotations

import time

from backend.core.redis_client import get_redis
from backend.services.keys.cache import InvalidationBus


def test_the_listener_survives_a_failure_that_is_not_a_redis_error(embedded_broker) -> None:
    calls, seen = [0], []

    def flaky_client():  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 2:  # the listener's first connection: fails the way redis-py did in CI
            raise ValueError("I/O operation on closed file.")
        return get_redis()

    bus = InvalidationBus(flaky_client, seen.append)
    bus.start()  # call 1: start() checks for a client; call 2: the listener's first subscribe fails
    try:
        assert bus.subscribed.wait(10), "the listener did not subscribe again after the failure"
        assert bus._thread is not None and bus._thread.is_alive()
        bus.publish("key_after_failure")
        deadline = time.monotonic() + 10
        while "key_after_failure" not in seen:
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
    finally:
        bus.stop()
