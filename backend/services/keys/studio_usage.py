"""What a signed-in user generates in the Studio: their usage, and their monthly character quota.

Studio generations carry no API key, so they are not in `key_usage`; the jobs table is their record
(each Studio job is a row with its owner, characters and audio seconds, cache hits included). The
dashboard charts them beside the keys. `LOCKN_STUDIO_QUOTA_CHARS` caps a user's Studio characters per
calendar month with the same atomic Redis counter as a key's quota (`QuotaLedger`), started from the
jobs table; characters of a job that could not be queued are given back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import Job, as_utc, utcnow
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.services.keys.quota import QuotaExceeded, QuotaLedger
from backend.services.keys.usage import daily_series

#: How the Studio appears among the keys in usage charts.
STUDIO_SERIES = "studio"


@dataclass(frozen=True)
class DailyUsage:
    day: date
    requests: int
    chars: int
    audio_seconds: float
    errors: int


class StudioQuotaReached(Exception):
    """The generation's characters do not fit in what is left of the user's monthly Studio quota."""

    def __init__(self, chars: int, quota: int) -> None:
        super().__init__(f"This generation's {chars:,} characters do not fit in what is left of your monthly "
                         f"Studio quota of {quota:,} characters; it starts again on the 1st.")


def _ledger_id(owner: str) -> str:
    return f"user:{owner}"


def studio_daily_usage(owner: str, since: date) -> list[DailyUsage]:
    """The user's Studio jobs per UTC day from `since`: generations, characters, audio seconds, failures.

    Added up here rather than grouped by the database: what a "day" of a timestamp is differs between
    SQLite and PostgreSQL, and a user's month of Studio jobs is a small read."""
    with Session(get_engine()) as session:
        rows = session.exec(select(Job.created_at, Job.text_chars, Job.duration_s, Job.status)
                            .where(Job.owner == owner, col(Job.key_id).is_(None),
                                   col(Job.created_at) >= datetime.combine(since, time.min, tzinfo=UTC))).all()
    days: dict[date, DailyUsage] = {}
    for created_at, chars, seconds, status in rows:
        day = as_utc(created_at).date()
        seen = days.get(day, DailyUsage(day, 0, 0, 0.0, 0))
        days[day] = DailyUsage(day, seen.requests + 1, seen.chars + chars, seen.audio_seconds + (seconds or 0.0),
                               seen.errors + (status == "failed"))
    return [days[day] for day in sorted(days)]


def studio_series(owner: str, days: int) -> list[dict]:
    """The user's Studio usage as the dashboard charts it: one entry per day of the last `days`."""
    first = utcnow().date() - timedelta(days=days - 1)
    return daily_series(first, days, studio_daily_usage(owner, first))


def studio_month_chars(owner: str) -> int:
    """Characters of the user's Studio jobs this calendar month (UTC): where a month's counter starts."""
    return sum(row.chars for row in studio_daily_usage(owner, utcnow().date().replace(day=1)))


def _ledger() -> QuotaLedger:
    return QuotaLedger(get_redis, lambda ledger_id: studio_month_chars(ledger_id.removeprefix("user:")))


def reserve_studio_chars(owner: str, chars: int) -> None:
    """Reserve `chars` of the user's monthly Studio quota, atomically, or raise `StudioQuotaReached`."""
    quota = get_settings().studio_quota_chars
    if quota is None:
        return
    try:
        _ledger().reserve(_ledger_id(owner), chars, quota, utcnow())
    except QuotaExceeded:
        raise StudioQuotaReached(chars, quota) from None


def refund_studio_chars(owner: str, chars: int) -> None:
    """Give back a reservation whose job was never queued."""
    if get_settings().studio_quota_chars is not None:
        _ledger().refund(_ledger_id(owner), chars, utcnow())

