"""The reaper: a job abandoned by a dead worker is failed with a message; live and finished jobs are untouched."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from backend.core.db import get_engine
from backend.core.models import Job, utcnow
from backend.services.jobs.reaper import STALLED_MESSAGE, reap_stalled_jobs, stalled_after_s
from backend.services.jobs.service import job_status
from backend.core.settings import get_settings

OWNER = "auth0|reaper"


def make_job(job_id: str, status: str, started_seconds_ago: float | None) -> None:
    started = None if started_seconds_ago is None else utcnow() - timedelta(seconds=started_seconds_ago)
    with Session(get_engine()) as session:
        session.add(Job(id=job_id, owner=OWNER, voice_id="v", engine="piper", text="hi", text_chars=2, format="wav",
                        status=status, started_at=started))
        session.commit()


def test_only_abandoned_running_jobs_are_failed(database) -> None:
    limit = stalled_after_s(get_settings())
    make_job("job_dead", "running", limit + 5)
    make_job("job_slow_but_alive", "running", limit - 30)
    make_job("job_waiting", "queued", None)
    make_job("job_done", "succeeded", limit + 5)
    assert reap_stalled_jobs() == 1
    assert job_status("job_dead", OWNER).status == "failed"
    assert job_status("job_dead", OWNER).error == STALLED_MESSAGE
    for alive, status in (("job_slow_but_alive", "running"), ("job_waiting", "queued"), ("job_done", "succeeded")):
        assert job_status(alive, OWNER).status == status
    assert reap_stalled_jobs() == 0, "a second sweep finds nothing more"


def test_reading_an_abandoned_job_fails_it_even_with_no_worker_left(database) -> None:
    make_job("job_orphan", "running", stalled_after_s(get_settings()) + 1)
    status = job_status("job_orphan", OWNER)
    assert status.status == "failed" and status.error == STALLED_MESSAGE and status.finished_at is not None
