"""Per-key daily usage, buffered in memory and written in batches.

Recording a request is a dictionary update under a lock: no database round
trip on the hot path. A background thread flushes every `FLUSH_INTERVAL_S`
seconds with one upsert per (key, day); `flush()` also runs at a clean shutdown
(atexit and the app's shutdown hook), so nothing recorded is lost. A flush
that fails (database down) puts its counts back and is retried.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, update
from sqlalchemy.dialects import postgresql, sqlite

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
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        table = KeyUsage.__table__
        with self._engine.begin() as connection:
            for (key_id, day), c in batch.counts.items():
                statement = insert(table).values(key_id=key_id, day=day, requests=c.requests, chars=c.chars,
                                                 audio_seconds=c.audio_seconds, errors=c.errors)
                connection.execute(statement.on_conflict_do_update(
                    index_elements=["key_id", "day"],
                    set_={name: table.c[name] + statement.excluded[name]
                          for name in ("requests", "chars", "audio_seconds", "errors")}))
            for key_id, when in batch.last_used.items():
                connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))

    def close(self) -> None:
        """Stop the flusher and write what is left (clean shutdown)."""
        self._flusher.close()


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
