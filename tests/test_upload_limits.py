"""Upload abuse: oversized bodies are refused at the limit, never read whole, and leave nothing behind."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.api import build_api
from backend.api.body_limit import DEFAULT_LIMIT_BYTES, DEFAULT_MESSAGE
from backend.core.db import get_engine
from backend.core.models import ClonedVoice
from backend.services.keys.service import KeySpec
from backend.services.voices.service import MAX_UPLOAD_BYTES

CHUNK = 1024 * 1024


#: The start of a well-formed multipart upload whose file part then goes on and on.
FILE_PART = (b'--x\r\nContent-Disposition: form-data; name="audio"; filename="huge.wav"\r\n'
             b"Content-Type: audio/wav\r\n\r\nRIFF")


def post_streamed(path: str, total_bytes: int, declare_length: bool, app=None) -> tuple[int, int, bytes]:  # type: ignore[no-untyped-def]
    """POST `total_bytes` to the API app over raw ASGI, 1 MB per message; returns (status, chunks pulled, body)."""
    app = app or build_api()
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
        post_streamed.pulled = pulled  # type: ignore[attr-defined]
        first = FILE_PART if upload and pulled == 1 else b'{"text": "' if pulled == 1 else b""
        return {"type": "http.request", "body": first + b"a" * CHUNK, "more_body": pulled * CHUNK < total_bytes}

    async def send(message: dict) -> None:
        sent.append(message)

    # In a thread of its own: the browser tests' Playwright may already run an event loop in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], pulled, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_declared_huge_upload_is_refused_before_reading_a_byte(database) -> None:
    status, pulled, body = post_streamed("/api/voice/voices", 50 * CHUNK, declare_length=True)
    assert status == 413 and pulled == 0 and b"the limit is 10 MB" in body


def test_a_streamed_huge_upload_is_cut_off_at_the_limit(database) -> None:
    status, pulled, body = post_streamed("/api/voice/voices", 50 * CHUNK, declare_length=False)
    assert status == 413 and b"payload_too_large" in body and b"the limit is 10 MB" in body, body
    assert pulled <= MAX_UPLOAD_BYTES // CHUNK + 2, f"read {pulled} MB of a 50 MB body"


def test_json_routes_take_small_bodies_only(database) -> None:
    status, pulled, body = post_streamed("/api/voice/jobs", 50 * CHUNK, declare_length=False)
    assert status == 413 and pulled <= DEFAULT_LIMIT_BYTES // CHUNK + 2
    assert DEFAULT_MESSAGE.encode() in body, f"the sentence, not the ASGI message: {body[:200]!r}"


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


def hour_of_silence(fmt: str, rate: int = 16000) -> bytes:
    """A small file that decodes to an hour of audio, written a minute at a time (never held whole)."""
    import io

    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", samplerate=rate, channels=1, format=fmt) as out:
        minute = np.zeros(rate * 60, dtype=np.float32)
        for _ in range(60):
            out.write(minute)
    return buffer.getvalue()


def test_decompression_bombs_are_refused_unread(database, key_service) -> None:
    from backend.services.voices.service import VoiceRejected, validate_clip
    from backend.media.codecs import AudioTooLong, _decode_with_pyav

    for fmt in ("FLAC", "OGG"):
        bomb = hour_of_silence(fmt)
        assert len(bomb) < MAX_UPLOAD_BYTES, f"{fmt}: {len(bomb)} bytes"
        try:
            validate_clip(bomb)
        except VoiceRejected as exc:
            assert exc.status == 422 and "over 120 s of audio" in str(exc), str(exc)
        else:
            raise AssertionError(f"a {fmt} bomb was accepted")
    try:  # the FFmpeg path (formats libsndfile cannot read) stops as soon as it passes the limit
        _decode_with_pyav(hour_of_silence("FLAC"), max_seconds=120)
    except AudioTooLong as exc:
        assert "over 120 s of audio" in str(exc)
    else:
        raise AssertionError("the FFmpeg decoder read a bomb whole")


def test_files_that_lie_about_their_type_are_refused(database, key_service) -> None:
    import io

    import numpy as np
    import soundfile

    _, key = key_service.create("auth0|liar", KeySpec("liar", scopes=("tts:read", "tts:write")))
    client = TestClient(build_api())
    wav = io.BytesIO()
    soundfile.write(wav, np.zeros(16000 * 15, dtype=np.float32), 16000, format="WAV")
    lies = {"png.wav": b"\x89PNG\r\n\x1a\n" + b"\0" * 4096, "truncated.wav": wav.getvalue()[:30],
            "script.mp3": b"#!/bin/sh\nrm -rf /\n" * 50}
    for filename, content in lies.items():
        response = client.post("/api/voice/voices", headers={"Authorization": f"Bearer {key}"},
                               data={"name": filename, "transcript": "words"},
                               files={"audio": (filename, content, "audio/wav")})
        assert response.status_code in (400, 422), (filename, response.text)
        assert "audio" in response.json()["error"]["message"], response.text
    with Session(get_engine()) as session:
        assert session.exec(select(ClonedVoice)).all() == []


def test_a_bomb_of_many_channels_at_a_high_rate_is_refused_from_its_header(database) -> None:
    """20 s is within the length limit, but 8 channels at 192 kHz would decode to 30 M samples (~120 MB)."""
    import io
    import tracemalloc

    import numpy as np
    import soundfile

    from backend.services.voices.service import VoiceRejected, validate_clip

    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", samplerate=192_000, channels=8, format="FLAC") as out:
        second = np.zeros((192_000, 8), dtype=np.float32)
        for _ in range(20):
            out.write(second)
    bomb = buffer.getvalue()
    assert len(bomb) < MAX_UPLOAD_BYTES
    tracemalloc.start()
    try:
        validate_clip(bomb)
    except VoiceRejected as exc:
        assert exc.status == 422 and "8 channel(s) at 192000 Hz" in str(exc), str(exc)
    else:
        raise AssertionError("the bomb was accepted")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing it"


def test_the_studios_upload_route_has_the_same_cap(database) -> None:
    """Reflex's `/_upload` would read a 400 MB body whole; it gets the clip limit, declared or streamed."""
    from backend.api.body_limit import BodySizeLimit

    status, pulled, body = post_streamed("/_upload", 50 * CHUNK, declare_length=True)
    assert status == 413 and pulled == 0 and b"the limit is 10 MB" in body

    async def reads_everything(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        """Stands in for Reflex's upload handler, which reads the whole body."""
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    with_reader = BodySizeLimit(reads_everything)
    try:
        status, pulled, _ = post_streamed("/_upload", 50 * CHUNK, declare_length=False, app=with_reader)
    except Exception as exc:  # noqa: BLE001 - raised from receive: the reader never got past the limit
        assert "413" in repr(exc) or "too large" in str(exc), exc
    else:
        assert status == 413
    assert post_streamed.pulled <= MAX_UPLOAD_BYTES // CHUNK + 2, "cut off at the limit, not read whole"
