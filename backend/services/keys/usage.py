"""Per-key daily usage, buffered in memory and written in batches.

Recording a request is a dictionary update under a lock: no database round
trip on the hot path. A background thread flushes every `FLUSH_INTERVAL_S`
seconds with one upsert per (key, day); `flush()` also runs at a clean shutdown
(atexit and the app's shutdown hook), so nothing recorded is lost. A flush
that fails (database down) puts its counts back and is retried.

A process has one recorder (`process_usage`, which the key service uses); a forked child (a Celery pool process)
makes its own rather than sharing its parent's buffer and flush thread, and every exit closes it
(`close_process_usage`). What a worker learns at a job's end is not buffered at all: `add_usage` writes it in the
transaction that ends the job, so a worker killed a moment later has lost nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, update
from sqlalchemy.dialects import postgresql, sqlite

from backend.core.db import get_engine
from backend.core.models import ApiKey, KeyUsage, utcnow
from backend.services.common.periodic_flush import PeriodicFlush

logger = logging.getLogger("lockn.usage")
FLUSH_INTERVAL_S = 5.0


@dataclass
class UsageCounts:
    requests: int = 0
    chars: int = 0
    audio_seconds: float = 0.0
    errors: int = 0

    def add(self, other: UsageCounts) -> None:
        self.requests += other.requests
        self.chars += other.chars
        self.audio_seconds += other.audio_seconds
        self.errors += other.errors


@dataclass
class _Pending:
    counts: dict[tuple[str, date], UsageCounts] = field(default_factory=lambda: defaultdict(UsageCounts))
    last_used: dict[str, datetime] = field(default_factory=dict)


class UsageRecorder:
    """Buffers usage and writes it to `key_usage` in batches."""

    def __init__(self, engine: Engine, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._flusher = PeriodicFlush(self.flush, interval_s, "lockn-usage-flush")

    def record(self, key_id: str, *, requests: int = 0, chars: int = 0, audio_seconds: float = 0.0,
               errors: int = 0) -> None:
        now = utcnow()
        with self._lock:
            self._pending.counts[(key_id, now.date())].add(UsageCounts(requests, chars, audio_seconds, errors))
            if requests:
                self._pending.last_used[key_id] = now
        self._flusher.ensure_running()

    def pending_chars(self, key_id: str, month: tuple[int, int]) -> int:
        """Characters recorded but not yet flushed for `key_id` in (year, month): quotas count them too."""
        with self._lock:
            return sum(c.chars for (kid, day), c in self._pending.counts.items()
                       if kid == key_id and (day.year, day.month) == month)

    def flush(self) -> int:
        """Write everything buffered; returns the number of (key, day) rows touched."""
        with self._lock:
            batch, self._pending = self._pending, _Pending()
        if not batch.counts and not batch.last_used:
            return 0
        try:
            self._write(batch)
        except Exception:
            logger.exception("usage flush failed; will retry with the next flush")
            with self._lock:
                for slot, counts in batch.counts.items():
                    self._pending.counts[slot].add(counts)
                for key_id, when in batch.last_used.items():
                    self._pending.last_used[key_id] = max(when, self._pending.last_used.get(key_id, when))
            raise
        return len(batch.counts)

    def _write(self, batch: _Pending) -> None:
        with self._engine.begin() as connection:
            for (key_id, day), counts in batch.counts.items():
                _upsert(connection, key_id, day, counts)
            for key_id, when in batch.last_used.items():
                connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))

    def disown(self) -> None:
        """Drop the buffer without writing it and never flush at exit: a forked child's copy of its parent's
        recorder (the parent writes those counts). Runs right after a fork, where another thread of the parent
        may have held the lock: the lock is replaced, never taken."""
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._flusher.abandon()

    def close(self) -> None:
        """Stop the flusher and write what is left (clean shutdown)."""
        self._flusher.close()


def _upsert(connection: Connection, key_id: str, day: date, counts: UsageCounts) -> None:
    """Add `counts` to the key's row of `day` (created at zero when missing), in one statement."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    table = KeyUsage.__table__
    statement = insert(table).values(key_id=key_id, day=day, requests=counts.requests, chars=counts.chars,
                                     audio_seconds=counts.audio_seconds, errors=counts.errors)
    connection.execute(statement.on_conflict_do_update(
        index_elements=["key_id", "day"],
        set_={name: table.c[name] + statement.excluded[name]
              for name in ("requests", "chars", "audio_seconds", "errors")}))


def add_usage(connection: Connection, key_id: str, *, chars: int = 0, audio_seconds: float = 0.0) -> None:
    """Write a finished job's usage now, inside the caller's transaction (the one that records the job's end):
    usage known only when a job ends is in the database exactly when its end is, and never twice."""
    if chars or audio_seconds:
        _upsert(connection, key_id, utcnow().date(), UsageCounts(chars=chars, audio_seconds=audio_seconds))


_process_lock = threading.Lock()
_process_recorder: UsageRecorder | None = None


def process_usage() -> UsageRecorder:
    """This process's one recorder (writing to the configured database), made on first use."""
    global _process_recorder
    with _process_lock:
        if _process_recorder is None:
            _process_recorder = UsageRecorder(get_engine())
        return _process_recorder


def close_process_usage() -> None:
    """Write what this process buffered and forget its recorder (every exit; a test's change of database)."""
    global _process_recorder
    with _process_lock:
        recorder, _process_recorder = _process_recorder, None
    if recorder is not None:
        recorder.close()


def _forget_in_child() -> None:
    """A forked child must not share its parent's buffer (the parent writes those counts) or its flush thread
    (not running in the child): it starts with none and makes its own."""
    global _process_lock, _process_recorder
    if _process_recorder is not None:
        _process_recorder.disown()
    _process_lock, _process_recorder = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_in_child)


class DayOfUsage(Protocol):
    """A day's counts, from `key_usage` or from the Studio's jobs (`studio_usage.DailyUsage`)."""

    day: date
    requests: int
    chars: int
    audio_seconds: float
    errors: int


def daily_series(first: date, days: int, rows: list[DayOfUsage]) -> list[dict]:
    """One entry per day from `first`, `days` long, oldest first; a day without a row is all zeros."""
    by_day = {row.day: row for row in rows}
    series = []
    for day in (first + timedelta(days=offset) for offset in range(days)):
        row = by_day.get(day)
        series.append({"day": day.isoformat(), "requests": row.requests if row else 0,
                       "chars": row.chars if row else 0, "audio_seconds": row.audio_seconds if row else 0.0,
                       "errors": row.errors if row else 0})
    return series
