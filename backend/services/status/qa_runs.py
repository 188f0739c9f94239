"""Recorded runs of the release smoke suite (`qa_runs`).

`backend.ops.qa_gate` writes one row per run (from `make qa`, a deploy or the nightly
task); `promote` reads the last run against a deployment to decide whether it may
be promoted, and the dashboard shows the newest run with a link to its report.
Nothing here knows about pytest, HTTP or Reflex.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlmodel import col, select

from backend.core.db import session_scope
from backend.core.models import QaRun, as_utc  # QaRun: also the rows `last_run` hands out
from backend.core.settings import get_settings

Trigger = Literal["deploy", "nightly", "manual"]
TRIGGERS: tuple[Trigger, ...] = ("deploy", "nightly", "manual")


class InvalidQaRun(ValueError):
    """A run that cannot be recorded as given (bad target URL or trigger); the message says which."""


class QaRunNotFound(LookupError):
    """No such run, or it has no report to show."""


@dataclass(frozen=True)
class QaCounts:
    """Test outcomes of one run; errors count as failures (a broken fixture is a failed release check)."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped


def normalise_target(url: str) -> str:
    """The form a deployment's base URL is stored and looked up in: `scheme://host[:port][/path]`, no trailing
    slash, so `make qa` and `make promote` agree on what "the same deployment" is."""
    cleaned = url.strip().rstrip("/")
    parts = urlsplit(cleaned)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidQaRun(f"{url!r} is not a base URL like http://host:port")
    return cleaned


def check_trigger(trigger: str) -> Trigger:
    """`trigger` when it is one LockN knows (deploy, nightly, manual); a clear refusal otherwise."""
    if trigger not in TRIGGERS:
        raise InvalidQaRun(f"trigger {trigger!r} is not one of {', '.join(TRIGGERS)}")
    return trigger  # type: ignore[return-value]


def new_run_id() -> str:
    """An id for a run about to be recorded (the gate names its report file after it first)."""
    return "qa_" + secrets.token_hex(10)


def record(target: str, trigger: str, started_at: datetime, finished_at: datetime, counts: QaCounts,
           passed: bool, report_path: Path | None = None, run_id: str | None = None) -> QaRun:
    """Store one finished run and return it."""
    run = QaRun(id=run_id or new_run_id(), target=normalise_target(target), trigger=check_trigger(trigger),
                started_at=started_at, finished_at=finished_at, passed=passed, passed_count=counts.passed,
                failed_count=counts.failed, skipped_count=counts.skipped,
                report_path=str(report_path) if report_path else None)
    with session_scope() as session:
        session.add(run)
    return run


def list_runs(target: str | None = None, limit: int = 20) -> list[QaRun]:
    """Runs newest first (by when they finished), of one target or of all."""
    query = select(QaRun)
    if target is not None:
        query = query.where(QaRun.target == normalise_target(target))
    query = query.order_by(col(QaRun.finished_at).desc(), col(QaRun.id).desc()).limit(limit)
    with session_scope() as session:
        runs = list(session.exec(query))
    for run in runs:  # SQLite hands back naive datetimes
        run.started_at, run.finished_at = as_utc(run.started_at), as_utc(run.finished_at)
    return runs


def last_run(target: str | None = None) -> QaRun | None:
    """The newest run against `target` (any target when None), or None when there is none."""
    runs = list_runs(target, limit=1)
    return runs[0] if runs else None


def report_file(run_id: str) -> Path:
    """The HTML report of a run, only if it lies inside the data directory (the one place reports are kept)."""
    with session_scope() as session:
        run = session.get(QaRun, run_id)
    if run is None or not run.report_path:
        raise QaRunNotFound(run_id)
    path = Path(run.report_path).resolve()
    if not path.is_relative_to(get_settings().data_dir.resolve()) or not path.is_file():
        raise QaRunNotFound(run_id)
    return path
