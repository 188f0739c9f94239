"""Batches: files of lines checked before anything runs, spoken as ordinary jobs a slot at a time, zipped with a
manifest, cancellable; interactive requests keep their latency while a batch runs."""

from __future__ import annotations

import io
import json
import statistics
import time
import zipfile
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.services.jobs import batch_lines, batches
from backend.services.jobs.batches import InvalidBatch, parse_batch

OWNER = "auth0|batcher"
VOICE = "en_US-joe-medium"


def jsonl(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def test_csv_and_json_lines_are_read_the_same() -> None:
    csv_file = b"id,text,voice,format\nintro,Hello there.,v1,mp3\n,Second line,v1,\n"
    from_csv = parse_batch(csv_file)
    from_json = parse_batch(jsonl([{"id": "intro", "text": "Hello there.", "voice": "v1", "format": "mp3"},
                                   {"text": "Second line", "voice": "v1"}]))
    assert from_csv == from_json
    assert [(line.name, line.format) for line in from_csv] == [("intro", "mp3"), ("line-0002", "wav")]


@pytest.mark.parametrize("data, words", [
    (b"", "no lines"),
    (b"text\n" + b"hi\n" * 1001, "1,001 lines"),
    (jsonl([{"text": "a", "voice": "v"}, {"text": "", "voice": "v"}]), "line 2: `text` is missing"),
    (jsonl([{"text": "a"}]), "line 1: `voice` is missing"),
    (jsonl([{"text": "a", "voice": "v", "format": "wma"}]), "format 'wma'"),
    (jsonl([{"text": "a", "voice": "v", "id": "../etc/passwd"}]), "id '../etc/passwd'"),
    (jsonl([{"text": "a", "voice": "v", "id": "x"}, {"text": "b", "voice": "v", "id": "x"}]), "more than one line"),
    (jsonl([{"text": "a" * 4097, "voice": "v"}]), "4,097 characters"),
    (b'{"text": "a", "voice": "v"}\n{not json}\n', "line 2 is not JSON"),
    (b"words,voice\nhello,v\n", "header row"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"text,voice\n" + b"a" * 140_000 + b",v\n", "cannot be read"),  # past the csv module's field limit
    (b"te\rxt,voice\r\nhe\rllo,v\n", "header row"),  # bare carriage returns: read as rows, not an error
])
def test_a_bad_file_is_refused_naming_the_line(data: bytes, words: str) -> None:
    with pytest.raises(InvalidBatch, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_batch(data)


@pytest.fixture
def run_workers(embedded_broker, database, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The two workers `make run` starts: interactive requests on `cpu`, batch lines on `cpu-batch` at a lower CPU
    priority (LOCKN_WORKER_NICE=10), with the same commands."""
    import os

    from backend.ops.cli import BATCH_WORKER_NICE
    from backend.ops.supervisor import Supervisor, worker_command
    from tests.conftest import reset_caches, wait_for_worker_heartbeat

    monkeypatch.setenv("LOCKN_STUDIO_RATE_LIMIT", "1000/minute")  # the interactive requests below are many
    reset_caches()
    supervisor = Supervisor()
    supervisor.start("worker", worker_command("cpu"), env=dict(os.environ))
    supervisor.start("batch-worker", worker_command("cpu-batch", index=1),
                     env={**os.environ, "LOCKN_WORKER_NICE": str(BATCH_WORKER_NICE)})
    try:
        wait_for_worker_heartbeat()
        yield
    finally:
        supervisor.stop_all()


def interactive_latency(label: str, count: int = 8) -> list[float]:
    """Seconds from enqueue to `succeeded` of `count` short interactive requests, one after another."""
    import asyncio

    from backend.services.jobs.audio import finished_audio
    from backend.services.jobs.service import enqueue_synthesis

    seconds = []
    for n in range(count):
        started = time.perf_counter()
        text = f"Interactive request {label} {n} {time.monotonic_ns() % 10**6}, spoken right away."  # never cached
        job = enqueue_synthesis("auth0|interactive", text, VOICE)
        asyncio.run(finished_audio(job.id, job.owner))
        seconds.append(time.perf_counter() - started)
    return seconds


def test_a_200_line_batch_zips_with_its_manifest_and_leaves_interactive_latency_alone(run_workers) -> None:
    lines = [{"id": f"clip-{n:03d}", "text": f"Batch line {n}.", "voice": VOICE, "format": "mp3" if n % 2 else "wav"}
             for n in range(200)]
    idle = interactive_latency("idle")
    batch = batches.create_batch(OWNER, jsonl(lines), captions=True)
    during = []
    while batches.get_batch(OWNER, batch.id).status == "running" and len(during) < 24:
        during += interactive_latency("busy", 4)
    deadline = time.monotonic() + 300
    while (view := batches.get_batch(OWNER, batch.id)).status == "running":
        assert time.monotonic() < deadline, view
        time.sleep(0.5)
    ratio = statistics.median(during) / statistics.median(idle)
    print(f"interactive p50 idle {statistics.median(idle) * 1000:.0f} ms, during the batch "
          f"{statistics.median(during) * 1000:.0f} ms ({len(during)} requests): x{ratio:.2f}")
    # The ratio is printed, never asserted: a timing bound in a test fails on a loaded machine, not on a
    # regression (it read x2.12 while other suites shared the 2 cores). `bench.speech` is where it is measured.
    assert len(during) >= 8, "the batch ended before the interactive requests could be measured"
    assert (view.status, view.done, view.failed) == ("completed", 200, 0)

    with zipfile.ZipFile(batches.archive(OWNER, batch.id)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
        assert [entry["id"] for entry in manifest["lines"]] == [line["id"] for line in lines]
        assert all(entry["status"] == "succeeded" and entry["duration_s"] > 0 for entry in manifest["lines"])
        assert {entry["file"] for entry in manifest["lines"]} <= names
        assert "clip-001.mp3" in names and "clip-002.wav" in names and "clip-002.srt" in names
        assert archive.read("clip-001.mp3").startswith((b"ID3", b"\xff\xfb", b"\xff\xf3"))


def test_cancel_stops_the_rest_and_keeps_what_was_spoken(worker) -> None:
    lines = [{"text": f"A line to cancel, number {n}.", "voice": VOICE} for n in range(30)]
    batch = batches.create_batch(OWNER, jsonl(lines))
    deadline = time.monotonic() + 60
    while batches.get_batch(OWNER, batch.id).done < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = batches.cancel_batch(OWNER, batch.id)
    assert cancelled.status == "cancelled" and cancelled.done + cancelled.failed <= 30
    time.sleep(1.5)
    final = batches.get_batch(OWNER, batch.id)
    with zipfile.ZipFile(batches.archive(OWNER, batch.id)) as archive:
        manifest = json.loads(archive.read("manifest.json"))["lines"]
    statuses = [entry["status"] for entry in manifest]
    assert statuses.count("succeeded") >= 1 and statuses.count("cancelled") >= 20
    assert final.done == statuses.count("succeeded")
    with pytest.raises(batches.BatchNotFound):
        batches.get_batch("auth0|someone-else", batch.id)


def test_batches_api(worker, key_service) -> None:
    from backend.api import build_api
    from backend.services.keys.service import KeySpec

    writer = key_service.create(OWNER, KeySpec("batch", scopes=("tts:read", "tts:write")))[1]
    reader = key_service.create(OWNER, KeySpec("reader", scopes=("tts:read",)))[1]
    other = key_service.create("auth0|other", KeySpec("other", scopes=("tts:read", "tts:write")))[1]
    app = TestClient(build_api())
    headers = {"Authorization": f"Bearer {writer}", "Content-Type": "text/csv"}
    csv_file = f"id,text,voice\nfirst,One.,{VOICE}\nsecond,Two.,{VOICE}\n".encode()
    assert app.post("/api/voice/batches", content=csv_file,
                    headers={**headers, "Authorization": f"Bearer {reader}"}).status_code == 403
    refused = app.post("/api/voice/batches", content=b"id,text,voice\nx,Hi,nobody\n", headers=headers)
    assert refused.status_code == 422 and "line 1" in refused.json()["error"]["message"]
    made = app.post("/api/voice/batches?captions=true", content=csv_file, headers=headers)
    assert made.status_code == 202, made.text
    batch = made.json()
    assert batch["total"] == 2 and batch["archive_url"].endswith("/archive.zip")
    assert app.get(f"/api/voice/batches/{batch['id']}", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    deadline = time.monotonic() + 60
    while (state := app.get(f"/api/voice/batches/{batch['id']}", headers=headers).json())["status"] == "running":
        assert time.monotonic() < deadline
        early = app.get(batch["archive_url"], headers=headers)
        assert early.status_code in (200, 409)
        time.sleep(0.2)
    assert state["done"] == 2
    assert app.get("/api/voice/jobs", headers=headers).json()["data"] == [], "a batch's lines stay out of the history"
    archive = app.get(batch["archive_url"], headers=headers)
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    assert {"first.wav", "second.wav", "first.srt", "manifest.json"} <= set(zipfile.ZipFile(io.BytesIO(archive.content)).namelist())
    too_big = app.post("/api/voice/batches", content=b"x" * (batches.MAX_BATCH_BYTES + 1), headers=headers)
    assert too_big.status_code == 413


def test_a_studio_batch_upload_counts_on_the_studio_rate_limit(worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Studio's Batch tab (no key) starts at most LOCKN_STUDIO_RATE_LIMIT uploads per window, like generations."""
    from backend.services.jobs.admission import TooFast
    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_STUDIO_RATE_LIMIT", "2/minute")
    reset_caches()
    one_line = jsonl([{"text": "One line to speak.", "voice": VOICE}])
    batches.create_batch(OWNER, one_line)
    batches.create_batch(OWNER, one_line)
    with pytest.raises(TooFast, match="try again in"):
        batches.create_batch(OWNER, one_line)
    assert len(batches.list_batches(OWNER)) == 2, "a refused upload writes nothing"


def test_a_line_being_queued_when_the_batch_is_cancelled_never_starts(worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the cancel lands after the next line was claimed and before its job is queued. That job must not
    start (on the old code it ran to the end after the batch said `cancelled`)."""
    from sqlmodel import Session, select

    from backend.core.db import get_engine
    from backend.core.models import Job
    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_BATCH_SLOTS", "2")
    reset_caches()
    real_line_job = batch_lines._line_job
    calls = []

    def cancel_then_write(batch, line):  # type: ignore[no-untyped-def]
        calls.append(batch.id)
        if len(calls) == 2:  # line 2 is claimed; its job is about to be written and sent
            batches.cancel_batch(batch.owner, batch.id)
        return real_line_job(batch, line)

    monkeypatch.setattr(batch_lines, "_line_job", cancel_then_write)
    lines = [{"text": f"Line {n} of a batch cancelled at the worst moment.", "voice": VOICE} for n in range(4)]
    batch = batches.create_batch(OWNER, jsonl(lines))
    assert len(calls) == 2 and batches.get_batch(OWNER, batch.id).status == "cancelled"

    def jobs() -> list[Job]:
        with Session(get_engine()) as session:
            return list(session.exec(select(Job).where(Job.batch_id == batch.id).order_by(Job.created_at)).all())

    deadline = time.monotonic() + 30
    while any(job.status in ("queued", "running") for job in jobs()):
        assert time.monotonic() < deadline, [(job.id, job.status) for job in jobs()]
        time.sleep(0.2)
    time.sleep(1.0)  # a worker that got the message meanwhile would have claimed it by now
    first, second = jobs()
    assert (first.status, first.error) == ("failed", "Cancelled.")
    assert (second.status, second.started_at) == ("failed", None), "the line queued after the cancel started"
    view = batches.get_batch(OWNER, batch.id)
    assert (view.status, view.done, view.failed) == ("cancelled", 0, 4)


def test_a_preview_checks_like_create_and_writes_nothing(worker) -> None:
    """The Studio previews a file before it starts: same checks (a bad voice names its line), its figures, no rows."""
    data = jsonl([{"text": "Hello there.", "voice": VOICE}, {"text": "A second line to speak.", "voice": VOICE}])
    preview = batches.preview_batch(OWNER, data)
    assert (preview.lines, preview.voices, preview.characters) == (2, (VOICE,), 35)
    assert preview.speech_seconds == round(35 / batches.SPEECH_CHARS_PER_S, 1)
    with pytest.raises(InvalidBatch, match="line 2"):
        batches.preview_batch(OWNER, jsonl([{"text": "Fine.", "voice": VOICE}, {"text": "No.", "voice": "nobody"}]))
    assert batches.list_batches(OWNER) == []


def test_an_owners_batches_share_its_slots(worker) -> None:
    """LOCKN_BATCH_SLOTS bounds an owner's batches together, oldest first: three batches sent at once (from three
    threads, racing for the one slot) never have two jobs queued or running together, and the oldest batch ends
    first. On the code before, each batch had a slot of its own: three lines were in flight at once."""
    import threading

    from sqlmodel import Session, select

    from backend.core.db import get_engine
    from backend.core.models import Job

    files = [jsonl([{"text": f"Batch {b}, line {n}, sharing one slot.", "voice": VOICE} for n in range(3)])
             for b in range(3)]
    made: list = []
    senders = [threading.Thread(target=lambda data=data: made.append(batches.create_batch(OWNER, data)))
               for data in files]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    ids = {view.id for view in made}
    deadline = time.monotonic() + 90
    while any(batches.get_batch(OWNER, batch_id).status == "running" for batch_id in ids):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with Session(get_engine()) as session:
        jobs = list(session.exec(select(Job).where(Job.owner == OWNER, Job.batch_id.in_(ids))  # type: ignore[union-attr]
                                 .order_by(Job.created_at)).all())
    assert len(jobs) == 9 and all(job.status == "succeeded" for job in jobs)
    for earlier, later in zip(jobs, jobs[1:]):
        assert later.created_at >= earlier.finished_at, f"{later.id} was written while {earlier.id} was in flight"
    finished = {view.id: batches.get_batch(OWNER, view.id) for view in made}
    by_age = sorted(finished.values(), key=lambda view: view.created_at)
    assert [view.finished_at for view in by_age] == sorted(view.finished_at for view in by_age)
