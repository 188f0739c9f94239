"""Batches: a file of up to 1,000 lines, spoken as ordinary jobs a few at a time, then one zip.

- `create_batch` parses JSON lines or CSV (`text`, `voice`, `format`, optional `id`), checks every line before
  anything is written (a bad line refuses the whole file, naming the line), writes the batch and its lines, and
  starts it.
- The batch is admitted here, once, as one request: its upload on the rate limit (a key's by the key's own,
  the Studio's by `check_studio_rate`) and all its characters reserved on the key's (or Studio user's) monthly
  quota, all or nothing: a batch that does not fit is refused (`KeyRejected` / `StudioQuotaReached`) and nothing
  is written. Its lines are then sent as ordinary jobs, a few at a time, by `batch_lines` (the worker sends the
  next line when one ends, through the queue like any job); a line's usage is counted when it ends.
- Cancel marks the batch and its pending lines cancelled, then cancels every job of the batch not yet ended. No
  line starts after that: a line is claimed only while its batch runs, and a worker starts a batch job only in
  the same UPDATE that sees its batch running (`may_start`), so a line being queued at the moment of the cancel
  is refused by the worker (`stop_if_cancelled`) or cancelled by whoever queued it; the characters reserved for the
  lines that never started are given back. When every line has ended the batch
  is `completed` (the `batch.completed` webhook) and `archive` writes its zip once: one audio file per
  succeeded line named by its id, captions (SRT) when asked, and `manifest.json` (line, id, status, duration,
  error).
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from contextlib import ExitStack

from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import Batch, BatchLine, Job, as_utc, utcnow
from backend.core.settings import get_settings
from backend.media.captions import to_srt
from backend.media.codecs import FORMATS
from backend.services.common.ownership import owned_row
from backend.services.jobs.batch_lines import advance, reconcile
from backend.services.jobs.service import (
    MAX_TEXT_CHARS, InvalidJobRequest, JobNotFound, cancel_job, check_studio_rate, refund_quota, reserve_quota,
    validate_request,
)
from backend.services.jobs.text_input import UnspeakableText, speakable_text
from backend.services.keys.service import KeyRejected, VerifiedKey, get_key_service

MAX_LINES = 1000
MAX_BATCH_BYTES = 2 * 2**20
#: How deep a JSON line may nest. A line is one flat object (depth 1); the bound is checked before parsing,
#: because Python's JSON parser recurses per level and a line nested thousands deep would exhaust its stack.
MAX_JSON_DEPTH = 32
#: What the nesting scan looks at: an escape (with the character it escapes), a quote, a bracket.
_JSON_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
#: A line's name in the archive: letters, digits, dot, dash, underscore (no paths).
LINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidBatch(ValueError):
    """The file cannot be a batch; the message names the line and what is wrong with it, `code` the kind of
    refusal (the API's error code)."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class BatchNotFound(LookupError):
    """No such batch among the caller's."""


class BatchNotDone(Exception):
    """The archive is made when every line has ended."""


@dataclass(frozen=True)
class LineIn:
    text: str
    voice: str
    format: str
    name: str


@dataclass(frozen=True)
class BatchView:
    id: str
    status: str
    total: int
    done: int
    failed: int
    captions: bool
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Batch) -> BatchView:
        return cls(row.id, row.status, row.total, row.done, row.failed, row.captions, as_utc(row.created_at),
                   as_utc(row.finished_at))


# ----- making one ------------------------------------------------------------------------------------------


def parse_batch(data: bytes) -> list[LineIn]:
    """The lines of a JSON-lines or CSV file (with a header row), each checked; `InvalidBatch` otherwise."""
    if len(data) > MAX_BATCH_BYTES:
        raise InvalidBatch(f"the file is {len(data):,} bytes; a batch is at most {MAX_BATCH_BYTES // 2**20} MB")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidBatch("the file is not UTF-8 text: send JSON lines or CSV") from None
    if not content.strip():
        raise InvalidBatch("the file has no lines to speak")
    rows = _json_lines(content) if content.lstrip().startswith("{") else _csv_rows(content)
    if not rows:
        raise InvalidBatch("the file has no lines to speak")
    if len(rows) > MAX_LINES:
        raise InvalidBatch(f"the file has {len(rows):,} lines; a batch is at most {MAX_LINES:,}")
    lines = [_line(number, row) for number, row in enumerate(rows, start=1)]
    names = [line.name for line in lines]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise InvalidBatch(f"the id {duplicate!r} is used by more than one line; ids name files, so each is unique")
    return lines


def checked_lines(owner: str, data: bytes) -> list[LineIn]:
    """The file's lines with every voice and format checked for `owner`; `InvalidBatch` names the first bad line."""
    lines = parse_batch(data)
    for voice, fmt in sorted({(line.voice, line.format) for line in lines}):
        try:
            validate_request(owner, "check", voice, fmt, 1.0)
        except InvalidJobRequest as exc:
            number = next(i for i, line in enumerate(lines, start=1) if (line.voice, line.format) == (voice, fmt))
            raise InvalidBatch(f"line {number}: {exc}") from None
    return lines


@dataclass(frozen=True)
class BatchPreview:
    """What a file would make, shown before it starts: its lines, voices, characters and about how long the
    speech will be (at `SPEECH_CHARS_PER_S`; the real length depends on the voice and the speed)."""

    lines: int
    voices: tuple[str, ...]
    characters: int
    speech_seconds: float


#: Characters a voice speaks in a second at speed 1 (about 150 words a minute): what the preview estimates by.
SPEECH_CHARS_PER_S = 15.0


def preview_batch(owner: str, data: bytes) -> BatchPreview:
    """The checks `create_batch` makes (a bad line is named), and what the file would make; nothing is written."""
    lines = checked_lines(owner, data)
    characters = sum(len(line.text) for line in lines)
    return BatchPreview(len(lines), tuple(sorted({line.voice for line in lines})), characters,
                        round(characters / SPEECH_CHARS_PER_S, 1))


def create_batch(owner: str, data: bytes, key_id: str | None = None, captions: bool = False) -> BatchView:
    """Check the file and every voice in it, admit it, write the batch and its lines, and send its first lines.

    Without a key (the Studio's Batch tab) the upload is one generation on the user's Studio rate limit
    (`TooFast`), as its lines are not counted one by one; a key's upload is already counted by the key's limit.
    All its characters are reserved on the monthly quota before anything is written (see the module's notes)."""
    lines = checked_lines(owner, data)
    if key_id is None:
        check_studio_rate(owner)
    key = _batch_key(owner, key_id)
    batch = Batch(id="batch_" + secrets.token_hex(8), owner=owner, key_id=key_id, total=len(lines),
                  captions=captions)
    with ExitStack() as undo:
        reserve_quota(undo, owner, key, sum(len(line.text) for line in lines))
        with Session(get_engine(), expire_on_commit=False) as session:
            session.add(batch)
            session.add_all([BatchLine(batch_id=batch.id, line=number, name=line.name, text=line.text,
                                       voice=line.voice, format=line.format)
                             for number, line in enumerate(lines, start=1)])
            session.commit()
        undo.pop_all()  # written: the reservation is the batch's
    advance(batch.id)
    return get_batch(owner, batch.id)


def _batch_key(owner: str, key_id: str | None) -> VerifiedKey | None:
    """The key a batch spends, as it stands now (`KeyRejected` once revoked or expired); None for the Studio."""
    return get_key_service().acting_key(owner, key_id) if key_id is not None else None


def _json_lines(content: str) -> list[dict]:
    rows = []
    for number, text in enumerate(content.splitlines(), start=1):
        if not text.strip():
            continue
        if _nesting_exceeds(text, MAX_JSON_DEPTH):
            raise InvalidBatch(f"line {number} nests deeper than {MAX_JSON_DEPTH} levels of JSON; each line is one "
                               'flat object like {"text": "…", "voice": "…"}')
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidBatch(f"line {number} is not JSON: each line is one object like "
                               '{"text": "…", "voice": "…"}') from None
        if not isinstance(row, dict):
            raise InvalidBatch(f"line {number} is not a JSON object")
        rows.append(row)
    return rows


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether `text`'s brackets (outside strings) nest deeper than `limit`: one linear scan, stopped early."""
    depth, in_string = 0, False
    for token in _JSON_TOKENS.finditer(text):
        mark = token.group()
        if mark == '"':
            in_string = not in_string
        elif in_string or mark[0] == "\\":
            continue
        elif mark in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _csv_rows(content: str) -> list[dict]:
    try:  # the csv module raises while reading the header too (e.g. a bare carriage return inside a field)
        reader = csv.DictReader(io.StringIO(content, newline=""))
        if not reader.fieldnames or "text" not in [name.strip() for name in reader.fieldnames]:
            raise InvalidBatch("a CSV batch needs a header row with at least `text` (and `voice`, `format`, `id`)")
        return [{(k or "").strip(): v for k, v in row.items()} for row in reader
                if any(isinstance(v, str) and v.strip() for v in row.values())]
    except csv.Error as exc:
        raise InvalidBatch(f"the CSV cannot be read: {exc}") from None


def _line(number: int, row: dict) -> LineIn:
    text, voice = row.get("text"), row.get("voice")
    fmt, name = row.get("format") or "wav", row.get("id") or f"line-{number:04d}"
    if not isinstance(text, str) or not text.strip():
        raise InvalidBatch(f"line {number}: `text` is missing or empty")
    try:  # the same rule as every other request's text (`text_input`), so what is stored is what is spoken
        text = speakable_text(text)
    except UnspeakableText as exc:
        raise InvalidBatch(f"line {number}: {exc}", exc.code) from None
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidBatch(f"line {number}: `text` is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    if not isinstance(voice, str) or not voice.strip():
        raise InvalidBatch(f"line {number}: `voice` is missing (a voice id from /api/voice/voices)")
    if fmt not in FORMATS:
        raise InvalidBatch(f"line {number}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(name, str) or not LINE_NAME.fullmatch(name):
        raise InvalidBatch(f"line {number}: id {name!r} must be 1–64 letters, digits, '.', '-' or '_'")
    return LineIn(text, voice.strip(), fmt, name)


def cancel_batch(owner: str, batch_id: str) -> BatchView:
    """Stop a batch: its pending lines are cancelled (their reserved characters given back), its jobs in flight
    cancelled; what succeeded stays.

    The batch is marked first and its jobs are read after, from the jobs table (a job row is written before its
    message is sent): a job this read misses was written after the mark, and no worker starts it (`may_start`)."""
    with Session(get_engine()) as session:
        batch = owned_row(session, Batch, batch_id, owner, BatchNotFound)
    with get_engine().begin() as connection:
        never_started = connection.execute(update(BatchLine).where(col(BatchLine.batch_id) == batch_id,
                                                                   col(BatchLine.status) == "pending")
                                           .values(status="cancelled", error="the batch was cancelled")
                                           .returning(col(BatchLine.text))).all()
        connection.execute(update(Batch).where(col(Batch.id) == batch.id, col(Batch.status) == "running")
                           .values(status="cancelled", failed=Batch.failed + len(never_started), finished_at=utcnow()))
    _give_back(batch, sum(len(text) for (text,) in never_started))
    with Session(get_engine()) as session:
        in_flight = session.exec(select(Job.id).where(Job.batch_id == batch_id,
                                                      col(Job.status).in_(("queued", "running")))).all()
    for job_id in in_flight:
        try:
            cancel_job(job_id, owner)
        except JobNotFound:
            pass  # deleted meanwhile: `reconcile` records its line
    reconcile(batch_id)  # the cancelled jobs' lines end now (a cancelled job's worker reports nothing)
    return get_batch(owner, batch_id)


def _give_back(batch: Batch, chars: int) -> None:
    """Refund the characters of lines that will never run, to the month they were reserved in (a counter of a past
    month is gone; nothing to give back there). A key revoked since keeps them: it spends nothing more anyway."""
    if not chars or as_utc(batch.created_at).strftime("%Y-%m") != utcnow().strftime("%Y-%m"):
        return
    try:
        key = _batch_key(batch.owner, batch.key_id)
    except KeyRejected:
        return
    refund_quota(batch.owner, key, chars)


def get_batch(owner: str, batch_id: str) -> BatchView:
    with Session(get_engine()) as session:
        return BatchView.of(owned_row(session, Batch, batch_id, owner, BatchNotFound))


def list_batches(owner: str, limit: int = 20) -> list[BatchView]:
    with Session(get_engine()) as session:
        rows = session.exec(select(Batch).where(Batch.owner == owner).order_by(col(Batch.created_at).desc())
                            .limit(limit)).all()
    return [BatchView.of(row) for row in rows]


def archive(owner: str, batch_id: str) -> Path:
    """The batch's zip (written once, atomically); `BatchNotDone` while lines are still to be spoken."""
    batch = get_batch(owner, batch_id)
    if batch.status == "running":
        raise BatchNotDone(f"{batch.done + batch.failed} of {batch.total} lines have ended; the archive is made "
                           "when all have")
    path = get_settings().data_dir / "batches" / f"{batch_id}.zip"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive_file:
        manifest = [_archive_line(archive_file, line, batch.captions) for line in _lines_with_jobs(batch_id)]
        archive_file.writestr("manifest.json", json.dumps({"batch": batch_id, "status": batch.status,
                                                           "lines": manifest}, indent=2))
    partial.replace(path)
    return path


# ----- inside --------------------------------------------------------------------------------------------


def _lines_with_jobs(batch_id: str) -> list[tuple[BatchLine, Job | None]]:
    with Session(get_engine()) as session:
        lines = session.exec(select(BatchLine).where(BatchLine.batch_id == batch_id)
                             .order_by(col(BatchLine.line))).all()
        jobs = {job.id: job for job in session.exec(select(Job).where(Job.batch_id == batch_id)).all()}
    return [(line, jobs.get(line.job_id or "")) for line in lines]


def _archive_line(archive_file: zipfile.ZipFile, entry: tuple[BatchLine, Job | None], captions: bool) -> dict:
    """Put one line's audio (and captions) in the zip; its manifest entry."""
    line, job = entry
    record = {"line": line.line, "id": line.name, "status": line.status, "duration_s": line.duration_s,
              "error": line.error, "file": None}
    if line.status == "succeeded" and job is not None and job.audio_path and Path(job.audio_path).exists():
        record["file"] = f"{line.name}.{line.format}"
        archive_file.write(job.audio_path, record["file"])
        if captions and job.captions:
            archive_file.writestr(f"{line.name}.srt", to_srt(job.captions))
    return record
