"""Issue 28: every strange text gets a clear answer, never a 500. One test per row of the issue's table, through
the real app, database, queue and Piper worker, plus the text rule itself (`backend/services/jobs/text_input.py`).

Each route test ran against the code before the fix and failed there: NUL and zero-width texts answered 500,
`captions.vtt` of a text with `-->` answered 500 and its SRT carried a forged timing line, a JSON line nested
200,000 deep answered 500 (RecursionError), a webhook URL with `\\r\\n` and a header after it was stored (201).
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile

import pytest
import soundfile as sf
import srt
import webvtt
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Batch, BatchLine, Job, WebhookEndpoint
from backend.services.keys.service import SCOPES, KeySpec, RateLimit

OWNER = "auth0|strange"
VOICE = "en_US-joe-medium"
#: A line that reads as an SRT or VTT timing line.
TIMING_LINE = re.compile(r"^\s*\d{1,2}:\d\d(:\d\d)?[,.]\d{3}\s*-->", re.MULTILINE)
#: A caption text built to forge a cue: an arrow, a blank line, an index and a timing line of its own.
FORGERY = "Look --> here.\n\n7\n00:00:01,000 --> 00:00:09,000\nInjected cue."


# ----- the rule --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, cleaned", [
    ("Hello\x00 world", "Hello world"),  # NUL and other C0 controls are removed
    ("one\r\ntwo\rthree\x85four\u2028five\x0csix", "one\ntwo\nthree\nfour\nfive\nsix"),  # every line break is \n
    ("tab\tkept\x7f\x9b\x1f", "tab\tkept"),  # tab stays; DEL and C1 go
    ("cafe\u0301", "caf\u00e9"),  # NFC
    ("lone \ud800surrogate", "lone surrogate"),
    ("zero\u200bwidth inside", "zero\u200bwidth inside"),  # invisible characters between letters stay (ZWJ, ZWNJ)
])
def test_text_is_cleaned_by_one_stated_rule(raw: str, cleaned: str) -> None:
    from backend.services.jobs.text_input import speakable_text

    assert speakable_text(raw) == cleaned


@pytest.mark.parametrize("raw, words", [
    ("\u200b\u200b\u200b", "only invisible characters such as U+200B ZERO WIDTH SPACE"),
    ("\ufeff\u2060", "U+FEFF"),
    ("\x00\x00", "only control characters"),
    (" \n\t\u00a0", "only whitespace"),
    ("?!... \u2014", "only punctuation"),
    ("\u0301\u0301", "only combining marks"),
])
def test_text_with_nothing_speakable_is_refused_saying_why(raw: str, words: str) -> None:
    from backend.services.jobs.text_input import UnspeakableText, speakable_text

    with pytest.raises(UnspeakableText, match=re.escape(words)) as refused:
        speakable_text(raw)
    assert refused.value.code == "empty_text" and "nothing to speak" in str(refused.value)


def test_cue_text_never_reads_as_a_timing_line_or_a_separator() -> None:
    from backend.media.captions import captions_document, to_json, to_srt, to_vtt

    document = captions_document([(FORGERY, 22050), ("Tom & Jerry <3 --->", 11025)], 22050)
    subtitles = list(srt.parse(to_srt(document)))
    assert [s.content for s in subtitles] == ["Look → here. 7 00:00:01,000 → 00:00:09,000 Injected cue.",
                                              "Tom & Jerry <3 →"]
    assert len(TIMING_LINE.findall(to_srt(document))) == 2
    vtt = to_vtt(document)
    assert len(TIMING_LINE.findall(vtt)) == 2 and "&amp; Jerry &lt;3" in vtt
    assert [c.text for c in webvtt.from_buffer(io.StringIO(vtt))][1] == "Tom &amp; Jerry &lt;3 →"
    # a document stored before the rule is rewritten as it is served, in all three formats
    stored = {"sentences": [{"start": 0.0, "end": 1.0, "text": FORGERY}],
              "words": [{"start": 0.0, "end": 1.0, "text": "-->"}]}
    assert "-->" not in json.dumps(to_json(stored)) and len(TIMING_LINE.findall(to_srt(stored))) == 1
    assert len(TIMING_LINE.findall(to_vtt(stored))) == 1
    # a sentence that gave no audio has no cue, in every format alike (SRT's writer drops it, VTT's kept it)
    silent = captions_document([("Hi.", 2205), ("\u2103", 0), ("Bye.", 2205)], 22050)
    assert [c["text"] for c in to_json(silent)["sentences"]] == ["Hi.", "Bye."]
    assert len(list(srt.parse(to_srt(silent)))) == len(list(webvtt.from_buffer(io.StringIO(to_vtt(silent))))) == 2


def test_a_json_line_nested_200000_deep_is_refused_naming_it(key_service) -> None:
    key = key_service.create(OWNER, KeySpec("batch", scopes=("tts:read", "tts:write")))[1]
    client = TestClient(build_api(), raise_server_exceptions=False)
    deep = b'{"text": "Fine.", "voice": "v"}\n{"text": ' + b"[" * 200_000 + b"]" * 200_000 + b', "voice": "v"}\n'
    refused = client.post("/api/voice/batches", content=deep,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"})
    assert refused.status_code == 422, refused.text[:300]
    assert "line 2 nests deeper than" in refused.json()["error"]["message"]
    nested_in_a_string = b'{"text": "[[[[{{{{ \\" ]]] said the robot", "voice": "v"}\n'
    assert refused.status_code == 422 and _batch_rows() == (0, 0)
    from backend.services.jobs.batches import parse_batch

    assert parse_batch(nested_in_a_string)[0].text == '[[[[{{{{ " ]]] said the robot'


def test_a_webhook_url_with_a_line_break_or_a_broken_host_is_refused(key_service) -> None:
    key = key_service.create(OWNER, KeySpec("admin", scopes=("keys:read", "keys:write")))[1]
    client = TestClient(build_api(), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"}
    for url, words in [("http://127.0.0.1:9/hook\r\nX-Injected: yes", "U+000D"),
                       ("http://127.0.0.1:9/a b", "U+0020 SPACE at character 21"),
                       ("http://127.0.0.1:9/\u202egnp.exe", "U+202E"),
                       ("http://[::1/hook", "cannot be read")]:
        refused = client.post("/api/webhooks", headers=headers, json={"url": url, "events": ["job.succeeded"]})
        assert refused.status_code == 422, (url, refused.status_code, refused.text[:300])
        assert words in refused.json()["error"]["message"]
    with Session(get_engine()) as session:
        assert session.exec(select(func.count()).select_from(WebhookEndpoint)).one() == 0, "nothing was stored"
    kept = client.post("/api/webhooks", headers=headers, json={"url": "  http://127.0.0.1:9/hook\n",
                                                               "events": ["job.succeeded"]})
    assert kept.status_code == 201 and kept.json()["url"] == "http://127.0.0.1:9/hook", "outer whitespace is trimmed"


def test_an_id_with_a_nul_is_not_found_not_a_database_outage(key_service) -> None:
    key = key_service.create(OWNER, KeySpec("reader", scopes=tuple(SCOPES)))[1]
    client = TestClient(build_api(), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"}
    for path in ("/api/voice/jobs/job_%00/captions.srt", "/api/voice/batches/batch_%00", "/api/voice/jobs?cursor=%00",
                 "/api/keys/key_%00"):
        answer = client.get(path, headers=headers)
        assert answer.status_code in (404, 422), (path, answer.status_code, answer.text[:300])


# ----- through the worker ----------------------------------------------------------------------------------


def _job_count() -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(Job)).one()


def _batch_rows() -> tuple[int, int]:
    with Session(get_engine()) as session:
        return (session.exec(select(func.count()).select_from(Batch)).one(),
                session.exec(select(func.count()).select_from(BatchLine)).one())


def _wait(client: TestClient, path: str, headers: dict[str, str], running: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 60
    while (state := client.get(path, headers=headers).json())["status"] in running:
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def test_strange_texts_get_clear_answers_through_the_api(worker, key_service) -> None:
    key = key_service.create(OWNER, KeySpec("strange", scopes=tuple(SCOPES), rate_limit=RateLimit(1000, 60),
                                            max_concurrent_jobs=20))[1]
    headers = {"Authorization": f"Bearer {key}"}
    client = TestClient(build_api(), raise_server_exceptions=False)

    # NUL bytes: removed, the rest is spoken (was 500 "synthesis failed: ValueError")
    spoken = client.post("/v1/audio/speech", headers=headers, json={
        "model": "tts-1", "input": "Hello\x00 world.", "voice": VOICE, "response_format": "wav"})
    assert spoken.status_code == 200, spoken.text[:300]
    assert sf.read(io.BytesIO(spoken.content))[0].size > 0
    queued = client.post("/api/voice/jobs", headers=headers, json={"text": "Null\x00 bytes\x00.", "voice": VOICE})
    assert queued.status_code == 202, queued.text[:300]
    assert queued.json()["text"] == "Null bytes." and queued.json()["text_chars"] == len("Null bytes.")
    assert _wait(client, f"/api/voice/jobs/{queued.json()['id']}", headers, ("queued", "running"))["status"] == \
        "succeeded"

    # only zero-width characters: 422 / 400 `empty_text`, nothing written (was 500 "engine produced no audio")
    before = _job_count()
    empty = client.post("/api/voice/jobs", headers=headers, json={"text": "\u200b\u200b\u200b", "voice": VOICE})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_text", empty.text[:300]
    assert "ZERO WIDTH SPACE" in empty.json()["error"]["message"]
    openai = client.post("/v1/audio/speech", headers=headers, json={"model": "tts-1", "input": "\u200b\u2060",
                                                                     "voice": VOICE})
    assert openai.status_code == 400 and openai.json()["error"]["code"] == "empty_text", openai.text[:300]
    assert openai.json()["error"]["param"] == "input"
    assert _job_count() == before, "a refused text leaves no row"
    for voice in ("cloned_\x00x", "en_US\x00"):  # a voice id with a NUL is no voice (PostgreSQL: was a 503)
        unknown = client.post("/api/voice/jobs", headers=headers, json={"text": "Hi.", "voice": voice})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "voice_not_found", unknown.text[:300]
    from backend.services.jobs.service import InvalidJobRequest, enqueue_synthesis

    with pytest.raises(InvalidJobRequest) as studio:  # the Studio's door: the same rule, the same code
        enqueue_synthesis(OWNER, "\u200b", VOICE)
    assert studio.value.code == "empty_text"

    # the same SSE request twice: the second is a cache hit, with no live stream to follow (it waited out the job's
    # time limit, 10 min, then answered 500; the property test found it): its stored audio comes as events
    def sse_audio() -> bytes:
        answer = client.post("/v1/audio/speech", headers=headers, json={
            "model": "tts-1", "input": "Twice, the same.", "voice": VOICE, "response_format": "wav",
            "stream_format": "sse"})
        assert answer.status_code == 200, answer.text[:300]
        events = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
        assert events[-1]["type"] == "speech.audio.done"
        return b"".join(base64.b64decode(event["audio"]) for event in events[:-1])

    fresh, cached = sse_audio(), sse_audio()
    assert sf.read(io.BytesIO(cached))[0].size == sf.read(io.BytesIO(fresh))[0].size > 0

    # letters the voice cannot read: the job fails, and a client waiting for its audio hears why (not 500)
    unreadable = client.post("/v1/audio/speech", headers=headers, json={"model": "tts-1", "input": "\u2103",
                                                                          "voice": VOICE})
    assert unreadable.status_code == 400, unreadable.text[:300]
    assert unreadable.json()["error"]["code"] == "unspeakable_text"

    # `-->` and a forged timing line: every caption format answers, and no line of a cue reads as timing
    made = client.post("/api/voice/jobs", headers=headers, json={"text": FORGERY, "voice": VOICE, "captions": True})
    assert made.status_code == 202, made.text[:300]
    job = made.json()["id"]
    assert _wait(client, f"/api/voice/jobs/{job}", headers, ("queued", "running"))["status"] == "succeeded"
    sentences = client.get(f"/api/voice/jobs/{job}/captions.json", headers=headers).json()["sentences"]
    assert "-->" not in json.dumps(sentences)
    vtt = client.get(f"/api/voice/jobs/{job}/captions.vtt", headers=headers)
    assert vtt.status_code == 200, vtt.text[:300]
    assert len(list(webvtt.from_buffer(io.StringIO(vtt.text)))) == len(sentences)
    assert len(TIMING_LINE.findall(vtt.text)) == len(sentences)
    srt_text = client.get(f"/api/voice/jobs/{job}/captions.srt", headers=headers).text
    assert len(TIMING_LINE.findall(srt_text)) == len(list(srt.parse(srt_text))) == len(sentences)

    # … and inside a batch's archive
    batch = client.post("/api/voice/batches?captions=true", headers={**headers, "Content-Type": "text/csv"},
                        content=f'id,text,voice\nforged,"{FORGERY}",{VOICE}\n'.encode())
    assert batch.status_code == 202, batch.text[:300]
    state = _wait(client, f"/api/voice/batches/{batch.json()['id']}", headers, ("running",))
    assert state["done"] == 1, state
    archive = zipfile.ZipFile(io.BytesIO(client.get(batch.json()["archive_url"], headers=headers).content))
    archived = archive.read("forged.srt").decode()
    assert len(TIMING_LINE.findall(archived)) == len(list(srt.parse(archived))) == len(sentences)
