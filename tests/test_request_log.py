"""The request log (issue 19): keyed and signed-in requests are recorded off the request path, each owner
reads only their own, filters and pages work, and retention prunes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import RequestLog, utcnow
from backend.services.keys.service import KeySpec
from backend.services.accounts.request_log import client_network, prune_request_log, request_log_recorder

ALICE, BOB = "auth0|alice", "auth0|bob"
READ_ALL = ("tts:read", "keys:read")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "User-Agent": "lockn-test/1.0"}


@pytest.fixture
def client(database) -> TestClient:
    return TestClient(build_api())


def logs(client: TestClient, key: str, **query: object) -> dict:
    answer = client.get("/api/logs", headers=bearer(key), params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_keyed_request_is_logged_with_its_id_and_only_its_owner_sees_it(client, key_service) -> None:
    alice = key_service.create(ALICE, KeySpec("alice", scopes=READ_ALL))
    bob = key_service.create(BOB, KeySpec("bob", scopes=READ_ALL))[1]
    ok = client.get("/v1/models", headers=bearer(alice[1]))
    missing = client.get("/api/voice/jobs/job_nowhere", headers=bearer(alice[1]))
    assert client.get("/v1/models").status_code == 401  # nobody to name: not in anyone's log
    rows = {row["request_id"]: row for row in logs(client, alice[1])["data"]}
    first = rows[ok.headers["x-request-id"]]
    assert (first["route"], first["method"], first["status"], first["key_id"]) == ("/v1/models", "GET", 200,
                                                                                  alice[0].id)
    assert first["user_agent"] == "lockn-test/1.0" and first["latency_ms"] > 0
    failed = rows[missing.headers["x-request-id"]]
    assert (failed["route"], failed["status"], failed["error_code"]) == ("/api/voice/jobs/{job_id}", 404, "not_found")
    assert missing.json()["request_id"] == failed["request_id"]
    assert all(row["request_id"] not in rows for row in logs(client, bob)["data"]), "an owner sees only theirs"
    assert logs(client, bob, request_id=ok.headers["x-request-id"])["data"] == []


def test_filters_and_pages(client, key_service) -> None:
    key = key_service.create(ALICE, KeySpec("alice", scopes=READ_ALL))[1]
    for _ in range(3):
        client.get("/v1/models", headers=bearer(key))
    client.get("/api/voice/jobs/job_nowhere", headers=bearer(key))
    assert [row["status"] for row in logs(client, key, status="4xx")["data"]] == [404]
    assert {row["route"] for row in logs(client, key, route="/v1/models")["data"]} == {"/v1/models"}
    first = logs(client, key, route="/v1/models", limit=2)
    second = logs(client, key, route="/v1/models", limit=2, cursor=first["next_cursor"])
    assert len(first["data"]) == 2 and len(second["data"]) == 1 and second["next_cursor"] is None
    assert logs(client, key, since=(utcnow() + timedelta(minutes=1)).isoformat())["data"] == []
    refused = client.get("/api/logs", headers=bearer(key), params={"cursor": "log_not_yours"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"


def test_retention_prunes_what_is_older(database, monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_LOG_RETENTION_DAYS", "7")
    from backend.core.settings import get_settings

    get_settings.cache_clear()
    recorder = request_log_recorder()
    for age_days in (1, 6, 8, 40):
        recorder.record(owner=ALICE, created_at=utcnow() - timedelta(days=age_days), request_id=f"req_age_{age_days}",
                        method="GET", route="/v1/models", status=200, latency_ms=1.0)
    assert recorder.flush() == 4
    assert prune_request_log() == 2
    with Session(get_engine()) as session:
        assert session.exec(select(func.count()).select_from(RequestLog)).one() == 2


@pytest.mark.parametrize("address, network", [("203.0.113.77", "203.0.113.0/24"),
                                              ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
                                              ("testclient", None), (None, None)])
def test_a_client_is_kept_to_its_network(address: str | None, network: str | None) -> None:
    assert client_network(address) == network
