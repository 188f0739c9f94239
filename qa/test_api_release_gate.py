"""The HTTP API of a running LockN, over real HTTP, as a client integrates it (release gate)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from openai import OpenAI

from backend.media.codecs import decode

pytestmark = pytest.mark.smoke


def test_openai_sdk_speaks_through_the_running_app(base_url: str, api_key: str) -> None:
    client = OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
    assert "tts-1" in {model.id for model in client.models.list().data}
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="The release gate is open.").read()
    samples, rate = decode(audio)
    assert rate == 22050 and len(samples) / rate > 1 and float(np.abs(samples).max()) > 0.05
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="nova", response_format="wav",
                                                            input="Streaming works. Over real HTTP.") as streamed:
        chunks = [chunk for chunk in streamed.iter_bytes() if chunk]
    samples, rate = decode(b"".join(chunks))
    assert len(samples) / rate > 1.5


def test_jobs_api_over_http(base_url: str, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        job = http.post("/api/voice/jobs", json={"text": "Jobs over HTTP.", "voice": "en_US-joe-medium",
                                                 "format": "flac"})
        assert job.status_code == 202
        status = job.json()
        for _ in range(300):
            status = http.get(status["status_url"]).json()
            if status["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert status["status"] == "succeeded", status
        audio = http.get(status["audio_url"])
        assert audio.headers["content-type"] == "audio/flac" and decode(audio.content)[0].size > 0
        assert {"tts:read", "tts:write"} <= set(http.get("/api/keys/self").json()["scopes"])
