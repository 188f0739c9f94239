"""The voice API and the OpenAI-compatible endpoints, through the real app, queue and Piper worker."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from openai import OpenAI

from sqlmodel import Session, func, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Job
from backend.services.keys.service import KeySpec, RateLimit
from backend.services.voices.openai_compat import OPENAI_VOICES, voice_map
from backend.media.codecs import decode

ALICE, BOB = "auth0|alice", "auth0|bob"
VOICE = "en_US-joe-medium"
ALL_TTS = ("tts:read", "tts:write")


def clip(seconds: float, rate: int = 22050, silence: float = 0.5) -> bytes:
    """A WAV of voice-like sound (noise shaped into syllables) with `silence` s of quiet at each end."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    sound = rng.normal(0, 0.2, t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    quiet = np.zeros(int(silence * rate))
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate([quiet, sound, quiet]).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture
def app(worker, key_service) -> TestClient:
    return TestClient(build_api())


@pytest.fixture
def alice(key_service) -> str:
    return key_service.create(ALICE, KeySpec("alice", scopes=ALL_TTS, rate_limit=RateLimit(1000, 60)))[1]


@pytest.fixture
def bob(key_service) -> str:
    return key_service.create(BOB, KeySpec("bob", scopes=ALL_TTS, rate_limit=RateLimit(1000, 60)))[1]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_done(app: TestClient, key: str, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = app.get(f"/api/voice/jobs/{job_id}", headers=auth(key)).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# ----- voices --------------------------------------------------------------------------------------


def test_voice_library_and_cloning_belong_to_their_owner(app: TestClient, alice: str, bob: str) -> None:
    voices = app.get("/api/voice/voices", headers=auth(alice)).json()["data"]
    assert [(v["id"], v["kind"], v["engine"]) for v in voices] == [(VOICE, "builtin", "piper")]
    assert voices[0]["name"] == "Joe (Piper, en-US, medium)" and voices[0]["sample_url"].endswith("/sample")

    created = app.post("/api/voice/voices", headers=auth(alice), data={"name": "My voice", "transcript": "hello"},
                       files={"audio": ("me.wav", clip(12), "audio/wav")})
    assert created.status_code == 201, created.text
    cloned = created.json()
    assert cloned["kind"] == "cloned" and cloned["engine"] == "fish"
    assert cloned["id"] in [v["id"] for v in app.get("/api/voice/voices", headers=auth(alice)).json()["data"]]
    assert cloned["id"] not in [v["id"] for v in app.get("/api/voice/voices", headers=auth(bob)).json()["data"]]
    sample = app.get(cloned["sample_url"], headers=auth(alice))
    samples, rate = decode(sample.content)
    assert sample.status_code == 200 and 11.5 < len(samples) / rate < 12.5, "stored trimmed and normalised"

    assert app.delete(f"/api/voice/voices/{cloned['id']}", headers=auth(bob)).status_code == 404
    assert app.get(cloned["sample_url"], headers=auth(bob)).status_code == 404
    assert app.delete(f"/api/voice/voices/{VOICE}", headers=auth(alice)).status_code == 403
    assert app.delete(f"/api/voice/voices/{cloned['id']}", headers=auth(alice)).status_code == 204
    assert app.get(cloned["sample_url"], headers=auth(alice)).status_code == 404


def test_a_builtin_sample_is_made_once_for_everyone_and_is_nobodys_history(app: TestClient, alice: str,
                                                                           bob: str) -> None:
    sample_url = app.get("/api/voice/voices", headers=auth(alice)).json()["data"][0]["sample_url"]
    first = app.get(sample_url, headers=auth(alice))
    assert first.status_code == 200 and first.headers["content-type"] == "audio/mpeg"
    again, other = app.get(sample_url, headers=auth(alice)), app.get(sample_url, headers=auth(bob))
    assert again.content == other.content == first.content, "one sample per voice, for everyone"
    for key in (alice, bob):
        assert app.get("/api/voice/jobs", headers=auth(key)).json()["data"] == [], "never in anyone's history"
    with Session(get_engine()) as session:
        assert session.exec(select(func.count()).select_from(Job)).one() == 1, "made once, played three times"


@pytest.mark.parametrize(("audio", "transcript", "status", "words"), [
    (b"this is a text file, not audio" * 50, "hi", 400, "not audio"),
    (clip(5), "hi", 422, "5.0 s of sound"),
    (clip(45), "hi", 422, "45.0 s of sound"),
    (b"\0" * (20 * 1024 * 1024), "hi", 413, "limit is 10 MB"),
    (clip(12), "   ", 422, "transcript"),
])
def test_clone_rejections_say_what_to_fix(app: TestClient, alice: str, audio, transcript, status, words) -> None:
    response = app.post("/api/voice/voices", headers=auth(alice), data={"name": "x", "transcript": transcript},
                        files={"audio": ("clip.wav", audio, "audio/wav")})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert [v["kind"] for v in app.get("/api/voice/voices", headers=auth(alice)).json()["data"]] == ["builtin"]


def test_cloned_voice_without_a_fish_worker_is_a_clear_503(app: TestClient, alice: str) -> None:
    cloned = app.post("/api/voice/voices", headers=auth(alice), data={"name": "v", "transcript": "hello"},
                      files={"audio": ("me.wav", clip(12), "audio/wav")}).json()
    response = app.post("/api/voice/jobs", headers=auth(alice), json={"text": "hi", "voice": cloned["id"]})
    assert response.status_code == 503 and "needs a cloning engine" in response.json()["error"]["message"]


# ----- jobs ----------------------------------------------------------------------------------------


def test_job_lifecycle_audio_with_ranges_and_history(app: TestClient, alice: str, bob: str) -> None:
    submitted = app.post("/api/voice/jobs", headers=auth(alice),
                         json={"text": "Hello from the jobs API. Two sentences.", "voice": VOICE, "format": "mp3"})
    assert submitted.status_code == 202
    job = submitted.json()
    assert job["status_url"] == f"/api/voice/jobs/{job['id']}" and job["audio_url"] is None
    done = wait_done(app, alice, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 100.0 and done["duration_s"] > 1

    audio = app.get(done["audio_url"], headers=auth(alice))
    assert audio.headers["content-type"] == "audio/mpeg"
    assert int(audio.headers["content-length"]) == len(audio.content)
    ranged = app.get(done["audio_url"], headers={**auth(alice), "Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == audio.content[100:200]
    assert app.get(done["audio_url"], headers=auth(bob)).status_code == 404
    assert app.get(f"/api/voice/jobs/{job['id']}", headers=auth(bob)).status_code == 404

    second = app.post("/api/voice/jobs", headers=auth(alice), json={"text": "Another one.", "voice": VOICE}).json()
    history = app.get("/api/voice/jobs?limit=1", headers=auth(alice)).json()
    assert [j["id"] for j in history["data"]] == [second["id"]] and history["next_cursor"] == second["id"]
    older = app.get(f"/api/voice/jobs?limit=1&cursor={history['next_cursor']}", headers=auth(alice)).json()
    assert [j["id"] for j in older["data"]] == [job["id"]]
    assert app.get("/api/voice/jobs", headers=auth(bob)).json()["data"] == []


def test_identical_requests_are_served_from_the_cache(app: TestClient, alice: str, bob: str) -> None:
    request = {"text": "Cache me if you can.", "voice": VOICE, "format": "wav"}
    first = wait_done(app, alice, app.post("/api/voice/jobs", headers=auth(alice), json=request).json()["id"])
    again = app.post("/api/voice/jobs", headers=auth(alice), json=request).json()
    assert again["status"] == "succeeded" and again["engine_time_s"] == 0.0, "answered without the engine"
    assert app.get(again["audio_url"], headers=auth(alice)).content == \
        app.get(first["audio_url"], headers=auth(alice)).content
    other_speed = app.post("/api/voice/jobs", headers=auth(alice), json={**request, "speed": 1.5}).json()
    # Not answered from the cache: the job was queued (an idle worker may already have started it).
    assert other_speed["status"] in ("queued", "running"), "a different request is not a cache hit"
    assert app.post("/api/voice/jobs", headers=auth(bob), json=request).json()["status"] in ("queued", "running"), \
        "the cache is per owner"


def test_job_errors(app: TestClient, alice: str, key_service) -> None:
    reader = key_service.create(ALICE, KeySpec("reader", scopes=("tts:read",)))[1]
    cases = [({"text": "", "voice": VOICE}, 422), ({"text": "x" * 4097, "voice": VOICE}, 422),
             ({"text": "hi", "voice": "nobody"}, 404), ({"text": "hi", "voice": VOICE, "format": "wma"}, 422),
             ({"text": "hi", "voice": VOICE, "speed": 9}, 422)]
    for body, status in cases:
        response = app.post("/api/voice/jobs", headers=auth(alice), json=body)
        assert response.status_code == status, body
        assert set(response.json()["error"]) == {"code", "message"}
    assert app.post("/api/voice/jobs", headers=auth(reader), json={"text": "hi", "voice": VOICE}).status_code == 403
    assert app.post("/api/voice/jobs", json={"text": "hi", "voice": VOICE}).status_code == 401
    assert app.get("/api/voice/jobs/job_missing", headers=auth(alice)).status_code == 404


# ----- OpenAI-compatible ---------------------------------------------------------------------------


def sdk(app: TestClient, key: str) -> OpenAI:
    """The official SDK, unchanged, talking to the app (TestClient is an httpx.Client)."""
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=app, max_retries=0)


def test_models_list_in_openai_schema(app: TestClient, alice: str) -> None:
    models = sdk(app, alice).models.list()
    assert {"tts-1", "tts-1-hd", "piper", "fish-speech"} <= {m.id for m in models.data}
    assert all(m.object == "model" and m.owned_by == "lockn" and m.created for m in models.data)
    unauthorised = app.get("/v1/models")
    assert unauthorised.status_code == 401
    assert set(unauthorised.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_sdk_speech_in_every_format(app: TestClient, alice: str, fmt: str) -> None:
    response = sdk(app, alice).audio.speech.create(model="tts-1", voice="alloy", input="Hello from LockN.",
                                                   response_format=fmt)
    data = response.read()
    if fmt == "pcm":
        samples, rate = np.frombuffer(data, "<i2").astype(np.float32) / 32768, 22050
    else:
        samples, rate = decode(data)
    assert rate == (24000 if fmt == "opus" else 22050)
    assert 0.5 < len(samples) / rate < 3.0 and float(np.abs(samples).max()) > 0.05


#: One frame of each lossy codec at the rates Piper speaks at (MP3 1152 samples, AAC 1024, Opus 20 ms) and a
#: little for the encoder's priming: how far a cached answer's length may be from the streamed one's.
ONE_FRAME_S = {"mp3": 0.06, "aac": 0.05, "opus": 0.03, "wav": 0.001, "flac": 0.001, "pcm": 0.001}


def heard(data: bytes, fmt: str) -> tuple[int, float, float, float]:
    """(rate, seconds, kbit/s, peak) of an answer, as a player would decode it."""
    if fmt == "pcm":
        samples, rate = np.frombuffer(data, "<i2").astype(np.float32) / 32768, 22050
    else:
        import av

        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            rate = stream.rate
            samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(stream)])
        if np.issubdtype(samples.dtype, np.integer):  # WAV and FLAC decode to 16-bit integers
            samples = samples.astype(np.float32) / 32768
    seconds = len(samples) / rate
    return rate, seconds, len(data) * 8 / seconds / 1000, float(np.abs(samples).max())


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "wav", "flac", "pcm"])
def test_a_cached_answer_sounds_like_the_fresh_one(app: TestClient, alice: str, fmt: str) -> None:
    """The first answer is streamed as it is spoken; the same request again comes from the cached file.
    Both must have the same rate, bit rate and length (within one frame), and neither may clip."""
    request = {"model": "tts-1", "voice": "alloy", "response_format": fmt,
               "input": "Loud and clear! Every answer should sound the same, fresh or cached."}
    fresh = app.post("/v1/audio/speech", headers=auth(alice), json=request)
    newest = app.get("/api/voice/jobs?limit=1", headers=auth(alice)).json()["data"][0]
    wait_done(app, alice, newest["id"])  # the stream ends once spoken; its file is stored a moment later
    cached = app.post("/v1/audio/speech", headers=auth(alice), json=request)
    assert app.get("/api/voice/jobs?limit=1", headers=auth(alice)).json()["data"][0]["engine_time_s"] == 0.0
    assert fresh.status_code == cached.status_code == 200
    (rate, seconds, kbps, peak), (cached_rate, cached_seconds, cached_kbps, cached_peak) = \
        heard(fresh.content, fmt), heard(cached.content, fmt)
    assert cached_rate == rate
    assert abs(cached_seconds - seconds) <= ONE_FRAME_S[fmt], (seconds, cached_seconds)
    assert abs(cached_kbps - kbps) <= 0.1 * kbps, (kbps, cached_kbps)
    print(f"{fmt}: {rate} Hz, {seconds:.3f} s vs {cached_seconds:.3f} s, {kbps:.1f} vs {cached_kbps:.1f} kbit/s, "
          f"peak {peak:.3f} vs {cached_peak:.3f}")
    assert peak <= 1.0 and cached_peak <= 1.0, (peak, cached_peak)


def test_sdk_streaming_response(app: TestClient, alice: str) -> None:
    text = "First sentence streams early. The second follows. And a third one ends it."
    with sdk(app, alice).audio.speech.with_streaming_response.create(
            model="tts-1", voice=VOICE, input=text, response_format="wav") as response:
        chunks = [chunk for chunk in response.iter_bytes() if chunk]
    samples, rate = decode(b"".join(chunks))
    assert len(chunks) >= 3 and len(samples) / rate > 3


def test_sse_stream_format(app: TestClient, alice: str) -> None:
    response = app.post("/v1/audio/speech", headers=auth(alice),
                        json={"model": "tts-1", "voice": "nova", "input": "Events. More events.",
                              "response_format": "pcm", "stream_format": "sse"})
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(audio) / 2 / 22050 > 1 and events[-1]["usage"]["input_tokens"] == len("Events. More events.")
    # LockN's extension: each sentence's place in the audio (exact for PCM) and its words' estimated times.
    sentences = [segment for e in events for segment in e.get("lockn_timestamps", [])]
    assert [segment["text"] for segment in sentences] == ["Events.", "More events."]
    assert sentences[0]["start"] == 0 and sentences[0]["end"] == sentences[1]["start"]
    assert abs(sentences[-1]["end"] - len(audio) / 2 / 22050) < 0.002
    words = [word for segment in sentences for word in segment["words"]]
    assert [w["text"] for w in words] == ["Events.", "More", "events."]
    assert all(a["end"] <= b["start"] + 1e-9 and a["start"] < a["end"] for a, b in zip(words, words[1:]))


def test_sse_timestamps_in_a_buffered_codec(app: TestClient, alice: str) -> None:
    """MP3 holds audio back between chunks; every sentence still arrives, in order, on a delta with audio."""
    response = app.post("/v1/audio/speech", headers=auth(alice),
                        json={"model": "tts-1", "voice": "nova", "input": "One here. Two there. Three everywhere.",
                              "response_format": "mp3", "stream_format": "sse"})
    deltas = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")][:-1]
    assert all(base64.b64decode(d["audio"]) for d in deltas)
    sentences = [segment for d in deltas for segment in d.get("lockn_timestamps", [])]
    assert [segment["text"] for segment in sentences] == ["One here.", "Two there.", "Three everywhere."]
    assert [s["start"] for s in sentences[1:]] == [s["end"] for s in sentences[:-1]]


def test_speech_errors_in_openai_envelope(app: TestClient, alice: str, key_service) -> None:
    reader = key_service.create(ALICE, KeySpec("reader", scopes=("tts:read",)))[1]
    limited = key_service.create(ALICE, KeySpec("limited", scopes=ALL_TTS, rate_limit=RateLimit(1, 60)))[1]
    ok = {"model": "tts-1", "voice": "alloy", "input": "hi"}
    cases = [(alice, {**ok, "model": "tts-9"}, 404, "model"), (alice, {**ok, "voice": "nobody"}, 404, "voice"),
             (alice, {**ok, "input": "x" * 4097}, 400, "input"), (alice, {**ok, "response_format": "wma"}, 400,
                                                                     "response_format"),
             (alice, {**ok, "speed": 5}, 400, "speed"), (reader, ok, 403, None), ("lk_live_bad", ok, 401, None)]
    for key, body, status, param in cases:
        response = app.post("/v1/audio/speech", headers=auth(key), json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        if param:
            assert error["param"] == param
    assert app.post("/v1/audio/speech", headers=auth(limited), json=ok).status_code == 200
    refused = app.post("/v1/audio/speech", headers=auth(limited), json=ok)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_usage_is_recorded_on_the_key(app: TestClient, alice: str, key_service) -> None:
    text = "Count these characters."
    sdk(app, alice).audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav").read()
    key_service.usage.flush()
    key_id = key_service.verify(alice, count=False).id
    (today,) = key_service.usage_series(ALICE, key_id, days=1)
    assert today["requests"] == 1 and today["chars"] == len(text)


# ----- Open WebUI's calls --------------------------------------------------------------------------


def test_every_openai_voice_maps_to_a_real_voice(app: TestClient) -> None:
    listed = {v["id"] for v in app.get("/v1/audio/voices").json()["voices"]}
    assert set(voice_map()) == set(OPENAI_VOICES)
    assert set(voice_map().values()) <= listed


def test_open_webui_lists_without_a_key(app: TestClient, alice: str) -> None:
    models = app.get("/v1/audio/models")
    voices = app.get("/v1/audio/voices")
    assert models.status_code == voices.status_code == 200
    assert {"tts-1", "piper"} <= {m["id"] for m in models.json()["models"]}
    assert all(isinstance(v, dict) and v["id"] and v["name"] for v in voices.json()["voices"])
    for voice in voices.json()["voices"]:
        spoken = app.post("/v1/audio/speech", headers=auth(alice),
                          json={"model": "tts-1", "input": "Hi.", "voice": voice["id"]})
        assert spoken.status_code == 200, voice


def test_a_quota_holds_under_concurrent_requests_and_flushes(app: TestClient, key_service) -> None:
    """Ten 30-character requests at once against a 100-character quota: three fit, seven are refused (429),
    and a flush of the usage buffer in between gives nothing back (issue 16, finding 4)."""
    import asyncio

    import httpx

    from tests.conftest import run_async

    key = key_service.create(ALICE, KeySpec("quota", scopes=ALL_TTS, rate_limit=RateLimit(1000, 60),
                                            quota_chars=100))[1]

    async def burst(texts: list[str]) -> list[int]:
        transport = httpx.ASGITransport(app=app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lockn.test", timeout=60) as http:
            answers = await asyncio.gather(*[http.post("/api/voice/jobs", headers=auth(key), json={
                "text": text, "voice": VOICE, "format": "wav"}) for text in texts])
        return [answer.status_code for answer in answers]

    texts = [f"Thirty characters, number {n:03d}." for n in range(10)]
    assert {len(text) for text in texts} == {30}
    statuses = run_async(burst(texts))
    assert sorted(statuses) == [202] * 3 + [429] * 7, statuses
    key_service.usage.flush()
    key_service.cache.invalidate(key_service.verify(key, count=False).id)
    assert run_async(burst(["Ten chars!"])) == [202], "90 used of 100: ten more fit"
    refused = app.post("/api/voice/jobs", headers=auth(key), json={"text": "x", "voice": VOICE})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exceeded", refused.text


def test_speech_carries_rate_limit_headers_and_numbers_read_as_a_person_expects(app: TestClient, alice: str,
                                                                                key_service) -> None:
    """Issue 17, point 6: rate-limit headers on speech answers too; job times in UTC with `Z`; usage counts
    are whole numbers."""
    speech = app.post("/v1/audio/speech", headers=auth(alice), json={"model": "tts-1", "voice": VOICE,
                                                                      "input": "Headers, please.",
                                                                      "response_format": "wav"})
    assert speech.status_code == 200 and speech.headers["X-RateLimit-Limit"] == "1000"
    job = app.post("/api/voice/jobs", headers=auth(alice), json={"text": "What time is it?", "voice": VOICE}).json()
    assert job["created_at"].endswith(("Z", "+00:00")), job["created_at"]
    key_service.usage.flush()
    admin = key_service.create(ALICE, KeySpec("reader", scopes=("keys:read",)))[1]
    listed = app.get("/api/keys", headers=auth(admin)).json()["data"]
    usage = next(k["usage"] for k in listed if k["usage"] and k["usage"]["requests"])
    assert isinstance(usage["requests"], int) and isinstance(usage["chars"], int), usage


def test_v1_errors_speak_openais_language(app: TestClient, alice: str, key_service) -> None:
    """Issue 17, point 6: whitespace input names `input`; a body that is not JSON says so; 429 is
    `rate_limit_exceeded`."""
    blank = app.post("/v1/audio/speech", headers=auth(alice), json={"model": "tts-1", "voice": VOICE, "input": "   "})
    assert blank.status_code == 400 and blank.json()["error"]["param"] == "input", blank.text
    garbled = app.post("/v1/audio/speech", headers={**auth(alice), "Content-Type": "application/json"},
                       content=b"{not json")
    assert garbled.status_code == 400 and garbled.json()["error"]["message"] == "The request body is not valid JSON."
    assert garbled.json()["error"]["param"] is None
    limited = key_service.create(ALICE, KeySpec("one a minute", scopes=ALL_TTS, rate_limit=RateLimit(1, 60)))[1]
    app.get("/v1/models", headers=auth(limited))
    refused = app.get("/v1/models", headers=auth(limited)).json()["error"]
    assert (refused["code"], refused["type"]) == ("rate_limit_exceeded", "requests"), refused
