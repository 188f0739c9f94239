"""Captions (issue 20, first part): sentence times exact from the engine's own sentence chunks, word times
estimated and monotonic; SRT and VTT parse with their libraries and cover the audio without overlaps."""

from __future__ import annotations

import io
import time

import soundfile as sf
import srt
import webvtt
from fastapi.testclient import TestClient

from backend.api import build_api
from backend.media.captions import captions_document, word_cues, Cue
from backend.services.keys.service import KeySpec

TEXT = ("Captions make speech easy to follow. Each sentence gets its own cue! "
        "Words are timed within their sentence, by their share of its letters.")


def test_word_times_share_their_sentence_and_never_go_back() -> None:
    words = word_cues(Cue(1.0, 3.0, "One two three four."))
    assert [w.text for w in words] == ["One", "two", "three", "four."]
    assert words[0].start == 1.0 and words[-1].end == 3.0
    assert all(a.end == b.start and a.start < a.end for a, b in zip(words, words[1:]))
    document = captions_document([("Hi.", 2205), ("Bye now.", 4410)], 22050)
    assert [(c["start"], c["end"]) for c in document["sentences"]] == [(0.0, 0.1), (0.1, 0.3)]
    assert document["words_are"] == "estimated" and document["sentences_are"] == "exact"


def test_a_job_with_captions_serves_json_srt_and_vtt_that_cover_its_audio(worker, key_service) -> None:
    key = key_service.create("auth0|captions", KeySpec("captions"))[1]
    headers = {"Authorization": f"Bearer {key}"}
    client = TestClient(build_api())
    made = client.post("/api/voice/jobs", headers=headers,
                       json={"text": TEXT, "voice": "en_US-joe-medium", "format": "wav", "captions": True})
    assert made.status_code == 202 and made.json()["captions"] is True, made.text
    job = made.json()["id"]
    early = client.get(f"/api/voice/jobs/{job}/captions.json", headers=headers)
    deadline = time.monotonic() + 60
    while client.get(f"/api/voice/jobs/{job}", headers=headers).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert early.status_code in (200, 409)
    audio, rate = sf.read(io.BytesIO(client.get(f"/api/voice/jobs/{job}/audio", headers=headers).content))
    duration = len(audio) / rate

    document = client.get(f"/api/voice/jobs/{job}/captions.json", headers=headers).json()
    sentences, words = document["sentences"], document["words"]
    assert [s["text"] for s in sentences] == ["Captions make speech easy to follow.", "Each sentence gets its own cue!",
                                              "Words are timed within their sentence, by their share of its letters."]
    assert sentences[0]["start"] == 0 and abs(sentences[-1]["end"] - duration) < 0.002  # to the sample
    assert all(a["end"] <= b["start"] for a, b in zip(sentences, sentences[1:]))
    assert all(a["start"] <= a["end"] <= b["start"] for a, b in zip(words, words[1:])), "word times never go back"
    assert len(words) == len(TEXT.split())

    subtitles = list(srt.parse(client.get(f"/api/voice/jobs/{job}/captions.srt", headers=headers).text))
    assert [s.content for s in subtitles] == [s["text"] for s in sentences]
    assert abs(subtitles[-1].end.total_seconds() - duration) < 0.002
    assert all(a.end <= b.start for a, b in zip(subtitles, subtitles[1:]))
    vtt = client.get(f"/api/voice/jobs/{job}/captions.vtt", headers=headers)
    assert vtt.headers["content-type"].startswith("text/vtt")
    cues = list(webvtt.from_buffer(io.StringIO(vtt.text)))
    assert [c.text for c in cues] == [s["text"] for s in sentences]
    hours, minutes, seconds = cues[-1].end.split(":")  # (webvtt-py's end_in_seconds drops the milliseconds)
    assert abs(int(hours) * 3600 + int(minutes) * 60 + float(seconds) - duration) < 0.002

    without = client.post("/api/voice/jobs", headers=headers, json={"text": "No captions here.",
                                                                     "voice": "en_US-joe-medium"}).json()["id"]
    refused = client.get(f"/api/voice/jobs/{without}/captions.srt", headers=headers)
    assert refused.status_code == 409 and "without captions" in refused.json()["error"]["message"]
    stranger = key_service.create("auth0|stranger", KeySpec("stranger"))[1]
    assert client.get(f"/api/voice/jobs/{job}/captions.json",
                      headers={"Authorization": f"Bearer {stranger}"}).status_code == 404
