"""Property-based (Hypothesis): arbitrary Unicode text and JSON over the speech, jobs, captions and batches routes.

Through the real app, PostgreSQL (the stricter database: it refuses NUL), the queue and a Piper worker, every
generated request must get a clear answer: never a 500, never a stack trace, an error that is the API's JSON
envelope with a message; a refused request writes no row, an accepted one writes a whole one (a job's stored
text is the cleaned text; a batch has all of its lines); no partial file is left behind; and every caption file
the jobs made parses back with one timing line per cue.

CI runs `LOCKN_FUZZ_EXAMPLES` examples per route (default 50, derandomized, so a run is reproducible). A longer
local run: `LOCKN_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/test_input_fuzz.py -q` (random seeds).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest
import srt
import webvtt
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import Session, func, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Batch, BatchLine, Job
from backend.core.settings import get_settings
from backend.media.codecs import FORMATS
from backend.services.keys.service import SCOPES, KeySpec, RateLimit

MAX_EXAMPLES = int(os.environ.get("LOCKN_FUZZ_EXAMPLES", "50"))
VOICE = "en_US-joe-medium"
#: What broke something once, or could: mixed into the generated text so each example meets some of it.
TRICKY = ["-->", "--->", "\x00", "\u200b", "\u2060", "\ufeff", "\r\n", "\r", "\n\n", "\x85", "\u2028", "\t",
          "00:00:01,000 --> 00:00:09,000", "\n1\n", "&amp;", "<b>", "<v Roger>", "e\u0301", "\ud800", "\udfff",
          "\x1b[31m", "\x7f", "\u202e", "NOTE", "WEBVTT", "\u2103", "\U0001f600", "{", "[[[", '"', "\\"]
#: Every code point but the unassigned; lone surrogates included (JSON can carry them, as `\\ud800`).
CHARACTERS = st.characters(exclude_categories=["Cn"])
TEXTS = st.lists(st.one_of(st.text(CHARACTERS, max_size=12), st.sampled_from(TRICKY)), max_size=6).map("".join)
#: Text to speak: arbitrary and tricky pieces around words, so that many examples get past the rule and are spoken.
SPOKEN = st.lists(st.one_of(st.text(CHARACTERS, max_size=12), st.sampled_from(TRICKY),
                            st.sampled_from(["Hello", " world. ", "Captions", "-->", "here.\n"])),
                  min_size=1, max_size=6).map("".join)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXTS)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
                           max_leaves=8)
VOICES = st.one_of(st.just(VOICE), st.just(VOICE), st.sampled_from(["alloy", "nova", "cloned_x"]), TEXTS)
FORMAT_NAMES = st.one_of(st.sampled_from(list(FORMATS)), st.sampled_from(list(FORMATS)), TEXTS)
TRACE_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages")
TIMING_LINE = re.compile(r"^\s*\d{1,2}:\d\d(:\d\d)?[,.]\d{3}\s*-->", re.MULTILINE)


def fuzzing(examples: int = MAX_EXAMPLES) -> Callable:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=examples <= 50,
                    suppress_health_check=list(HealthCheck))


def as_json(value: object) -> bytes:
    """JSON as a client may send it: ASCII-escaped, so a lone surrogate travels as `\\udXXX`."""
    return json.dumps(value).encode()


def count(model: type) -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def clear_answer(response: httpx.Response) -> None:
    """Not a 500, no stack trace, and an error is the API's envelope with a message a person can read."""
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text[:500])
    assert not any(mark in response.text for mark in TRACE_MARKS), response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"], error


def cleaned(text: str) -> bool:
    """What a stored text must be: no control character but tab and newline, no lone surrogate, NFC."""
    return (not any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n" for c in text)
            and unicodedata.is_normalized("NFC", text))


speech_bodies = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(["tts-1", "gpt-4o-mini-tts"]), "input": SPOKEN, "voice": VOICES},
                          optional={"response_format": st.sampled_from(["wav", "mp3", "pcm", "flac"]),
                                    "stream_format": st.sampled_from(["audio", "sse"]), "speed": st.floats(0.25, 4.0),
                                    "instructions": TEXTS}),
    JSON_VALUES)
job_bodies = st.one_of(
    st.fixed_dictionaries({"text": SPOKEN, "voice": VOICES, "captions": st.sampled_from([True, False])},
                          optional={"format": FORMAT_NAMES, "instructions": TEXTS,
                                    "speed": st.floats(0.2, 4.5), "engine": st.none() | TEXTS}),
    JSON_VALUES)
batch_lines = st.lists(st.fixed_dictionaries({"text": SPOKEN, "voice": VOICES}, optional={
    "id": st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), TEXTS, st.none()),
    "format": FORMAT_NAMES}),
    min_size=1, max_size=3)
batch_files = st.one_of(
    batch_lines.map(lambda rows: b"\n".join(as_json(row) for row in rows)),
    batch_lines.map(lambda rows: ("id,text,voice\n" + "".join(
        f'{row.get("id", "")},"{row["text"].replace(chr(34), chr(34) * 2)}",{row["voice"]}\n' for row in rows))
        .encode("utf-8", "surrogatepass")),
    st.integers(1, 5000).map(lambda depth: b'{"text": ' + b"[" * depth + b"]" * depth + b', "voice": "x"}'),
    st.lists(JSON_VALUES, min_size=1, max_size=3).map(lambda values: b"\n".join(as_json(v) for v in values)),
    st.binary(max_size=200))


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_arbitrary_text_and_json_always_get_a_clear_answer(worker, key_service) -> None:
    key = key_service.create("auth0|fuzz", KeySpec("fuzz", scopes=tuple(SCOPES), rate_limit=RateLimit(1_000_000, 60),
                                                   max_concurrent_jobs=100))[1]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    client = TestClient(build_api(), raise_server_exceptions=False)
    with_captions: list[str] = []
    seen: Counter[str] = Counter()

    def answered(route: str, answer: httpx.Response) -> httpx.Response:
        clear_answer(answer)
        code = answer.json()["error"]["code"] if answer.status_code >= 400 else ""
        seen[f"{route} {answer.status_code} {code}".strip()] += 1
        return answer

    @fuzzing()
    @given(body=speech_bodies)
    def speech(body: object) -> None:
        before = count(Job)
        answer = answered("speech", client.post("/v1/audio/speech", headers=headers, content=as_json(body)))
        if 400 <= answer.status_code < 500 and answer.json()["error"]["code"] != "unspeakable_text":
            assert count(Job) == before, "a refused request left a row"

    @fuzzing()
    @given(body=job_bodies)
    def jobs(body: object) -> None:
        before = count(Job)
        answer = answered("jobs", client.post("/api/voice/jobs", headers=headers, content=as_json(body)))
        if answer.status_code != 202:
            assert count(Job) == before, "a refused request left a row"
            return
        made = answer.json()
        assert cleaned(made["text"]) and made["text_chars"] == len(made["text"]) and made["text"].strip()
        with Session(get_engine()) as session:
            assert session.get(Job, made["id"]).text == made["text"]
        if made["captions"]:
            with_captions.append(made["id"])

    @fuzzing()
    @given(data=batch_files, content_type=st.sampled_from(["application/x-ndjson", "text/csv"]))
    def batches(data: bytes, content_type: str) -> None:
        before = (count(Batch), count(BatchLine))
        answer = answered("batches", client.post("/api/voice/batches", headers={**headers, "Content-Type": content_type},
                                                 content=data))
        if answer.status_code != 202:
            assert (count(Batch), count(BatchLine)) == before, "a refused batch left rows"
            return
        total = answer.json()["total"]
        assert (count(Batch), count(BatchLine)) == (before[0] + 1, before[1] + total), "a batch is all its lines"
        with Session(get_engine()) as session:
            assert all(cleaned(line.text) for line in session.exec(
                select(BatchLine).where(BatchLine.batch_id == answer.json()["id"])).all())

    speech()
    jobs()

    @fuzzing()
    @given(job_id=st.one_of(TEXTS.filter(lambda t: "/" not in t), st.sampled_from(with_captions or ["job_0"])),
           fmt=st.sampled_from(["json", "srt", "vtt", "txt"]))
    def captions(job_id: str, fmt: str) -> None:
        path = f"/api/voice/jobs/{quote(job_id.encode('utf-8', 'surrogatepass'), safe='')}/captions.{fmt}"
        answered("captions", client.get(path, headers=headers))

    captions()  # ids of jobs made above (possibly still running: 409, never 500) and made-up ones
    batches()
    every_caption_file_parses(client, headers, with_captions)
    data_dir = get_settings().data_dir
    assert not [path for path in data_dir.rglob("*.part")], "a partial file was left behind"
    print(f"\nfuzzed {MAX_EXAMPLES} examples per route; {len(with_captions)} jobs with captions checked; answers:")
    print("\n".join(f"  {count_:5d}  {answer}" for answer, count_ in sorted(seen.items())))


def every_caption_file_parses(client: TestClient, headers: dict[str, str], job_ids: list[str]) -> None:
    """Once the jobs have ended: each caption format of each answers, and parses back with one timing line per cue."""
    deadline = time.monotonic() + 120
    for job_id in job_ids:
        while (status := client.get(f"/api/voice/jobs/{job_id}", headers=headers).json()["status"]) in (
                "queued", "running"):
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.1)
        answers = {fmt: client.get(f"/api/voice/jobs/{job_id}/captions.{fmt}", headers=headers)
                   for fmt in ("json", "srt", "vtt")}
        for answer in answers.values():
            clear_answer(answer)
            assert answer.status_code == (200 if status == "succeeded" else 409), answer.text[:300]
        if status != "succeeded":
            continue
        cues = len(answers["json"].json()["sentences"])
        assert len(list(srt.parse(answers["srt"].text))) == len(TIMING_LINE.findall(answers["srt"].text)) == cues
        vtt = answers["vtt"].text
        assert len(list(webvtt.from_buffer(io.StringIO(vtt)))) == len(TIMING_LINE.findall(vtt)) == cues
