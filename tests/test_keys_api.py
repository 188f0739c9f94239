"""`/api/keys` over HTTP: status codes, error shape, headers, owner isolation, and both kinds of caller."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from backend.api import build_api
from backend.auth import tokens
from backend.services.keys.service import KeySpec, RateLimit

ALICE, BOB = "auth0|alice", "auth0|bob"
ISSUER, AUDIENCE = "https://tenant.example.test/", "https://lockn.example.test/api"
ADMIN_SCOPES = ("keys:read", "keys:write", "tts:read")


@pytest.fixture
def client(key_service) -> TestClient:
    return TestClient(build_api())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin_key(key_service, owner: str = ALICE, **spec) -> str:
    return key_service.create(owner, KeySpec("admin", scopes=ADMIN_SCOPES, **spec))[1]


def test_create_list_self_rotate_revoke_usage(client: TestClient, key_service) -> None:
    admin = admin_key(key_service)
    created = client.post("/api/keys", headers=bearer(admin),
                          json={"name": "my app", "scopes": ["tts:read"], "rate_limit": {"requests": 5,
                                                                                         "window_seconds": 10}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith("lk_live_") and body["start"] == body["key"][:12]
    assert body["status"] == "active" and body["rate_limit"] == {"requests": 5, "window_seconds": 10}
    assert created.headers["X-RateLimit-Limit"] == "60"

    listing = client.get("/api/keys", headers=bearer(admin)).json()
    assert {k["id"] for k in listing["data"]} == {body["id"], key_service.verify(admin, count=False).id}
    assert all("key" not in k for k in listing["data"]), "listings never contain a key"

    whoami = client.get("/api/keys/self", headers=bearer(body["key"])).json()
    assert whoami["id"] == body["id"] and whoami["scopes"] == ["tts:read"]

    rotated = client.post(f"/api/keys/{body['id']}/rotate", headers=bearer(admin), json={"grace_seconds": 60})
    assert rotated.status_code == 200 and rotated.json()["rotated_from"] == body["id"]
    assert client.get("/api/keys/self", headers=bearer(body["key"])).status_code == 200, "grace period"

    revoked = client.post(f"/api/keys/{rotated.json()['id']}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = client.get("/api/keys/self", headers=bearer(rotated.json()["key"]))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked"

    usage = client.get(f"/api/keys/{body['id']}/usage?days=7", headers=bearer(admin)).json()
    assert len(usage["days"]) == 7 and set(usage["days"][0]) == {"day", "requests", "chars", "audio_seconds",
                                                                 "errors"}


@pytest.mark.parametrize(("header", "code"), [
    (None, "malformed"), ("Bearer lk_live_nope", "malformed"), ("Basic abc", "malformed"),
])
def test_missing_or_malformed_credentials_are_401(client: TestClient, header, code) -> None:
    response = client.get("/api/keys", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_scope_and_privilege_escalation_are_403(client: TestClient, key_service) -> None:
    reader = key_service.create(ALICE, KeySpec("reader", scopes=("keys:read",)))[1]
    assert client.post("/api/keys", headers=bearer(reader), json={"name": "x"}).json()["error"]["code"] == \
        "insufficient_scope"
    writer = key_service.create(ALICE, KeySpec("writer", scopes=("keys:write",)))[1]
    escalation = client.post("/api/keys", headers=bearer(writer), json={"name": "x", "scopes": ["tts:write"]})
    assert escalation.status_code == 403 and "scopes it holds" in escalation.json()["error"]["message"]


def test_another_owners_key_is_404_everywhere(client: TestClient, key_service) -> None:
    bob_key_id = key_service.create(BOB, KeySpec("bob's"))[0].id
    alice = admin_key(key_service)
    for method, path in [("get", ""), ("post", "/rotate"), ("post", "/revoke"), ("get", "/usage")]:
        response = getattr(client, method)(f"/api/keys/{bob_key_id}{path}", headers=bearer(alice))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == {"code": "not_found", "message": f"No key '{bob_key_id}' among yours."}
    assert key_service.get(BOB, bob_key_id).revoked_at is None


def test_rate_limited_requests_are_429_with_retry_after(client: TestClient, key_service) -> None:
    admin = admin_key(key_service, rate_limit=RateLimit(2, 60))
    statuses = [client.get("/api/keys", headers=bearer(admin)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[1].headers["X-RateLimit-Remaining"] == "0"
    limited = statuses[2]
    assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1


def test_bad_bodies_are_422_naming_the_field(client: TestClient, key_service) -> None:
    admin = admin_key(key_service)
    for body, field in [({"name": ""}, "name"), ({"name": "x", "scopes": ["tts:fly"]}, "scopes.0"),
                        ({"name": "x", "quota_chars": 0}, "quota_chars"),
                        ({"name": "x", "scopes": ["tts:read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at")]:
        response = client.post("/api/keys", headers=bearer(admin), json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_request" and field in response.json()["error"]["message"]
    too_long = client.post(f"/api/keys/{key_service.verify(admin, count=False).id}/rotate", headers=bearer(admin),
                           json={"grace_seconds": 999_999})
    assert too_long.status_code == 422
    assert "Traceback" not in too_long.text


# ----- signed-in users: an Auth0-style RS256 access token ---------------------------------------------


@pytest.fixture
def signing_key(monkeypatch) -> RSAKey:
    key = RSAKey.generate_key(2048, parameters={"kid": "test-kid"})
    verifier = tokens.AccessTokenVerifier(ISSUER, AUDIENCE, lambda: KeySet([key]).as_dict(private=False))
    monkeypatch.setattr("backend.api.auth.get_token_verifier", lambda: verifier)
    return key


def access_token(key, **overrides) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": ALICE, "exp": int(time.time()) + 300, **overrides}
    return jwt.encode({"alg": "RS256", "kid": "test-kid"}, claims, key)


def test_signed_in_user_manages_own_keys_with_an_access_token(client: TestClient, key_service, signing_key) -> None:
    token = access_token(signing_key)
    created = client.post("/api/keys", headers=bearer(token), json={"name": "from the dashboard"})
    assert created.status_code == 201
    assert key_service.get(ALICE, created.json()["id"]).owner == ALICE
    assert client.get("/api/keys/self", headers=bearer(token)).status_code == 400


def test_bad_access_tokens_are_refused_with_401(client: TestClient, signing_key) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "test-kid"})
    hs = OctKey.generate_key(256)
    header, payload, _ = access_token(signing_key).split(".")
    bad_tokens = {
        "wrong signer": access_token(other),
        "wrong audience": access_token(signing_key, aud="https://elsewhere.test/"),
        "wrong issuer": access_token(signing_key, iss="https://evil.test/"),
        "expired": access_token(signing_key, exp=int(time.time()) - 10),
        "hs256": jwt.encode({"alg": "HS256"}, {"sub": ALICE, "iss": ISSUER, "aud": AUDIENCE}, hs),
        "alg none": "eyJhbGciOiJub25lIn0." + payload + ".",
        "garbage": "not-a-token",
    }
    for name, token in bad_tokens.items():
        response = TestClient(build_api()).get("/api/keys", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "invalid_token", name


def test_rotating_a_revoked_key_is_a_409(client: TestClient, key_service) -> None:
    admin = admin_key(key_service)
    victim = key_service.create(ALICE, KeySpec("old", scopes=("tts:read",)))[0]
    key_service.revoke(ALICE, victim.id)
    response = client.post(f"/api/keys/{victim.id}/rotate", headers=bearer(admin))
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


# ----- a key never hands on more than it holds (issue 16) ---------------------------------------------------


def test_a_key_cannot_rotate_a_key_with_scopes_it_lacks(client: TestClient, key_service) -> None:
    minter = key_service.create(ALICE, KeySpec("minter", scopes=("keys:write",)))[1]
    full_row, _ = key_service.create(ALICE, KeySpec("full", scopes=("tts:read", "tts:write", "keys:read",
                                                                    "keys:write")))
    refused = client.post(f"/api/keys/{full_row.id}/rotate", headers=bearer(minter))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope", refused.text
    assert "key" not in refused.text.lower().split('"error"')[0]
    minter_id = key_service.verify(minter, count=False).id
    itself = client.post(f"/api/keys/{minter_id}/rotate", headers=bearer(minter))
    assert itself.status_code == 200 and itself.json()["scopes"] == ["keys:write"], "a key may rotate itself"


def test_a_minted_key_stays_within_its_minter(client: TestClient, key_service) -> None:
    minter = key_service.create(ALICE, KeySpec("minter", scopes=("keys:write", "tts:read"),
                                                rate_limit=RateLimit(60, 60), quota_chars=1000,
                                                expires_at=datetime(2099, 1, 1, tzinfo=UTC)))[1]

    def mint(**body: object):  # type: ignore[no-untyped-def]
        return client.post("/api/keys", headers=bearer(minter), json={"name": "child", "scopes": ["tts:read"], **body})

    for body, words in (({"rate_limit": {"requests": 1_000_000, "window_seconds": 1}}, "rate limit"),
                        ({"rate_limit": {"requests": 60, "window_seconds": 1}}, "rate limit"),
                        ({"quota_chars": 1001}, "quota_chars"),
                        ({"expires_at": "2100-01-01T00:00:00Z"}, "expires_at")):
        refused = mint(**body)
        assert refused.status_code == 403, (body, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "exceeds_own_limits" and words in error["message"], error
    child = mint(rate_limit={"requests": 30, "window_seconds": 60})
    assert child.status_code == 201, child.text
    assert child.json()["quota_chars"] == 1000 and child.json()["expires_at"].startswith("2099-01-01"), \
        "quota and expiry are inherited when left out"


def test_each_key_has_one_successor(client: TestClient, key_service) -> None:
    admin = admin_key(key_service)
    target, _ = key_service.create(ALICE, KeySpec("target", scopes=("tts:read",)))
    first = client.post(f"/api/keys/{target.id}/rotate", headers=bearer(admin), json={"grace_seconds": 3600})
    assert first.status_code == 200
    assert client.get(f"/api/keys/{target.id}", headers=bearer(admin)).json()["status"] == "in_grace"
    again = client.post(f"/api/keys/{target.id}/rotate", headers=bearer(admin), json={"grace_seconds": 3600})
    assert again.status_code == 409 and "already rotated" in again.json()["error"]["message"], again.text
    successors = [k for k in client.get("/api/keys", headers=bearer(admin)).json()["data"]
                  if k["rotated_from"] == target.id]
    assert len(successors) == 1


def test_two_rotations_racing_leave_one_successor(key_service) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from backend.services.keys.service import InvalidKeyRequest

    target, _ = key_service.create(ALICE, KeySpec("raced"))

    def rotate(_: int) -> str:
        try:
            return key_service.rotate(ALICE, target.id, grace_seconds=60)[0].id
        except InvalidKeyRequest:
            return "refused"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(rotate, range(4)))
    assert sorted(outcome == "refused" for outcome in outcomes) == [False, True, True, True], outcomes


def test_numeric_fields_out_of_range_are_422(client: TestClient, key_service) -> None:
    admin = admin_key(key_service)
    huge = client.post("/api/keys", headers=bearer(admin), json={"name": "huge", "scopes": ["tts:read"],
                                                                 "quota_chars": 10**30})
    assert huge.status_code == 422 and "quota_chars" in huge.json()["error"]["message"], huge.text


def test_a_sessions_access_token_stops_working_when_the_session_ends(client: TestClient, key_service,
                                                                      signing_key) -> None:
    from sqlmodel import Session, select

    from backend.core.db import get_engine
    from backend.core.models import LoginSession
    from backend.services.accounts import sessions

    token = access_token(signing_key)
    row = sessions.start_session({"sub": ALICE, "email": "alice@example.test"}, token, "an id token")
    with Session(get_engine()) as db:
        stored = db.exec(select(LoginSession).where(LoginSession.id == row.id)).one()
    assert token not in (stored.access_token or "") and stored.id_token is None, "no token is kept at rest"
    assert client.post("/api/keys", headers=bearer(token), json={"name": "signed in"}).status_code == 201
    sessions.end_session(row.id)
    after = client.post("/api/keys", headers=bearer(token), json={"name": "signed out"})
    assert after.status_code == 401 and "has ended" in after.json()["error"]["message"], after.text
