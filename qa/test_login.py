"""Sign-in through the development identity provider, over real HTTP against the running app."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from backend.services.accounts.sessions import COOKIE_NAME

pytestmark = pytest.mark.usefixtures("dev_identity_provider")


def sign_in(base_url: str, email: str = "ada@example.test", next_path: str = "/dashboard") -> httpx.Client:
    """Walk the authorization-code flow as a browser would; returns the client holding the session cookie."""
    http = httpx.Client(base_url=base_url, timeout=30)
    to_provider = http.get("/auth/login", params={"next": next_path})
    assert to_provider.status_code in (302, 303, 307), to_provider.text
    authorize_url = to_provider.headers["location"]
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert query["audience"] == [f"{base_url}/api"]
    form = http.get(authorize_url)
    assert form.status_code == 200 and "Sign in to LockN" in form.text
    back = http.post(authorize_url, data={"email": email, "name": "Ada Lovelace"})
    assert back.status_code in (302, 303), back.text
    landed = http.get(back.headers["location"])
    assert landed.status_code == 303, landed.text
    assert landed.headers["location"] == next_path
    cookie = landed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    return http


def test_sign_in_sets_a_server_side_session(base_url: str) -> None:
    http = sign_in(base_url)
    assert http.cookies.get(COOKIE_NAME)
    assert "access_token" not in http.cookies.get(COOKIE_NAME, "")


def test_next_never_leaves_the_site(base_url: str) -> None:
    for hostile in ("https://elsewhere.example/", "//elsewhere.example/x", "/\\elsewhere.example"):
        client = httpx.Client(base_url=base_url, timeout=30)
        authorize_url = client.get("/auth/login", params={"next": hostile}).headers["location"]
        back = client.post(authorize_url, data={"email": "eve@example.test"})
        assert client.get(back.headers["location"]).headers["location"] == "/dashboard", hostile


def test_a_tampered_callback_is_a_clear_page_not_a_500(base_url: str) -> None:
    client = httpx.Client(base_url=base_url, timeout=30)
    authorize_url = client.get("/auth/login").headers["location"]
    callback = client.post(authorize_url, data={"email": "mallory@example.test"}).headers["location"]
    forged = callback.replace("state=", "state=x")
    response = client.get(forged)
    assert response.status_code == 400 and "Sign-in failed" in response.text


@pytest.mark.parametrize("path", ["/dev-idp/.well-known/openid-configuration"])
def test_dev_provider_metadata(base_url: str, path: str) -> None:
    metadata = httpx.get(base_url + path, timeout=10).json()
    assert metadata["issuer"] == f"{base_url}/dev-idp/" and metadata["code_challenge_methods_supported"] == ["S256"]
