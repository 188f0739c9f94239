"""Faults, for real, against a production-shaped cluster (see conftest): replicas, broker, worker, database.

The tests share one cluster and run in file order; each one leaves the cluster
as it found it (every stopped part is started again in a `finally`).
"""

from __future__ import annotations

import io
import re
import time

import httpx
import pytest
import soundfile

from backend.services.jobs.reaper import STALLED_MESSAGE
from backend.services.accounts.sessions import COOKIE_NAME
from qa.test_login import sign_in
from tests.reliability.conftest import Cluster, answers, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

VOICE = "en_US-joe-medium"
LONG_TEXT = " ".join(f"Sentence number {n} is here to keep the worker busy for a while." for n in range(40))


def bearer(key: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


def submit(base_url: str, key: dict, text: str = "Hello from one replica.", fmt: str = "wav") -> dict:
    response = httpx.post(f"{base_url}/api/voice/jobs", headers=bearer(key), timeout=15,
                          json={"text": text, "voice": VOICE, "format": fmt})
    assert response.status_code == 202, response.text
    return response.json()


def status_of(base_url: str, key: dict, job_id: str) -> dict:
    response = httpx.get(f"{base_url}/api/voice/jobs/{job_id}", headers=bearer(key), timeout=15)
    assert response.status_code == 200, response.text
    return response.json()


def wait_finished(base_url: str, key: dict, job_id: str, timeout_s: float = 120) -> dict:
    seen: dict = {}

    def finished() -> bool:
        seen.update(status_of(base_url, key, job_id))
        return seen["status"] in ("succeeded", "failed")

    wait_until(finished, timeout_s, f"job {job_id} did not finish", interval_s=0.25)
    return seen


def assert_playable_wav(response: httpx.Response) -> float:
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav", response.text[:200]
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate > 0 and len(audio) > 0
    return len(audio) / rate


# --- across replicas ---------------------------------------------------------------------------------------------

def test_a_key_revoked_on_a_fails_on_b_within_a_second(cluster: Cluster) -> None:
    admin = cluster.create_key("ops", scopes="keys:read,keys:write")
    victim = cluster.create_key("ops")
    assert httpx.get(cluster.url("b") + "/v1/models", headers=bearer(victim)).status_code == 200  # B caches it
    revoked = httpx.post(f"{cluster.url('a')}/api/keys/{victim['id']}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200, revoked.text
    refused = wait_until(lambda: httpx.get(cluster.url("b") + "/v1/models", headers=bearer(victim)).status_code == 401,
                         1.0, "replica B still accepted the revoked key", interval_s=0.02)
    print(f"revocation reached replica B after {refused * 1000:.0f} ms")


def test_signing_out_on_a_is_refused_on_b_at_once(cluster: Cluster) -> None:
    browser = sign_in(cluster.url("a"), email="grace@example.test")
    copied = {COOKIE_NAME: browser.cookies[COOKIE_NAME]}  # what B would see from the same browser (or a thief)
    probe = cluster.url("b") + "/api/voice/jobs/job_none/audio"
    assert httpx.get(probe, cookies=copied).status_code == 404, "B accepts A's session (and there is no such job)"
    confirm = browser.get("/auth/logout")  # a GET only asks; its form carries the token
    token = re.search(r"name=csrf value='([0-9a-f]+)'", confirm.text).group(1)
    signed_out = browser.post("/auth/logout", data={"csrf": token})
    assert signed_out.status_code in (302, 303, 307), signed_out.text
    refused = httpx.get(probe, cookies=copied)
    assert refused.status_code == 401, refused.text


def test_a_job_submitted_on_a_is_seen_and_downloaded_on_b(cluster: Cluster) -> None:
    key = cluster.create_key("dora")
    job = submit(cluster.url("a"), key, fmt="wav")
    done = wait_finished(cluster.url("b"), key, job["id"])
    assert done["status"] == "succeeded", done
    duration = assert_playable_wav(httpx.get(f"{cluster.url('b')}/api/voice/jobs/{job['id']}/audio",
                                             headers=bearer(key), timeout=30))
    assert abs(duration - done["duration_s"]) < 0.05


def test_rate_limits_hold_across_replicas(cluster: Cluster) -> None:
    key = cluster.create_key("erin", rate_limit="6/minute")
    statuses = [httpx.get(cluster.url("ab"[n % 2]) + "/v1/models", headers=bearer(key)).status_code
                for n in range(10)]
    assert statuses[:6] == [200] * 6 and statuses[6:] == [429] * 4, statuses
    limited = httpx.get(cluster.url("b") + "/v1/models", headers=bearer(key))
    assert int(limited.headers["retry-after"]) > 0 and limited.json()["error"]["code"]


# --- the broker ------------------------------------------------------------------------------------------------

def test_with_the_broker_down_speech_and_jobs_answer_503_and_recover(cluster: Cluster) -> None:
    key = cluster.create_key("fay")
    base = cluster.url("a")
    assert httpx.get(base + "/v1/models", headers=bearer(key)).status_code == 200  # the key is verified and cached
    cluster.redis.stop()
    try:
        started = time.monotonic()
        speech = httpx.post(base + "/v1/audio/speech", headers=bearer(key), timeout=30,
                            json={"model": "tts-1", "voice": "alloy", "input": "Is anyone there?"})
        job = httpx.post(base + "/api/voice/jobs", headers=bearer(key), timeout=30,
                         json={"text": "Is anyone there?", "voice": VOICE})
        health = httpx.get(base + "/health", timeout=30)
        print(f"three requests with the broker down took {time.monotonic() - started:.2f} s")
        assert speech.status_code == 503 and "unreachable" in speech.json()["error"]["message"], speech.text
        assert job.status_code == 503 and job.json()["error"]["code"] == "unavailable", job.text
        assert speech.headers.get("retry-after") and job.headers.get("retry-after")
        assert health.status_code == 503 and health.json()["checks"]["broker"]["status"] == "down"
    finally:
        cluster.redis.start()
    cluster.wait_healthy("a")  # the worker reconnected and beats again; the app was never restarted
    job = submit(base, key, "Back again after the broker restarted.")
    assert wait_finished(cluster.url("b"), key, job["id"])["status"] == "succeeded"


# --- workers ---------------------------------------------------------------------------------------------------

def test_a_worker_killed_mid_job_is_redelivered_and_completes(cluster: Cluster) -> None:
    key = cluster.create_key("gus")
    job = submit(cluster.url("a"), key, LONG_TEXT)
    wait_until(lambda: status_of(cluster.url("a"), key, job["id"])["status"] == "running", 60, "the job never started")
    cluster.kill_worker(cluster.workers[0])
    assert status_of(cluster.url("b"), key, job["id"])["status"] == "running"
    cluster.start_worker()
    done = wait_finished(cluster.url("b"), key, job["id"], timeout_s=180)
    assert done["status"] == "succeeded", done
    assert_playable_wav(httpx.get(f"{cluster.url('a')}/api/voice/jobs/{job['id']}/audio", headers=bearer(key)))


def test_a_job_abandoned_by_a_dead_worker_is_failed_not_running_forever(cluster: Cluster) -> None:
    """A job whose worker died and whose message is gone (say, Redis lost it) is failed by the reaper."""
    from sqlalchemy import create_engine, text

    key = cluster.create_key("hal")
    job = submit(cluster.url("a"), key, LONG_TEXT)
    wait_until(lambda: status_of(cluster.url("a"), key, job["id"])["status"] == "running", 60, "the job never started")
    worker = cluster.workers[0]
    cluster.kill_worker(worker)
    engine = create_engine(cluster.env["LOCKN_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:  # the message is lost and the job is older than any redelivery could be
        connection.execute(text("UPDATE jobs SET started_at = started_at - interval '2 hours' WHERE id = :id"),
                           {"id": job["id"]})
    engine.dispose()
    import redis

    redis.Redis.from_url(cluster.redis.url).delete("unacked", "unacked_index")
    reaped = status_of(cluster.url("b"), key, job["id"])
    assert reaped["status"] == "failed" and reaped["error"] == STALLED_MESSAGE, reaped
    cluster.start_worker()
    cluster.wait_healthy("a")


# --- the database ----------------------------------------------------------------------------------------------

def test_with_the_database_down_requests_fail_cleanly_and_nothing_is_half_written(cluster: Cluster) -> None:
    key = cluster.create_key("ivy")
    base = cluster.url("a")
    before = httpx.get(base + "/api/voice/jobs", headers=bearer(key)).json()
    cluster.relay.stop()
    try:
        health = httpx.get(base + "/health", timeout=30)
        job = httpx.post(base + "/api/voice/jobs", headers=bearer(key), timeout=30,
                         json={"text": "This must not be half written.", "voice": VOICE})
        listing = httpx.get(base + "/api/voice/jobs", headers=bearer(key), timeout=30)
        assert health.status_code == 503 and health.json()["checks"]["database"]["status"] == "down"
        for response in (job, listing):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["message"] == "The database is unreachable; try again in a moment."
            assert "Traceback" not in response.text
    finally:
        cluster.relay.start()
    cluster.wait_healthy("a")
    after = httpx.get(base + "/api/voice/jobs", headers=bearer(key)).json()
    assert after == before, "a request that failed left a job behind"


# --- restarts ----------------------------------------------------------------------------------------------------

def test_jobs_running_across_an_app_restart_finish_and_are_served(cluster: Cluster) -> None:
    key = cluster.create_key("jan")
    job = submit(cluster.url("a"), key, LONG_TEXT[:600])
    port = cluster.stop_replica("a")
    assert not answers(f"http://localhost:{port}")
    cluster.start_replica("a", port)
    done = wait_finished(cluster.url("a"), key, job["id"])
    assert done["status"] == "succeeded", done
    assert_playable_wav(httpx.get(f"{cluster.url('a')}/api/voice/jobs/{job['id']}/audio", headers=bearer(key)))
