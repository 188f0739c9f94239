"""Request ids (issue 19, first part): every answer carries one, error bodies repeat it, log lines made while
the request runs are tagged with it, and a job records the id of the request that asked for it."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Job
from backend.core.request_context import install_request_ids
from backend.core.settings import get_settings
from backend.services.keys.service import KeySpec

OURS = re.compile(r"req_[0-9a-f]{20}")


def app_with_a_failing_route() -> TestClient:
    api = build_api()

    @api.get("/api/boom")
    def boom() -> None:
        logging.getLogger("lockn.test").warning("about to fail")
        raise RuntimeError("an engine bug")

    api.router.routes.insert(0, api.router.routes.pop())  # before the JSON 404 catch-all of unknown /api paths
    return TestClient(api, raise_server_exceptions=False)


def test_every_answer_has_an_id_and_an_error_body_repeats_it(database) -> None:
    client = app_with_a_failing_route()
    answers = [client.get("/health/live"), client.get("/api/nowhere"), client.get("/v1/models"),
               client.post("/v1/audio/speech", content=b"x" * (128 * 1024)), client.get("/api/boom")]
    assert [a.status_code for a in answers] == [200, 404, 401, 413, 500]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(OURS.fullmatch(i) for i in ids) and len(set(ids)) == len(ids), ids
    for answer in answers[1:]:
        assert answer.json()["request_id"] == answer.headers["x-request-id"]
        assert "error" in answer.json()  # the envelope itself is unchanged (OpenAI's on /v1)


@pytest.mark.parametrize("trusted, offered, kept", [
    (False, "proxy-1234-abcd", False),      # a client cannot choose how its requests are logged
    (True, "proxy-1234-abcd", True),        # the proxy in front can
    (True, "bad id\twith tabs", False),     # but only something shaped like an id
])
def test_an_offered_id_is_kept_only_from_a_trusted_proxy(database, monkeypatch, trusted: bool, offered: str,
                                                         kept: bool) -> None:
    monkeypatch.setenv("LOCKN_TRUST_PROXY_REQUEST_ID", "1" if trusted else "0")
    get_settings.cache_clear()
    answer = TestClient(build_api()).get("/health/live", headers={"X-Request-Id": offered})
    assert (answer.headers["x-request-id"] == offered) is kept
    assert kept or OURS.fullmatch(answer.headers["x-request-id"])


def test_log_lines_made_during_a_request_carry_its_id(database, caplog) -> None:
    install_request_ids()
    with caplog.at_level(logging.WARNING):
        answer = app_with_a_failing_route().get("/api/boom")
    request_id = answer.headers["x-request-id"]
    tagged = [r.getMessage() for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert any(m == f"[{request_id}] about to fail" for m in tagged), [r.getMessage() for r in caplog.records]
    assert any("unhandled error on GET /api/boom" in m for m in tagged)
    logging.getLogger("lockn.test").warning("outside any request")
    assert caplog.records[-1].getMessage() == "outside any request"


def test_a_job_records_the_id_of_the_request_that_asked_for_it(worker, key_service) -> None:
    key = key_service.create("auth0|ids", KeySpec("ids"))[1]
    answer = TestClient(build_api()).post("/api/voice/jobs", headers={"Authorization": f"Bearer {key}"},
                                          json={"text": "Which request asked for me?", "voice": "en_US-joe-medium"})
    assert answer.status_code == 202, answer.text
    with Session(get_engine()) as session:
        assert session.get(Job, answer.json()["id"]).request_id == answer.headers["x-request-id"]


def test_the_worker_logs_a_job_with_the_id_of_its_request(embedded_broker, key_service, tmp_path) -> None:
    """The worker is a separate process: its log line about the job carries the id the client was answered with."""
    import os
    import subprocess
    import time

    from backend.ops.supervisor import worker_command
    from tests.conftest import wait_for_worker_heartbeat

    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(worker_command(), env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_for_worker_heartbeat()
        key = key_service.create("auth0|ids", KeySpec("ids"))[1]
        answer = TestClient(build_api()).post("/api/voice/jobs", headers={"Authorization": f"Bearer {key}"},
                                              json={"text": "Log me with my request.", "voice": "en_US-joe-medium"})
        request_id, job_id = answer.headers["x-request-id"], answer.json()["id"]
        deadline = time.monotonic() + 60
        while f"job {job_id} succeeded" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        line = next(line for line in log.read_text().splitlines() if f"job {job_id} succeeded" in line)
        assert f"[{request_id}]" in line, line
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)


def test_production_log_lines_are_json_with_the_request_id(monkeypatch, capsys) -> None:
    import json

    from backend.core.log_setup import configure_logging
    from backend.core.request_context import request_id_scope

    install_request_ids()
    monkeypatch.setenv("LOCKN_ENV", "rehearsal")
    monkeypatch.setenv("LOCKN_DATABASE_URL", "postgresql://unused@127.0.0.1/none")
    monkeypatch.setenv("LOCKN_REDIS_URL", "redis://127.0.0.1:9/0")
    get_settings.cache_clear()
    configure_logging(get_settings())
    try:
        with request_id_scope("req_0123456789abcdef0123"):
            logging.getLogger("lockn.jobs").info("job %s succeeded", "job_x")
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["level"] == "INFO" and line["logger"] == "lockn.jobs" and line["time"]
        assert line["request_id"] == "req_0123456789abcdef0123" and "job job_x succeeded" in line["message"]
    finally:
        logging.getLogger("lockn").handlers = []
