"""Nothing queued is lost to a crash or a restart, and `make run`'s supervisor brings crashed children back.

The embedded broker keeps an append-only file; what it still lost (its last second) and what a crash cut
off mid-way are queued again from the jobs table before the worker starts, as `make run` does.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.ops import supervisor as supervision
from backend.ops.supervisor import Supervisor, embedded_broker_command, wait_for_socket, worker_command
from backend.queue.inventory import held_task_ids
from backend.services.jobs.recovery import requeue_lost_jobs
from backend.services.jobs.service import enqueue_synthesis, job_status
from tests.conftest import wait_for_worker_heartbeat

OWNER = "auth0|alice"
VOICE = "en_US-joe-medium"


def start_broker(tree: Supervisor) -> None:
    settings = get_settings()
    tree.start("broker", embedded_broker_command(settings),
               before_start=lambda: settings.embedded_broker_socket.unlink(missing_ok=True),
               after_start=lambda: wait_for_socket(settings.embedded_broker_socket))


def crash(tree: Supervisor) -> None:
    """Power cut: every process of the tree killed at once, nothing flushed, nothing acknowledged."""
    for _, process in tree.children:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_all_succeeded(job_ids: list[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while (pending := [j for j in job_ids if job_status(j, OWNER).status != "succeeded"]):
        failed = [j for j in pending if job_status(j, OWNER).status == "failed"]
        assert not failed, f"failed: {[job_status(j, OWNER).error for j in failed]}"
        assert time.monotonic() < deadline, f"{len(pending)} of {len(job_ids)} jobs never finished"
        time.sleep(0.2)


@pytest.mark.parametrize("broker_data", ["kept", "lost"])
def test_a_crash_with_twenty_queued_jobs_ends_with_twenty_succeeded(database, broker_data: str, monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_STUDIO_MAX_CONCURRENT_JOBS", "20")  # one owner queues all twenty
    get_settings.cache_clear()
    before = Supervisor()
    start_broker(before)
    before.start("worker", worker_command(), env=dict(os.environ))
    try:
        wait_for_worker_heartbeat()
        jobs = [enqueue_synthesis(OWNER, f"Job number {n} has to survive the crash. It says two sentences.",
                                  VOICE, "wav").id for n in range(20)]
        deadline = time.monotonic() + 30
        while job_status(jobs[0], OWNER).status != "running":  # one is cut off mid-way, the rest wait
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(1.5)  # the append-only file is written every second
    finally:
        crash(before)
    if broker_data == "lost":
        (get_settings().data_dir / supervision.EMBEDDED_BROKER_AOF).unlink()

    after = Supervisor()
    start_broker(after)
    try:
        unfinished = {j for j in jobs if job_status(j, OWNER).status != "succeeded"}
        assert unfinished, "the crash came before the worker was through"
        held = held_task_ids(get_redis(), ["cpu"])
        assert unfinished <= held if broker_data == "kept" else held == set(), "the broker kept its queue on disk"
        requeued = requeue_lost_jobs(after_crash=True)  # what `make run` does before its worker starts
        if broker_data == "lost":
            assert requeued == len(unfinished)
        else:
            assert requeued <= 1, "only a job cut off mid-way is sent again; the broker kept the rest"
        after.start("worker", worker_command(), env=dict(os.environ))
        wait_all_succeeded(jobs)
    finally:
        after.stop_all()


def test_ctrl_c_lets_the_running_job_finish(embedded_broker, database) -> None:
    tree = Supervisor()
    tree.start("worker", worker_command(), env=dict(os.environ), warm_stop_s=60)
    wait_for_worker_heartbeat()
    job = enqueue_synthesis(OWNER, " ".join(f"Sentence {n} of a job that is running at Ctrl-C." for n in range(8)),
                            VOICE, "wav")
    deadline = time.monotonic() + 30
    while job_status(job.id, OWNER).chars_done == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    tree.stop_all()  # what Ctrl-C on `make run` does
    assert job_status(job.id, OWNER).status == "succeeded"


def test_the_supervisor_restarts_a_crashed_child_until_told_to_stop(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(supervision, "MAX_BACKOFF_S", 0.2)
    handler_before = signal.getsignal(signal.SIGTERM)
    starts = tmp_path / "starts"
    recovered: list[str] = []

    def start(tree: Supervisor) -> None:
        tree.start("flaky", ["bash", "-c", f"echo started >> {starts}; sleep 0.2; exit 3"])
        tree.start("stopper", ["bash", "-c", f"sleep 3; kill -TERM {os.getpid()}; sleep 60"])

    assert supervision.supervise(start, on_restart=recovered.append) == 0
    assert len(starts.read_text().splitlines()) >= 4
    assert recovered and set(recovered) == {"flaky"}
    assert "the flaky process exited with code 3; restarting it" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == handler_before, "the supervisor's signal handlers are put back"


def test_a_child_that_keeps_crashing_stops_everything(monkeypatch, capsys) -> None:
    monkeypatch.setattr(supervision, "MAX_BACKOFF_S", 0.05)

    def start(tree: Supervisor) -> None:
        tree.start("broken", ["bash", "-c", "exit 7"])

    assert supervision.supervise(start) == 7
    assert f"{supervision.MAX_CRASHES} times" in capsys.readouterr().err


def test_after_a_crash_a_job_delivered_but_not_started_is_sent_again(embedded_broker, database) -> None:
    """The crash came between the broker handing a message to the worker and the worker claiming its job: the
    job says `queued`, its only message sits in the dead worker's unacknowledged deliveries (which come back
    only after the visibility timeout). It is sent again at once, and the dead delivery forgotten."""
    import json

    from sqlmodel import Session

    from backend.core.db import get_engine
    from backend.core.models import Job
    from backend.services.jobs.service import send_job

    job = Job(id="job_delivered_not_started", owner=OWNER, voice_id=VOICE, engine="piper", text="Hello.",
              text_chars=6, format="wav")
    with Session(get_engine(), expire_on_commit=False) as session:
        session.add(job)
        session.commit()
    send_job(job)
    client = get_redis()
    delivered = client.rpop("cpu")  # what the worker's fetch does, before the crash
    client.hset("unacked", "tag-1", json.dumps([json.loads(delivered), "", "cpu"]))
    client.zadd("unacked_index", {"tag-1": time.time()})
    assert held_task_ids(client, ["cpu"]) == {job.id} and held_task_ids(client, ["cpu"], delivered=False) == set()

    assert requeue_lost_jobs(after_crash=True) == 1
    assert client.hlen("unacked") == 0, "the dead delivery is forgotten"
    assert held_task_ids(client, ["cpu"], delivered=False) == {job.id}, "and the job waits in its queue again"
