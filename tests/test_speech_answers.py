"""`/v1/audio/speech` answers every request it accepts: a new text or one the cache holds, as audio or as
server-sent events, in every response format (issue 27, item 4: SSE for a cached text sent no headers at all,
because it waited for a live stream no worker would ever write)."""

from __future__ import annotations

import base64
import json
import threading
import time
from itertools import product

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Job
from backend.media.codecs import FORMATS, STREAMABLE
from backend.services.keys.service import KeySpec, RateLimit

VOICE = "en_US-joe-medium"
#: How long one answer may take here (a short sentence; a hang used to last the job's time limit + 30 s).
ANSWER_WITHIN_S = 30
COMBINATIONS = list(product(("miss", "hit"), ("audio", "sse"), FORMATS))


def answer(client: TestClient, key: str, body: dict) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request, or AssertionError when it has not answered in time."""
    result: dict = {}

    def send() -> None:
        with client.stream("POST", "/v1/audio/speech", headers={"Authorization": f"Bearer {key}"},
                           json=body) as response:
            result["answer"] = (response.status_code, response.headers.get("content-type", ""), response.read())

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(ANSWER_WITHIN_S)
    assert "answer" in result, f"no answer within {ANSWER_WITHIN_S} s"
    return result["answer"]


def stored(text: str, fmt: str) -> list[Job]:
    with Session(get_engine()) as session:
        return list(session.exec(select(Job).where(Job.text == text, Job.format == fmt)))


def wait_stored(text: str, fmt: str) -> None:
    """A streamed answer ends a moment before its file is stored (and the cache can answer): wait for that."""
    deadline = time.monotonic() + 60
    while not any(job.status == "succeeded" for job in stored(text, fmt)):
        assert time.monotonic() < deadline, "the job was not stored"
        time.sleep(0.05)


def check(status: int, content_type: str, content: bytes, stream: str, fmt: str) -> None:
    if stream == "sse" and fmt not in STREAMABLE:
        assert status == 400 and b"cannot be streamed" in content, content[:300]
        return
    assert status == 200, content[:300]
    if stream == "audio":
        assert content_type == FORMATS[fmt].content_type and len(content) > 1000, (content_type, len(content))
        return
    assert content_type.startswith("text/event-stream"), content_type
    events = [json.loads(line[len("data: "):]) for line in content.decode().split("\n\n") if line]
    assert events[-1]["type"] == "speech.audio.done", events[-1]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1] if e["type"] == "speech.audio.delta")
    assert len(audio) > 1000 and events[-1]["usage"]["output_tokens"] == len(audio)


def test_every_cache_state_stream_format_and_response_format_answers(worker, key_service) -> None:
    """Every combination, one worker: the failures are listed together, so one run shows which hang."""
    key = key_service.create("auth0|answers", KeySpec("answers", rate_limit=RateLimit(1000, 60),
                                                       max_concurrent_jobs=10))[1]
    client = TestClient(build_api())
    failures = []
    for cache, stream, fmt in COMBINATIONS:
        text = f"Every request is answered, {stream} in {fmt}."
        if cache == "hit" and not (stream == "sse" and fmt not in STREAMABLE):
            wait_stored(text, fmt)  # the miss of the same combination made it
        try:
            check(*answer(client, key, {"model": "tts-1", "voice": VOICE, "input": text, "response_format": fmt,
                                        "stream_format": stream}), stream, fmt)
            if cache == "hit" and not (stream == "sse" and fmt not in STREAMABLE):
                assert any(job.engine_time_s == 0 for job in stored(text, fmt)), "the cache did not answer"
        except AssertionError as exc:
            failures.append(f"{cache}/{stream}/{fmt}: {str(exc).splitlines()[0]}")
    assert not failures, failures
