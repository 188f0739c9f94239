"""The worker's live-audio publisher: events reach the broker in order and once each, `flush` waits for them, a
broker that restarts is waited out, one that stays down loses the live audio (readers are told) but never blocks
or fails the job. Real embedded redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from backend.core.redis_client import get_async_binary_redis, get_binary_redis
from backend.core.settings import get_settings
from backend.media import live_stream
from backend.media.live_publisher import LivePublisher
from backend.media.live_stream import publish_chunk, publish_end, publish_spoken, read_events
from backend.ops.supervisor import Supervisor, embedded_broker_command, wait_for_socket
from tests.conftest import run_async, stream_events


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
    monkeypatch.setattr(live_stream, "RECONNECT_WINDOW_S", 1.0)  # the writer's wait for a broker to come back
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


@pytest.fixture
def restartable_broker(isolated_settings) -> Iterator[Supervisor]:
    """The embedded broker under a supervisor this test can stop, restart and start again."""
    settings = get_settings()
    supervisor = Supervisor()
    socket = settings.embedded_broker_socket
    supervisor.start("broker", embedded_broker_command(settings), before_start=lambda: socket.unlink(missing_ok=True),
                     after_start=lambda: wait_for_socket(socket))
    try:
        yield supervisor
    finally:
        supervisor.stop_all()


def test_a_reader_rides_out_a_broker_restart(restartable_broker) -> None:
    """The broker restarts (the supervisor brings it back) while a client waits for its audio: the reader
    keeps waiting instead of answering 503, and reads on from where it was once the broker is back."""
    publish_chunk(get_binary_redis(), "job_restart", np.zeros(100, np.float32), 22050)

    def restart_then_end() -> None:
        time.sleep(1.5)  # the append-only file is written every second; meanwhile the reader waits in XREAD
        restartable_broker.restart("broker", prepare=lambda: time.sleep(3))  # down for 3 s (and the back-off)
        publish_end(get_binary_redis(), "job_restart")

    async def read_across_a_restart() -> list[str]:
        kinds, restarting = [], None
        async for event in read_events(get_async_binary_redis(), "job_restart", timeout_s=60):
            kinds.append(event.kind)
            restarting = restarting or asyncio.create_task(asyncio.to_thread(restart_then_end))
        await restarting
        return kinds

    assert run_async(read_across_a_restart()) == ["audio", "done"]


def tone(level: float) -> np.ndarray:
    return np.full(1024, level, np.float32)


def first_piece_then_restart(broker: Supervisor, job_id: str) -> tuple[LivePublisher, threading.Thread]:
    """A publisher that has written the job's first piece (0.1), and the broker restarting (down 3 s) under it."""
    publisher = LivePublisher()
    publisher.publish(publish_chunk, job_id, tone(0.1), 22050)
    assert publisher.flush(timeout_s=5)
    time.sleep(1.5)  # the append-only file has the first piece
    restarting = threading.Thread(target=broker.restart, args=("broker",), kwargs={"prepare": lambda: time.sleep(3)})
    restarting.start()
    time.sleep(0.5)
    return publisher, restarting


def test_a_writer_rides_out_a_broker_restart(restartable_broker) -> None:
    """Pieces spoken while the broker restarts reach it once it is back, in order and once each. Before, every
    event sent while the broker was down was dropped: a streaming client got audio with a hole in it (seen in a
    loaded CI run: an SSE answer 1,024 samples shorter than the stored file)."""
    publisher, restarting = first_piece_then_restart(restartable_broker, "job_writer")
    for level in (0.2, 0.3, 0.4):
        publisher.publish(publish_chunk, "job_writer", tone(level), 22050)
    publisher.publish(publish_end, "job_writer")
    assert publisher.flush(timeout_s=live_stream.RECONNECT_WINDOW_S + 10)
    restarting.join()
    events = stream_events("job_writer", timeout_s=5)
    assert [e.kind for e in events] == ["audio"] * 4 + ["done"]
    assert [round(float(e.pcm[0]), 2) for e in events[:4]] == [0.1, 0.2, 0.3, 0.4]


def test_a_piece_given_up_on_ends_the_stream_with_an_error(restartable_broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker down for longer than the writer waits: the piece is lost, and a reader says so at the gap (and
    hears no more of that job) instead of passing on audio with a hole in it."""
    monkeypatch.setattr(live_stream, "RECONNECT_WINDOW_S", 0.5)
    publisher, restarting = first_piece_then_restart(restartable_broker, "job_gap")
    publisher.publish(publish_chunk, "job_gap", tone(0.2), 22050)  # given up on after 0.5 s
    assert publisher.flush(timeout_s=10)
    restarting.join()
    publisher.publish(publish_chunk, "job_gap", tone(0.3), 22050)
    publisher.publish(publish_end, "job_gap")
    assert publisher.flush(timeout_s=10)
    events = stream_events("job_gap", timeout_s=5)
    assert [e.kind for e in events] == ["audio", "error"]
    assert events[1].message == live_stream.LOST_PIECE


def test_a_job_that_fails_mid_stream_ends_its_events_with_an_error(embedded_broker) -> None:
    """SSE: a job that fails after its first audio ends with an `error` event, never `speech.audio.done` (before,
    the client got a clean `done` after half the audio)."""
    from backend.api.openai_compat import sse_events
    from backend.services.jobs.audio import live_deltas

    client = get_binary_redis()
    publish_chunk(client, "job_half", tone(0.1), 22050)
    publish_end(client, "job_half", error="the engine failed on sentence 2")

    async def events() -> list[dict]:
        return [json.loads(line[6:]) async for line in sse_events(await live_deltas("job_half", "wav"), 10)]

    answered = run_async(events())
    assert [event["type"] for event in answered] == ["speech.audio.delta", "speech.audio.delta", "error"]
    assert answered[-1]["error"]["message"] == "the engine failed on sentence 2"
