"""A throwaway LockN inside one process (a benchmark, a test): forget what was built from an earlier
environment, and wait until a worker has announced itself.

It lives here, not in `tests/`, because the benchmarks a user runs must work in the install a user has:
`make run` installs no pytest, so nothing a bench imports may come from `tests/conftest.py`.
"""

from __future__ import annotations

import time

from backend.core import db, redis_client
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue import heartbeat


def reset_caches() -> None:
    """Forget settings, engines and Redis clients built from an earlier environment."""
    from backend.queue.app import _celery_for
    from backend.services.keys.service import get_key_service
    from backend.services.accounts.request_log import request_log_recorder

    from backend.services.keys.usage import close_process_usage

    if get_key_service.cache_info().currsize:
        get_key_service().bus.stop()
    get_key_service.cache_clear()
    close_process_usage()  # into the database it was made for, before that one is forgotten
    if request_log_recorder.cache_info().currsize:
        request_log_recorder().close()  # into the database it was made for, before that one is forgotten
    request_log_recorder.cache_clear()
    get_settings.cache_clear()
    _celery_for.cache_clear()
    db.engine_for.cache_clear()
    redis_client.client_for.cache_clear()
    redis_client.binary_client_for.cache_clear()


def wait_for_worker_heartbeat(timeout_s: float = 60.0, queue: str | None = None) -> None:
    """Return once a worker (of `queue`, when given) has announced itself on the broker; `AssertionError` after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not [w for w in heartbeat.live_workers(get_redis()) if queue is None or queue in w.queues]:
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker reported within {timeout_s} s")
        time.sleep(0.1)
