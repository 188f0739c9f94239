"""Admission control: more concurrent jobs than a key may have answer 429, a full queue answers 503, both with
Retry-After, at once and without a row or a message left behind; a finished job frees its slot."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Job
from backend.core.settings import get_settings
from backend.services.keys.service import KeySpec, RateLimit

ALICE = "auth0|alice"
VOICE = "en_US-joe-medium"
LONG = " ".join(f"Sentence {n} keeps the worker busy for a little while." for n in range(12))


def jobs_recorded() -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(Job)).one()


def submit(client: TestClient, key: str, text: str):  # type: ignore[no-untyped-def]
    return client.post("/api/voice/jobs", headers={"Authorization": f"Bearer {key}"},
                       json={"text": text, "voice": VOICE, "format": "wav"})


def wait_finished(client: TestClient, key: str, job_id: str) -> None:
    deadline = time.monotonic() + 90
    while client.get(f"/api/voice/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()["status"] \
            not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_key_has_at_most_its_concurrent_jobs(worker, key_service) -> None:
    key = key_service.create(ALICE, KeySpec("two at once", rate_limit=RateLimit(1000, 60), max_concurrent_jobs=2))[1]
    client = TestClient(build_api())
    first, second = (submit(client, key, f"{LONG} Job {n}.") for n in (1, 2))
    assert first.status_code == second.status_code == 202
    recorded = jobs_recorded()
    third = submit(client, key, f"{LONG} Job 3.")
    assert third.status_code == 429, third.text
    assert third.json()["error"]["code"] == "too_many_concurrent_requests" and third.headers["Retry-After"]
    assert "2 job(s) of yours are already queued or running" in third.json()["error"]["message"]
    assert jobs_recorded() == recorded, "a refused job leaves no row"
    client.post(f"/api/voice/jobs/{first.json()['id']}/cancel", headers={"Authorization": f"Bearer {key}"})
    wait_finished(client, key, second.json()["id"])
    assert submit(client, key, "A slot is free again.").status_code == 202


def test_a_full_queue_answers_overloaded(worker, key_service, monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_MAX_QUEUE_DEPTH", "2")
    get_settings.cache_clear()
    key = key_service.create(ALICE, KeySpec("busy", rate_limit=RateLimit(1000, 60), max_concurrent_jobs=10))[1]
    client = TestClient(build_api())
    running = submit(client, key, f"{LONG} Running.")
    deadline = time.monotonic() + 30
    while client.get(f"/api/voice/jobs/{running.json()['id']}",
                     headers={"Authorization": f"Bearer {key}"}).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiting = [submit(client, key, f"{LONG} Waiting {n}.").status_code for n in range(2)]
    assert waiting == [202, 202]
    refused = submit(client, key, f"{LONG} One too many.")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["Retry-After"]) >= 1
    assert "jobs are waiting on the cpu queue" in refused.json()["error"]["message"]


def test_a_studio_user_has_a_rate_limit_and_a_concurrent_cap(worker, key_service, monkeypatch) -> None:
    """Twelve tabs of one user no longer queue twelve jobs (issue 16, finding 6)."""
    import pytest

    from backend.services.jobs.admission import TooFast, TooManyConcurrent
    from backend.services.jobs.service import cancel_job, enqueue_synthesis

    monkeypatch.setenv("LOCKN_STUDIO_RATE_LIMIT", "3/minute")
    monkeypatch.setenv("LOCKN_STUDIO_MAX_CONCURRENT_JOBS", "1")
    get_settings.cache_clear()
    first = enqueue_synthesis("auth0|tabs", f"{LONG} Tab one.", VOICE)
    with pytest.raises(TooManyConcurrent, match="1 job"):
        enqueue_synthesis("auth0|tabs", f"{LONG} Tab two.", VOICE)
    cancel_job(first.id, "auth0|tabs")
    enqueue_synthesis("auth0|tabs", "Tab three, after the first was cancelled.", VOICE)
    with pytest.raises(TooFast, match="try again in"):
        enqueue_synthesis("auth0|tabs", "Tab four, too fast.", VOICE)
    assert jobs_recorded() == 2


def test_a_studio_quota_holds_under_concurrent_tabs_and_usage_is_the_users(worker, monkeypatch) -> None:
    """Ten tabs racing for a 50-character monthly Studio quota with 10-character texts: exactly five fit.
    The generations are the user's usage (the dashboard's "Studio" series), another user's are not."""
    from concurrent.futures import ThreadPoolExecutor

    from backend.services.jobs.service import enqueue_synthesis
    from backend.services.keys.studio_usage import StudioQuotaReached, studio_daily_usage, studio_month_chars
    from backend.core.models import utcnow

    monkeypatch.setenv("LOCKN_STUDIO_QUOTA_CHARS", "50")
    monkeypatch.setenv("LOCKN_STUDIO_RATE_LIMIT", "1000/minute")
    monkeypatch.setenv("LOCKN_STUDIO_MAX_CONCURRENT_JOBS", "100")
    get_settings.cache_clear()
    enqueue_synthesis("auth0|other", "Not yours.", VOICE)

    def tab(number: int) -> str:
        try:
            enqueue_synthesis("auth0|quota", f"Tab no. {number:02d}", VOICE)  # ten characters each
            return "queued"
        except StudioQuotaReached as exc:
            assert "monthly Studio quota of 50 characters" in str(exc)
            return "refused"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(tab, range(10)))
    assert sorted(outcomes) == ["queued"] * 5 + ["refused"] * 5
    assert studio_month_chars("auth0|quota") == 50
    today = studio_daily_usage("auth0|quota", utcnow().date())
    assert [(day.requests, day.chars) for day in today] == [(5, 50)]
    assert jobs_recorded() == 6


def test_v1_says_too_many_concurrent_requests_as_the_readme_does(worker, key_service) -> None:
    """Issue 27, item 8: `/v1` answered the concurrency cap as `rate_limit_exceeded`, where the README (and
    `/api`) say `too_many_concurrent_requests`. Still OpenAI's envelope and a 429 of type `requests`."""
    key = key_service.create(ALICE, KeySpec("one at once", rate_limit=RateLimit(1000, 60), max_concurrent_jobs=1))[1]
    client = TestClient(build_api())
    busy = submit(client, key, f"{LONG} Busy.")
    assert busy.status_code == 202, busy.text
    refused = client.post("/v1/audio/speech", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "tts-1", "voice": VOICE, "input": "One too many.", "response_format": "wav"})
    assert refused.status_code == 429 and refused.headers["Retry-After"], refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("too_many_concurrent_requests", "requests"), error
    assert set(error) == {"message", "type", "param", "code"}
    client.post(f"/api/voice/jobs/{busy.json()['id']}/cancel", headers={"Authorization": f"Bearer {key}"})
