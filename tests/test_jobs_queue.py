"""Jobs through the real queue: embedded broker (and Redis in CI), a real worker, progress, kills, bad input."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time

import numpy as np
import pytest
from sqlmodel import Session, func, select

from backend.core.db import get_engine
from backend.core.models import Job
from backend.core.settings import get_settings
from backend.services.jobs.service import (
    CANCELLED_MESSAGE, MAX_TEXT_CHARS, InvalidJobRequest, ServiceUnavailable, cancel_job, enqueue_synthesis,
    job_status, send_job,
)
from backend.core.redis_client import get_redis
from tests.conftest import reset_caches, run_async, stream_events, wait_for_worker_heartbeat
from backend.media.codecs import decode
from backend.media.live_stream import FINISHED_TTL_S, stream_key

VOICE = "en_US-joe-medium"
OWNER = "auth0|alice"
LONG_TEXT = " ".join(f"This is sentence number {n} of a longer text for the queue." for n in range(1, 13))


def wait_for(job_id: str, timeout_s: float = 60.0, owner: str = OWNER) -> list[tuple[str, float]]:
    """Poll until the job ends; returns every distinct (status, progress) seen, in order."""
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = job_status(job_id, owner)
        if not seen or seen[-1] != (status.status, status.progress):
            seen.append((status.status, status.progress))
        if status.status in ("succeeded", "failed"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s; seen {seen}")


def job_count() -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(Job)).one()


def test_job_reaches_succeeded_with_progress_in_order(worker) -> None:
    job = enqueue_synthesis(OWNER, LONG_TEXT, VOICE, "flac")
    seen = wait_for(job.id)
    statuses = [status for status, _ in seen]
    assert statuses[-1] == "succeeded", seen
    assert statuses == sorted(statuses, key=["queued", "running", "succeeded"].index), seen
    assert "running" in statuses
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert any(0 < p < 100 for p in progress), f"no intermediate progress seen: {seen}"
    final = job_status(job.id, OWNER)
    samples, rate = decode(open(final.audio_path, "rb").read())
    assert abs(len(samples) / rate - final.duration_s) < 0.05 and final.duration_s > 20
    assert float(np.sqrt(np.mean(np.square(samples)))) > 0.02
    # The finished job is served from its file: its live PCM leaves the broker within a minute, not ten.
    events = [event.kind for event in stream_events(job.id, timeout_s=10)]
    assert events[-2:] == ["spoken", "done"] and events.count("audio") == 12, events
    assert 0 < get_redis().ttl(stream_key(job.id)) <= FINISHED_TTL_S


def test_following_a_job_sees_its_progress_as_the_worker_reports_it(worker) -> None:
    """`follow_job` (the Studio's mechanism and the API's) reports running, rising progress, then the result."""
    from backend.services.jobs.audio import follow_job

    job = enqueue_synthesis(OWNER, LONG_TEXT, VOICE, "wav")

    async def follow() -> list[tuple[str, float]]:
        return [(status.status, status.progress) async for status in follow_job(job.id, OWNER)]

    seen = run_async(follow())
    assert seen[0][0] in ("queued", "running") and seen[-1] == ("succeeded", 100.0), seen
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and any(0 < p < 100 for p in progress), seen


def test_a_job_cancelled_in_the_queue_ends_its_followers_at_once(worker) -> None:
    """No worker will ever speak of a job cancelled while it waited: the cancel itself tells its followers."""
    from backend.services.jobs.audio import JobFailed, finished_audio

    busy = enqueue_synthesis(OWNER, LONG_TEXT * 2, VOICE, "wav")  # holds the only worker slot
    waiting = enqueue_synthesis(OWNER, "I will never be spoken.", VOICE, "wav")
    threading.Timer(0.5, cancel_job, args=(waiting.id, OWNER)).start()
    with pytest.raises(JobFailed, match=CANCELLED_MESSAGE):
        run_async(finished_audio(waiting.id, OWNER))
    assert job_status(busy.id, OWNER).status not in ("succeeded", "failed"), "followed to the end, not the cancel"
    cancel_job(busy.id, OWNER)


def test_a_running_job_cancelled_stops_between_sentences(worker) -> None:
    job = enqueue_synthesis(OWNER, LONG_TEXT * 2, VOICE, "wav")
    deadline = time.monotonic() + 60
    while job_status(job.id, OWNER).chars_done == 0:  # running, and at least one sentence spoken
        assert time.monotonic() < deadline, "the job never started speaking"
        time.sleep(0.02)
    cancel_job(job.id, OWNER)
    time.sleep(1.5)  # the worker checks at its next progress write, at most half a second apart
    spoken = get_redis().xlen(stream_key(job.id))
    time.sleep(1.0)  # several sentences' worth: a worker that carried on would add to its live audio
    assert get_redis().xlen(stream_key(job.id)) == spoken < 24, "the worker kept speaking a cancelled job"
    # A client streaming the job is told at once, not left waiting out its timeout.
    last = stream_events(job.id, timeout_s=5)[-1]
    assert (last.kind, last.message) == ("error", CANCELLED_MESSAGE)
    final = job_status(job.id, OWNER)
    assert final.status == "failed" and final.error == CANCELLED_MESSAGE
    assert final.audio_path is None and final.chars_done < len(LONG_TEXT * 2)
    assert wait_for(enqueue_synthesis(OWNER, "The worker is free again.", VOICE, "wav").id)[-1][0] == "succeeded"


def test_a_cancel_that_lands_as_the_job_finishes_wins_and_leaves_no_file(embedded_broker, database,
                                                                        monkeypatch) -> None:
    """Cancelled after its last sentence, while its file is written: the row stays cancelled, the file goes."""
    from backend.services.jobs import runner as job_runner
    from workers.engine_loader import load_engines

    job = Job(id="job_" + secrets.token_hex(10), owner=OWNER, voice_id=VOICE, engine="piper",
              text="Cancel me at the very end.", text_chars=26, format="wav")
    with Session(get_engine(), expire_on_commit=False) as session:
        session.add(job)
        session.commit()
    store = job_runner._store

    def store_then_cancel(job: Job, data: bytes):  # type: ignore[no-untyped-def]
        path = store(job, data)
        cancel_job(job.id, OWNER)  # the owner's real cancel, at the worst moment
        return path

    monkeypatch.setattr(job_runner, "_store", store_then_cancel)
    with pytest.raises(job_runner.JobCancelled):
        job_runner.run_job(job.id, load_engines(["piper"]))
    final = job_status(job.id, OWNER)
    assert final.status == "failed" and final.error == CANCELLED_MESSAGE and final.audio_path is None
    assert list(get_settings().audio_dir.glob(f"{job.id}.*")) == []


@pytest.mark.redis
def test_job_through_redis(redis_url: str, monkeypatch, database) -> None:
    from backend.ops.supervisor import Supervisor, worker_command

    monkeypatch.setenv("LOCKN_REDIS_URL", redis_url)
    reset_caches()
    supervisor = Supervisor()
    supervisor.start("worker", worker_command(), env=dict(os.environ))
    try:
        wait_for_worker_heartbeat()
        job = enqueue_synthesis(OWNER, "Hello through Redis.", VOICE, "mp3")
        assert wait_for(job.id)[-1] == ("succeeded", 100.0)
    finally:
        supervisor.stop_all()


def test_a_killed_worker_loses_no_job(embedded_broker, database, monkeypatch) -> None:
    """SIGKILL the whole worker mid-job; a new worker picks the job up after the redelivery timeout."""
    from backend.ops.supervisor import Supervisor, worker_command

    monkeypatch.setenv("LOCKN_JOB_VISIBILITY_TIMEOUT_S", "3")
    reset_caches()
    first = Supervisor()
    first.start("worker", worker_command(), env=dict(os.environ))
    wait_for_worker_heartbeat()
    job = enqueue_synthesis(OWNER, LONG_TEXT * 3, VOICE, "wav")
    deadline = time.monotonic() + 30
    while job_status(job.id, OWNER).status != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)
    os.killpg(first.children[0][1].pid, signal.SIGKILL)
    first.children[0][1].wait()
    assert job_status(job.id, OWNER).status == "running", "killed mid-job"

    second = Supervisor()
    second.start("worker", worker_command(), env=dict(os.environ))
    try:
        seen = wait_for(job.id, timeout_s=90)
        assert seen[-1] == ("succeeded", 100.0), seen
        with Session(get_engine()) as session:
            assert session.get(Job, job.id).attempts == 2
    finally:
        second.stop_all()


BAD_REQUESTS = [
    ("", VOICE, "wav", 1.0, "text"),
    ("   ", VOICE, "wav", 1.0, "text"),
    ("x" * (MAX_TEXT_CHARS + 1), VOICE, "wav", 1.0, "text"),
    ("hello", "nobody", "wav", 1.0, "voice"),
    ("hello", VOICE, "wma", 1.0, "format"),
    ("hello", VOICE, "wav", 10.0, "speed"),
]


def test_bad_input_fails_fast_and_writes_nothing(worker) -> None:
    for text, voice, fmt, speed, field in BAD_REQUESTS:
        with pytest.raises(InvalidJobRequest) as refused:
            enqueue_synthesis(OWNER, text, voice, fmt, speed)
        assert refused.value.field == field and str(refused.value)
    assert job_count() == 0


def test_permanent_failure_in_the_worker_is_not_retried(worker) -> None:
    """A job the engine refuses ends `failed` with the engine's words after one attempt."""
    job = enqueue_synthesis(OWNER, "hello", VOICE, "wav")
    wait_for(job.id)
    with Session(get_engine(), expire_on_commit=False) as session:
        broken = Job(id="job_broken0000000000", owner=OWNER, voice_id="ghost", engine="piper", text="hello",
                     text_chars=5, format="wav")
        session.add(broken)
        session.commit()
    send_job(broken)
    assert wait_for(broken.id)[-1][0] == "failed"
    time.sleep(1)
    with Session(get_engine()) as session:
        stored = session.get(Job, broken.id)
    assert stored.error == "unknown Piper voice 'ghost'" and stored.attempts == 1


def test_no_worker_means_503_not_a_queued_job(embedded_broker, database) -> None:
    with pytest.raises(ServiceUnavailable, match="no synthesis worker"):
        enqueue_synthesis(OWNER, "hello", VOICE)
    assert job_count() == 0


def test_another_owners_job_is_not_found(worker) -> None:
    from backend.services.jobs.service import JobNotFound

    job = enqueue_synthesis(OWNER, "mine", VOICE)
    with pytest.raises(JobNotFound):
        job_status(job.id, "auth0|bob")
