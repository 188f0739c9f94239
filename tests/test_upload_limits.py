"""Upload abuse: oversized bodies are refused at the limit, never read whole, and leave nothing behind."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.api import build_api
from backend.api.body_limit import DEFAULT_LIMIT_BYTES
from backend.db import get_engine
from backend.models import ClonedVoice
from backend.services.keys import KeySpec
from backend.services.voices import MAX_UPLOAD_BYTES

CHUNK = 1024 * 1024


#: The start of a well-formed multipart upload whose file part then goes on and on.
FILE_PART = (b'--x\r\nContent-Disposition: form-data; name="audio"; filename="huge.wav"\r\n'
             b"Content-Type: audio/wav\r\n\r\nRIFF")


def post_streamed(path: str, total_bytes: int, declare_length: bool) -> tuple[int, int, bytes]:
    """POST `total_bytes` to the API app over raw ASGI, 1 MB per message; returns (status, chunks pulled, body)."""
    app = build_api()
    pulled, sent = 0, []
    upload = path.endswith("/voices")
    content_type = b"multipart/form-data; boundary=x" if upload else b"application/json"
    headers = [(b"content-type", content_type)]
    if declare_length:
        headers.append((b"content-length", str(total_bytes).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("test", 80),
             "client": ("127.0.0.1", 1), "root_path": "", "asgi": {"version": "3.0"}}

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        first = FILE_PART if upload and pulled == 1 else b'{"text": "' if pulled == 1 else b""
        return {"type": "http.request", "body": first + b"a" * CHUNK, "more_body": pulled * CHUNK < total_bytes}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], pulled, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_declared_huge_upload_is_refused_before_reading_a_byte(database) -> None:
    status, pulled, body = post_streamed("/api/voice/voices", 50 * CHUNK, declare_length=True)
    assert status == 413 and pulled == 0 and b"the limit is 10 MB" in body


def test_a_streamed_huge_upload_is_cut_off_at_the_limit(database) -> None:
    status, pulled, body = post_streamed("/api/voice/voices", 50 * CHUNK, declare_length=False)
    assert status == 413 and b"payload_too_large" in body
    assert pulled <= MAX_UPLOAD_BYTES // CHUNK + 2, f"read {pulled} MB of a 50 MB body"


def test_json_routes_take_small_bodies_only(database) -> None:
    status, pulled, _ = post_streamed("/api/voice/jobs", 50 * CHUNK, declare_length=False)
    assert status == 413 and pulled <= DEFAULT_LIMIT_BYTES // CHUNK + 2


def test_a_refused_upload_leaves_no_row_and_no_file(database, key_service, isolated_settings) -> None:
    _, key = key_service.create("auth0|abuser", KeySpec("abuse", scopes=("tts:read", "tts:write")))
    client = TestClient(build_api())
    response = client.post("/api/voice/voices", headers={"Authorization": f"Bearer {key}"},
                           data={"name": "big", "transcript": "words"},
                           files={"audio": ("big.wav", b"RIFF" + b"\0" * (20 * CHUNK), "audio/wav")})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"].startswith("The upload is too large: the limit is 10 MB")
    with Session(get_engine()) as session:
        assert session.exec(select(ClonedVoice)).all() == []
    voices_dir = isolated_settings / "voices"
    assert not voices_dir.exists() or not any(voices_dir.rglob("*.wav"))
