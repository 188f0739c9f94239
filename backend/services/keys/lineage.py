"""Limits belong to a key's lineage, not to one key id: what keeps rotate and child keys from multiplying them.

A **lineage** is a key and every successor rotation gives it: they share one id (`ApiKey.lineage_id`, the first
key's id), so a successor inherits its predecessor's month counter, rate window and running jobs instead of
starting at zero. A key created *by a key* draws from its creator's budget as well as its own: its
`ancestry` (`/root/…/parent/own/`, lineage ids) lists every budget a request of it spends, and each of them
must have room (quota, rate limit, jobs at once) or nothing is spent. So a key with `keys:write` cannot
multiply its limits by minting children, nor reset its quota by rotating: "a key never hands on more than
it holds" holds for every limit, not only for the numbers written on the child.

A budget's limits are those of its lineage's first key (rotation copies a key's settings, and nothing
changes them afterwards), so every limit of a chain is known from its ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func
from sqlmodel import Session, col, select

from backend.core.models import ApiKey, KeyUsage

#: How many keys deep a chain of keys creating keys may go (each level is one more budget every request of
#: the deepest key checks); the CLI and signed-in users create keys at the top.
MAX_KEY_DEPTH = 8
SEPARATOR = "/"


@dataclass(frozen=True)
class Budget:
    """One lineage's limits, which every key drawing from it spends together."""

    lineage_id: str
    rate_limit_requests: int
    rate_limit_window_s: int
    quota_chars: int | None
    max_concurrent_jobs: int


def lineage_of(row: ApiKey) -> str:
    """The lineage a key spends (a row from before lineages existed is its own)."""
    return row.lineage_id or row.id


def ancestry_of(row: ApiKey) -> str:
    """The key's ancestry (a row from before lineages existed is a root: its own lineage alone)."""
    return row.ancestry or f"{SEPARATOR}{lineage_of(row)}{SEPARATOR}"


def chain_of(row: ApiKey) -> list[str]:
    """Every lineage whose budget the key draws from, its own first, then its creator's, up to the root."""
    return list(reversed([part for part in ancestry_of(row).split(SEPARATOR) if part]))


def ancestry_for(own_lineage: str, parent_ancestry: str | None) -> str:
    """A new key's ancestry: its creator's (a key's; None for a user or the operator) and its own lineage."""
    return f"{parent_ancestry or SEPARATOR}{own_lineage}{SEPARATOR}"


def depth(ancestry: str) -> int:
    return len([part for part in ancestry.split(SEPARATOR) if part])


def budgets_of(session: Session, row: ApiKey) -> tuple[Budget, ...]:
    """The key's budgets, its own first: its own settings, then each creator's lineage's (one query)."""
    chain = chain_of(row)
    own = Budget(chain[0], row.rate_limit_requests, row.rate_limit_window_s, row.quota_chars,
                 row.max_concurrent_jobs)
    if len(chain) == 1:
        return (own,)
    roots = {r.id: r for r in session.exec(select(ApiKey).where(col(ApiKey.id).in_(chain[1:])))}
    return (own, *(Budget(lineage, r.rate_limit_requests, r.rate_limit_window_s, r.quota_chars,
                          r.max_concurrent_jobs) for lineage in chain[1:] if (r := roots.get(lineage)) is not None))


def keys_drawing_from(session: Session, lineage_id: str) -> list[str]:
    """Ids of every key that spends `lineage_id`'s budget: the lineage's own keys and all their descendants."""
    own = col(ApiKey.ancestry).contains(f"{SEPARATOR}{lineage_id}{SEPARATOR}", autoescape=True)
    return list(session.exec(select(ApiKey.id).where(own | (ApiKey.lineage_id == lineage_id) |
                                                     (ApiKey.id == lineage_id))))


def month_chars_of(session: Session, key_ids: list[str], month_start: date) -> int:
    """Characters these keys used since `month_start`, as the database has them (flushed usage)."""
    if not key_ids:
        return 0
    return int(session.exec(select(func.coalesce(func.sum(KeyUsage.chars), 0))
                            .where(col(KeyUsage.key_id).in_(key_ids), KeyUsage.day >= month_start)).one())
