"""UTC time, as every part of LockN keeps it: one `now`, and the repair of times a database hands back naive.

Its own module (not the models') so a door that shows or filters by time needs no database model to do it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp LockN stores is UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
