"""Login pieces without a browser: next-path safety, signed cookies, sessions, and the dev provider's guard."""

from __future__ import annotations

import pytest

from backend.auth.dev_provider import DevProvider, DevProviderForbidden
from backend.auth.oidc import safe_next
from backend.services.accounts import sessions
from backend.core.settings import ProductionConfigError, Settings


@pytest.mark.parametrize(("candidate", "expected"), [
    ("/studio", "/studio"), ("/dashboard?tab=keys", "/dashboard?tab=keys"), (None, "/dashboard"),
    ("https://elsewhere.example/", "/dashboard"), ("//elsewhere.example", "/dashboard"),
    ("/\\elsewhere.example", "/dashboard"), ("javascript:alert(1)", "/dashboard"), ("studio", "/dashboard"),
])
def test_next_accepts_same_site_paths_only(candidate, expected) -> None:
    assert safe_next(candidate) == expected


def test_the_dev_provider_cannot_run_in_production(monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_ENV", "prod")
    with pytest.raises(ProductionConfigError, match="development identity provider"):
        Settings()
    forced = Settings.model_construct(**{**Settings(env="dev").model_dump(), "env": "prod"})
    with pytest.raises(DevProviderForbidden):
        DevProvider(forced)


def test_session_cookie_is_signed_and_sessions_end_everywhere(database) -> None:
    row = sessions.start_session({"sub": "dev|ada@example.test", "name": "Ada", "email": "ada@example.test"},
                                 "access", "id")
    cookie = sessions.sign(row.id)
    assert cookie != row.id and sessions.session_from_cookie(cookie).user_id == "dev|ada@example.test"
    assert sessions.session_from_cookie(cookie[:-2] + "xx") is None, "a forged signature is no session"
    assert sessions.session_from_cookie(sessions.sign("made-up-id")) is None
    sessions.end_session(row.id)
    assert sessions.session_from_cookie(cookie) is None


def test_sessions_expire(database, monkeypatch) -> None:
    from datetime import timedelta

    from sqlmodel import Session

    from backend.core.db import get_engine
    from backend.core.models import LoginSession, utcnow

    row = sessions.start_session({"sub": "dev|x@example.test"}, None, None)
    with Session(get_engine()) as db:
        stored = db.get(LoginSession, row.id)
        stored.expires_at = utcnow() - timedelta(seconds=1)
        db.add(stored)
        db.commit()
    assert sessions.active_session(row.id) is None


@pytest.mark.parametrize(("return_to", "lands_on"), [
    ("http://localhost:3000/", "http://localhost:3000/"),
    ("http://localhost:3000/studio", "http://localhost:3000/studio"),
    ("http://localhost:3000.evil.example/", "/"),
    ("http://localhost:3000@evil.example/", "/"),
    ("https://localhost:3000/", "/"),
    ("//evil.example/", "/"),
])
def test_the_dev_providers_logout_returns_to_this_site_only(database, return_to: str, lands_on: str) -> None:
    from fastapi.testclient import TestClient

    from backend.api import build_api

    answer = TestClient(build_api()).get("/dev-idp/logout", params={"returnTo": return_to}, follow_redirects=False)
    assert answer.headers["location"] == lands_on


def test_signing_out_takes_a_post_with_the_sessions_token(database) -> None:
    import re

    from fastapi.testclient import TestClient

    from backend.api import build_api

    row = sessions.start_session({"sub": "dev|out@example.test"}, None)
    client = TestClient(build_api(), cookies={sessions.COOKIE_NAME: sessions.sign(row.id)})
    asked = client.get("/auth/logout", follow_redirects=False)
    assert asked.status_code == 200 and sessions.active_session(row.id), "a GET (a link, another site) only asks"
    forged = client.post("/auth/logout", data={"csrf": "0" * 64}, follow_redirects=False)
    assert forged.status_code == 403 and sessions.active_session(row.id)
    token = re.search(r"name=csrf value='([0-9a-f]+)'", asked.text).group(1)
    done = client.post("/auth/logout", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and sessions.active_session(row.id) is None
