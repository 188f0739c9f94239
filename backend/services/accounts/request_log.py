"""The request log: every keyed or signed-in `/api` and `/v1` request, for its owner to look up.

Recording is an append to an in-memory list (no database round trip on the request path); a
`PeriodicFlush` writes the list in one transaction every few seconds and at a clean shutdown. A flush
that fails keeps its rows for the next one, up to `MAX_BUFFERED` (beyond that the oldest are dropped,
with a warning, rather than growing without bound while the database is down). Rows older than
`LOCKN_LOG_RETENTION_DAYS` are pruned by the workers' periodic sweep.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import RequestLog, utcnow  # RequestLog: also the rows `owner_log` hands out
from backend.core.request_context import client_network  # noqa: F401 - part of this module's API
from backend.core.settings import get_settings
from backend.services.common.periodic_flush import PeriodicFlush
from backend.services.common.pagination import BadCursor, Page, newest_first

logger = logging.getLogger("lockn.request_log")
FLUSH_INTERVAL_S = 2.0
MAX_BUFFERED = 50_000
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


class RequestLogRecorder:
    """Buffers request log rows and writes them in batches."""

    def __init__(self, engine: Engine, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        self._flusher = PeriodicFlush(self.flush, interval_s, "lockn-request-log-flush")

    def record(self, **row: object) -> None:
        """Buffer one row (RequestLog's fields but `id`)."""
        row["id"] = "log_" + secrets.token_hex(10)
        with self._lock:
            self._rows.append(row)
            if len(self._rows) > MAX_BUFFERED:
                del self._rows[: len(self._rows) - MAX_BUFFERED]
                logger.warning("request log buffer full (database unreachable?): dropped the oldest rows")
        self._flusher.ensure_running()

    def flush(self) -> int:
        """Write everything buffered; returns how many rows were written."""
        with self._lock:
            batch, self._rows = self._rows, []
        if not batch:
            return 0
        try:
            with self._engine.begin() as connection:
                connection.execute(RequestLog.__table__.insert(), batch)  # Core executemany: no ORM work
        except Exception:
            logger.exception("request log flush failed; will retry with the next flush")
            with self._lock:
                self._rows[:0] = batch
            raise
        return len(batch)

    def close(self) -> None:
        self._flusher.close()


@lru_cache(maxsize=1)
def request_log_recorder() -> RequestLogRecorder:
    """This process's recorder, writing to the configured database (the web tier records; anything may flush)."""
    return RequestLogRecorder(get_engine())


@dataclass(frozen=True)
class LogFilter:
    """What the owner narrows their log to; every part optional."""

    key_id: str | None = None
    status_class: str | None = None  # one of STATUS_CLASSES
    route: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None

    def conditions(self) -> Sequence[object]:
        found: list[object] = []
        if self.key_id:
            found.append(RequestLog.key_id == self.key_id)
        if self.status_class:
            low = int(self.status_class[0]) * 100
            found += [col(RequestLog.status) >= low, col(RequestLog.status) < low + 100]
        if self.route:
            found.append(RequestLog.route == self.route)
        if self.since:
            found.append(col(RequestLog.created_at) >= self.since)
        if self.until:
            found.append(col(RequestLog.created_at) < self.until)
        if self.request_id:
            found.append(RequestLog.request_id == self.request_id)
        return found


class InvalidLogQuery(ValueError):
    """A filter or cursor that does not make sense; the message says which."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def owner_log(owner: str, where: LogFilter, limit: int = 50, cursor: str | None = None) -> Page[RequestLog]:
    """The owner's requests, newest first, narrowed by `where` (flushes this process's buffer first)."""
    if where.status_class and where.status_class not in STATUS_CLASSES:
        raise InvalidLogQuery(f"status must be one of {', '.join(STATUS_CLASSES)}", "status")
    try:
        request_log_recorder().flush()
    except Exception:  # noqa: BLE001 - the log is read from what was written; the flush retries on its own
        pass
    with Session(get_engine()) as session:
        try:
            return newest_first(session, RequestLog, owner, limit, cursor, where.conditions())
        except BadCursor:
            raise InvalidLogQuery("cursor is not a row of your log", "cursor") from None


def owner_routes(owner: str) -> list[str]:
    """The route templates the owner's log holds, for the dashboard's route filter."""
    with Session(get_engine()) as session:
        return sorted(session.exec(select(RequestLog.route).where(RequestLog.owner == owner).distinct()).all())


def prune_request_log(now: datetime | None = None) -> int:
    """Delete rows older than LOCKN_LOG_RETENTION_DAYS; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=get_settings().log_retention_days)
    with get_engine().begin() as connection:
        return connection.execute(delete(RequestLog).where(col(RequestLog.created_at) < cutoff)).rowcount
