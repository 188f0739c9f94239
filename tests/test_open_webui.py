"""Open WebUI's text-to-speech calls, replayed exactly, against the real app and a real Piper worker.

What Open WebUI does with engine "OpenAI", base URL `<host>/v1` and an `lk_…` key (its
`routers/audio.py`): it lists `GET {base}/audio/models` and `GET {base}/audio/voices` without an
Authorization header and reads `{"models": [{"id"}]}` / `{"voices": [{"id", "name"}]}`; it then sends
one `POST {base}/audio/speech` per sentence chunk, in sequence, with `{"model", "input", "voice"}`
only (so MP3, OpenAI's default) and shows `error.message` from a failed answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.api import build_api
from backend.services.keys.service import KeySpec
from backend.media.codecs import decode

#: The base URL as a person types it into Open WebUI: with or without a trailing slash (then it asks for
#: `/v1//audio/voices`, and LockN must still answer, or Open WebUI falls back to OpenAI's six voices).
BASES = ["/v1", "/v1/"]
CHUNKS = ["Hello there!", "This is Open WebUI reading an answer aloud.", "It sends one sentence at a time.",
          "Hello there!"]


@pytest.mark.parametrize("base", BASES)
def test_open_webui_flow(worker, key_service, base: str) -> None:
    key = key_service.create("auth0|webui-admin", KeySpec("open-webui", scopes=("tts:read", "tts:write")))[1]
    client = TestClient(build_api())

    models = client.get(f"{base}/audio/models")  # no Authorization header, as Open WebUI sends it
    voices = client.get(f"{base}/audio/voices")
    assert models.headers["content-type"] == voices.headers["content-type"] == "application/json"
    model_ids = [m["id"] for m in models.json()["models"]]
    voice_list = voices.json()["voices"]
    assert "tts-1" in model_ids
    assert all(isinstance(v, dict) and isinstance(v["id"], str) and isinstance(v["name"], str) for v in voice_list)
    chosen = next(v["id"] for v in voice_list if v["id"] == "en_US-joe-medium")

    for chunk in CHUNKS:
        response = client.post(f"{base}/audio/speech", json={"model": "tts-1", "input": chunk, "voice": chosen},
                               headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "audio/mpeg"
        samples, rate = decode(response.content)
        assert len(samples) / rate > 0.3, chunk
        assert float(np.sqrt(np.mean(np.square(samples)))) > 0.01, f"silent answer for {chunk!r}"

    refused = client.post(f"{base}/audio/speech", json={"model": "tts-1", "input": "hi", "voice": chosen},
                          headers={"Authorization": "Bearer lk_live_wrong"})
    assert refused.status_code == 401 and refused.json()["error"]["message"], "Open WebUI shows error.message"


def test_open_webui_with_a_key_sees_cloned_voices_too(worker, key_service) -> None:
    from tests.test_voice_api import clip

    key = key_service.create("auth0|webui-admin", KeySpec("open-webui", scopes=("tts:read", "tts:write")))[1]
    client = TestClient(build_api())
    headers = {"Authorization": f"Bearer {key}"}
    client.post("/api/voice/voices", headers=headers, data={"name": "Mine", "transcript": "hello"},
                files={"audio": ("me.wav", clip(12), "audio/wav")})
    anonymous = {v["name"] for v in client.get(f"{BASES[0]}/audio/voices").json()["voices"]}
    keyed = {v["name"] for v in client.get(f"{BASES[0]}/audio/voices", headers=headers).json()["voices"]}
    assert "Mine" not in anonymous and "Mine" in keyed
