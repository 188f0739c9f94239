"""Browser-facing security of the running app: the websocket accepts only the app's own origin."""

from __future__ import annotations

import base64
import os
import socket
from urllib.parse import urlsplit

import pytest


def websocket_handshake(base_url: str, origin: str) -> str:
    """Open Reflex's event websocket with `origin` as a browser would; returns the HTTP status line."""
    parts = urlsplit(base_url)
    request = (f"GET /_event/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nOrigin: {origin}\r\n\r\n")
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


@pytest.mark.smoke
def test_a_foreign_origin_cannot_open_the_event_channel(base_url: str) -> None:
    own = websocket_handshake(base_url, base_url)
    assert " 101 " in own, (f"{own}: the event channel refuses pages served from {base_url}; is that the "
                            "deployment's LOCKN_PUBLIC_URL? (pages there cannot work)")
    refused = websocket_handshake(base_url, "https://evil.example")
    assert " 101 " not in refused, refused


@pytest.mark.usefixtures("dev_identity_provider")
def test_session_cookie_is_httponly_and_not_readable_by_scripts(base_url: str) -> None:
    from qa.test_login import sign_in

    http = sign_in(base_url, "cookie@example.test")
    assert http.cookies.get("lockn_session")
    assert http.get("/api/keys", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_cross_origin_answers_name_their_origin_once(base_url: str) -> None:
    """CORS for the app's own origin only, with one `Vary: Origin` (two CORS layers once said it twice)."""
    import httpx

    own = httpx.get(base_url + "/api/voice/voices", headers={"Origin": base_url}, timeout=10)
    assert own.headers.get("access-control-allow-origin") == base_url
    assert own.headers.get_list("vary") == ["Origin"], own.headers.get_list("vary")
    foreign = httpx.get(base_url + "/api/voice/voices", headers={"Origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in foreign.headers
