"""The worker's live-audio publisher: events reach the broker in order, `flush` waits for them, a broker
that is down loses the live audio but never blocks or fails the job. Real embedded redis-server."""

from __future__ import annotations

import os
import time

import numpy as np

from backend.media.live_stream import publish_chunk, publish_end, publish_spoken
from tests.conftest import stream_events
from backend.media.live_publisher import LivePublisher


def test_events_arrive_in_order_and_flush_waits_for_them(embedded_broker) -> None:
    publisher = LivePublisher()
    tone = np.sin(np.linspace(0, 200, 22050, dtype=np.float32)) * 0.5
    for _ in range(5):
        publisher.publish(publish_chunk, "job_live", tone, 22050)
    publisher.publish(publish_spoken, "job_live")
    publisher.publish(publish_end, "job_live")
    assert publisher.flush(timeout_s=5)
    events = stream_events("job_live", timeout_s=1)
    assert [e.kind for e in events] == ["audio"] * 5 + ["spoken", "done"]
    assert all(len(e.pcm) == 22050 and e.rate == 22050 for e in events[:5])
    assert np.allclose(events[0].pcm, tone, atol=1 / 16000)


def test_a_broker_that_is_down_neither_blocks_nor_raises(isolated_settings, monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens on the discard port
    from tests.conftest import reset_caches

    reset_caches()
    publisher = LivePublisher()
    started = time.monotonic()
    publisher.publish(publish_spoken, "job_nowhere")
    assert time.monotonic() - started < 0.1  # the job's thread never waits on the broker
    assert publisher.flush(timeout_s=10)  # the event was dropped, and the publisher carries on
    publisher.publish(publish_spoken, "job_nowhere")
    assert publisher.flush(timeout_s=10)


def test_a_forked_child_gets_its_own_thread(embedded_broker) -> None:
    """Celery's prefork pool forks after import: the child must not queue events for a thread it lacks."""
    publisher = LivePublisher()
    publisher.publish(publish_spoken, "job_parent")
    assert publisher.flush(timeout_s=5)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        publisher.publish(publish_end, "job_child")
        os._exit(0 if publisher.flush(timeout_s=5) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e.kind for e in stream_events("job_child", timeout_s=1)] == ["done"]


def test_a_reader_rides_out_a_broker_restart(isolated_settings) -> None:
    """The broker restarts (the supervisor brings it back) while a client waits for its audio: the reader
    keeps waiting instead of answering 503, and reads on from where it was once the broker is back."""
    import asyncio

    from backend.core.redis_client import get_async_binary_redis, get_binary_redis
    from backend.core.settings import get_settings
    from backend.ops.supervisor import Supervisor, embedded_broker_command, wait_for_socket
    from backend.media.live_stream import read_events
    from tests.conftest import run_async

    settings = get_settings()
    supervisor = Supervisor()
    socket = settings.embedded_broker_socket
    supervisor.start("broker", embedded_broker_command(settings), before_start=lambda: socket.unlink(missing_ok=True),
                     after_start=lambda: wait_for_socket(socket))
    try:
        publish_chunk(get_binary_redis(), "job_restart", np.zeros(100, np.float32), 22050)

        def restart_then_end() -> None:
            time.sleep(1.5)  # the append-only file is written every second; meanwhile the reader waits in XREAD
            supervisor.restart("broker", prepare=lambda: time.sleep(3))  # down for 3 s (and the back-off)
            publish_end(get_binary_redis(), "job_restart")

        async def read_across_a_restart() -> list[str]:
            kinds, restarting = [], None
            async for event in read_events(get_async_binary_redis(), "job_restart", timeout_s=60):
                kinds.append(event.kind)
                restarting = restarting or asyncio.create_task(asyncio.to_thread(restart_then_end))
            await restarting
            return kinds

        assert run_async(read_across_a_restart()) == ["audio", "done"]
    finally:
        supervisor.stop_all()
