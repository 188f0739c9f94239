"""The API key service: create, list, rotate, revoke, usage, and verification.

Verification runs its checks in one fixed, documented order and fails with a
machine-readable code (see `VERIFICATION_ORDER`). Every read or change of a key
is scoped to its owner: another owner's key is indistinguishable from a
missing one (404). The full key exists only in the return value of `create`
and `rotate`; the database holds its digest and display start.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import ApiKey, KeyUsage, as_utc, utcnow
from backend.core.redis_client import client_for
from backend.services.webhooks import service as webhooks
from backend.services.common.ownership import owned_row
from backend.services.accounts.audit import audit_event
from backend.services.keys.cache import ALL, CachedKey, InvalidationBus, KeyCache
from backend.services.keys.lineage import (MAX_KEY_DEPTH, Budget, ancestry_for, ancestry_of, budgets_of, depth,
                                          keys_drawing_from, lineage_of, month_chars_of)
from backend.services.common.pagination import BadCursor, newest_first
from backend.services.keys.quota import QuotaExceeded, QuotaLedger
from backend.core.key_format import KEY_ENVS, KeyEnv, digest_key, display_start, generate_key, parse_key
from backend.services.keys.rate_limit import InProcessRateLimiter, RateDecision, RateLimiter, RedisRateLimiter
from backend.services.keys.usage import UsageRecorder, close_process_usage, daily_series, process_usage
from backend.core.settings import Settings, get_settings

#: Every scope a key can hold, with what it allows (shown in the API docs and the dashboard).
SCOPES: dict[str, str] = {
    "tts:read": "List voices and read jobs and their audio.",
    "tts:write": "Synthesize speech and clone voices.",
    "keys:read": "List keys of the same owner, read their usage, and `GET /api/keys/self`.",
    "keys:write": "Create, rotate and revoke keys of the same owner.",
}
DEFAULT_SCOPES = ("tts:read", "tts:write")
#: A key's state as every door shows it: `in_grace` is a rotated key still working until its `expires_at`.
KeyStatus = Literal["active", "in_grace", "revoked", "expired"]
MAX_GRACE_SECONDS = 86_400
#: The largest monthly quota a key may have (fits every database's integer column).
MAX_QUOTA_CHARS = 2_000_000_000
#: Jobs of one key queued or running at once: the default, and the most a key may be given.
DEFAULT_MAX_CONCURRENT_JOBS, MAX_CONCURRENT_JOBS = 4, 100
MAX_USAGE_DAYS = 366
MAX_PAGE_SIZE = 100

#: The verification order, fixed: each step's failure code and HTTP status.
VERIFICATION_ORDER: tuple[tuple[str, int], ...] = (
    ("malformed", 401),
    ("not_found", 401),
    ("revoked", 401),
    ("expired", 401),
    ("quota_exceeded", 429),
    ("rate_limited", 429),
    ("insufficient_scope", 403),
)
_STATUS = dict(VERIFICATION_ORDER)
_MESSAGES = {
    "malformed": "The API key is malformed: check that it was copied whole (lk_live_… or lk_test_…).",
    "not_found": "The API key is not valid.",
    "revoked": "The API key has been revoked.",
    "expired": "The API key has expired.",
    "quota_exceeded": "The API key has used its monthly character quota.",
    "rate_limited": "Too many requests for this API key; retry after the time in Retry-After.",
    "insufficient_scope": "The API key lacks the scope this endpoint needs.",
}


class KeyRejected(Exception):
    """Verification failed; `code` says at which step (see `VERIFICATION_ORDER`)."""

    def __init__(self, code: str, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or _MESSAGES[code])
        self.code, self.status, self.message, self.headers = code, _STATUS[code], message or _MESSAGES[code], headers


class KeyNotFound(LookupError):
    """No key with that id belongs to this owner."""


class KeyForbidden(PermissionError):
    """The calling key may not do this: a key never hands on more than it holds itself.

    `code` is machine-readable (`insufficient_scope`, `exceeds_own_limits`), `field` what to change."""

    def __init__(self, message: str, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.field = code, field


class InvalidKeyRequest(ValueError):
    """A create/rotate request that cannot be honoured; the message says what to change."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RateLimit:
    requests: int = 60
    window_s: int = 60

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`60/minute`, `10/second`, `1000/hour`, `5000/day` or `120/30s`."""
        units = {"second": 1, "s": 1, "minute": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}
        try:
            count, per = text.strip().split("/")
            per = per.strip().lower()
            digits = "".join(ch for ch in per if ch.isdigit())
            unit = per[len(digits):] if digits and per.startswith(digits) else per
            return cls(int(count), int(digits or 1) * units[unit]).validated()
        except (ValueError, KeyError):
            raise InvalidKeyRequest(f"rate limit {text!r} is not like 60/minute, 10/second or 1000/hour",
                                    "rate_limit") from None

    def describe(self) -> str:
        """As a person writes it (and `parse` reads it): `60/minute`, `10/second`, or `120/30s`."""
        named = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
        return f"{self.requests}/{named[self.window_s]}" if self.window_s in named else \
            f"{self.requests}/{self.window_s}s"

    def validated(self) -> RateLimit:
        if not 1 <= self.requests <= 1_000_000 or not 1 <= self.window_s <= 86_400:
            raise InvalidKeyRequest("rate limit must be 1–1,000,000 requests per 1 s–1 day window", "rate_limit")
        return self


@dataclass(frozen=True)
class KeySpec:
    """What a caller asks for when creating a key."""

    name: str
    env: KeyEnv = "live"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    rate_limit: RateLimit = RateLimit()
    quota_chars: int | None = None
    expires_at: datetime | None = None
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS


@dataclass(frozen=True)
class VerifiedKey:
    """A key that passed every check, handed to route handlers."""

    id: str
    owner: str
    env: str
    scopes: frozenset[str]
    rate: RateDecision
    #: The key's own settings: the ceiling of every key it creates.
    rate_limit: RateLimit = RateLimit()
    quota_chars: int | None = None
    expires_at: datetime | None = None
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    #: Every budget its requests spend, its own lineage's first, then its creators' (`key_lineage.py`).
    budgets: tuple[Budget, ...] = ()
    ancestry: str = ""

    def quota_budgets(self) -> list[tuple[str, int]]:
        """(lineage, quota) of each budget with a monthly quota: where the key's characters are reserved."""
        return [(b.lineage_id, b.quota_chars) for b in self.budgets if b.quota_chars is not None]


@dataclass(frozen=True)
class KeyPage:
    keys: list[ApiKey]
    usage_totals: dict[str, dict[str, float]]
    next_cursor: str | None
    statuses: dict[str, KeyStatus]


@dataclass(frozen=True)
class KeyOverview:
    """The dashboard's view of an owner's keys: each key's status, daily series and this month's totals."""

    keys: list[ApiKey]
    statuses: dict[str, KeyStatus]
    #: key id → one entry per day of the window, oldest first (zeros included)
    series: dict[str, list[dict]]
    #: key id → (requests, chars) in the current calendar month (UTC)
    month: dict[str, tuple[int, int]]


def key_status(row: ApiKey, replaced: bool, now: datetime | None = None) -> KeyStatus:
    """Revoked and expired first (a key that fails verification says why), then in grace or active."""
    now = now or utcnow()
    expires_at = as_utc(row.expires_at)
    if row.revoked_at is not None and as_utc(row.revoked_at) <= now:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "in_grace" if replaced else "active"


class KeyService:
    """Owns every rule about keys. Routers, the CLI and Reflex state call this, nothing else."""

    def __init__(self, engine: Engine, pepper: str | None, limiter: RateLimiter, usage: UsageRecorder | None = None,
                 bus_client: str | None = None) -> None:
        """`usage`: a recorder of its own (writing to `engine`); by default the process's one (`process_usage`),
        so every door of a process (verification, errors, jobs, the dashboard) buffers into one place."""
        self.engine, self._pepper, self.limiter, self._usage = engine, pepper, limiter, usage
        self.cache = KeyCache()
        self.bus = InvalidationBus(lambda: client_for(bus_client) if bus_client else None, self.cache.invalidate)
        self.bus.start()
        self.quota = QuotaLedger(lambda: client_for(bus_client) if bus_client else None, self._month_used)

    @property
    def usage(self) -> UsageRecorder:
        """Where this process's key usage is buffered (looked up on each use: a forked child has its own)."""
        return self._usage if self._usage is not None else process_usage()

    def record_usage(self, key_id: str, *, requests: int = 0, chars: int = 0, audio_seconds: float = 0.0,
                     errors: int = 0) -> None:
        """Count a request's usage on the key (buffered; written within seconds and at every exit)."""
        self.usage.record(key_id, requests=requests, chars=chars, audio_seconds=audio_seconds, errors=errors)

    def flush_usage(self) -> None:
        """Write buffered usage now (a view that shows usage up to this moment)."""
        self.usage.flush()

    # ----- verification ------------------------------------------------------------------------------

    def verify(self, presented: str | None, required_scopes: tuple[str, ...] = (), *, count: bool = True) -> VerifiedKey:
        """Run the checks in `VERIFICATION_ORDER`; raise `KeyRejected` at the first that fails.

        With `count`, the request is counted against the rate limit and recorded in usage.
        """
        parsed = parse_key(presented or "")
        if parsed is None:
            raise KeyRejected("malformed")
        digest = digest_key(parsed.full, self._pepper)
        entry = self._lookup(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            raise KeyRejected("not_found")
        now = utcnow()
        if entry.revoked_at is not None and entry.revoked_at <= now:
            raise KeyRejected("revoked")
        if entry.expires_at is not None and entry.expires_at <= now:
            raise KeyRejected("expired")
        if self._quota_reached(entry, now):
            raise KeyRejected("quota_exceeded")
        rate = self.limiter.hit_all([(b.lineage_id, b.rate_limit_requests, b.rate_limit_window_s)
                                     for b in entry.budgets]) if count else \
            RateDecision(True, entry.rate_limit_requests, entry.rate_limit_requests, now.timestamp(), 0.0)
        if not rate.allowed:
            raise KeyRejected("rate_limited", headers=rate.headers())
        missing = [scope for scope in required_scopes if scope not in entry.scopes]
        if missing:
            raise KeyRejected("insufficient_scope", f"The API key lacks the scope {', '.join(missing)}.",
                              headers=rate.headers())
        if count:
            self.record_usage(entry.id, requests=1)
        return VerifiedKey(entry.id, entry.owner, entry.env, entry.scopes, rate,
                           RateLimit(entry.rate_limit_requests, entry.rate_limit_window_s), entry.quota_chars,
                           entry.expires_at, entry.max_concurrent_jobs, entry.budgets, entry.ancestry)

    def _lookup(self, digest: str) -> CachedKey | None:
        hit, entry = self.cache.get(digest)
        if hit:
            return entry
        with Session(self.engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.digest == digest)).first()
            entry = self._cache_entry(session, row) if row is not None else None
        self.cache.put(digest, entry)
        return entry

    def _cache_entry(self, session: Session, row: ApiKey) -> CachedKey:
        today = utcnow().date()
        budgets = budgets_of(session, row)
        used = month_chars_of(session, keys_drawing_from(session, budgets[0].lineage_id), today.replace(day=1)) \
            if row.quota_chars is not None else 0
        return CachedKey(row.id, row.owner, row.env, row.digest, frozenset(row.scopes), row.rate_limit_requests,
                         row.rate_limit_window_s, row.quota_chars, row.max_concurrent_jobs, as_utc(row.expires_at),
                         as_utc(row.revoked_at), used, (today.year, today.month), budgets,
                         ancestry_of(row))

    def _quota_reached(self, entry: CachedKey, now: datetime) -> bool:
        """Whether any budget the key spends has used its month's quota: its counter when that has started;
        for the key's own lineage, else what usage knows (the reservation, which also starts them, decides)."""
        limited = [b for b in entry.budgets if b.quota_chars is not None]
        if not limited:
            return False
        counters = self.quota.used_all([b.lineage_id for b in limited], now)
        month = (now.year, now.month)
        for budget, used in zip(limited, counters):
            if used is None and budget.lineage_id == entry.budgets[0].lineage_id:
                used = (entry.month_chars if entry.month == month else 0) + self.usage.pending_chars(entry.id, month)
            if used is not None and used >= budget.quota_chars:
                return True
        return False

    def _month_used(self, lineage_id: str) -> int:
        """Characters the lineage and every key drawing from it used this month, from the database and this
        process's unflushed usage: where the lineage's month counter starts."""
        now = utcnow()
        with Session(self.engine) as session:
            key_ids = keys_drawing_from(session, lineage_id)
            flushed = month_chars_of(session, key_ids, now.date().replace(day=1))
        return flushed + sum(self.usage.pending_chars(key_id, (now.year, now.month)) for key_id in key_ids)

    def acting_key(self, owner: str, key_id: str) -> VerifiedKey:
        """The key as it stands now, for work it asked for earlier and that runs later (a batch's next lines):
        `KeyRejected` when it has been revoked or has expired since. No request is counted: the batch was."""
        row = self.get(owner, key_id)
        now = utcnow()
        status = key_status(row, False, now)
        if status in ("revoked", "expired"):
            raise KeyRejected(status)
        rate = RateDecision(True, row.rate_limit_requests, row.rate_limit_requests, now.timestamp(), 0.0)
        with Session(self.engine) as session:
            budgets = budgets_of(session, row)
        return VerifiedKey(row.id, row.owner, row.env, frozenset(row.scopes), rate,
                           RateLimit(row.rate_limit_requests, row.rate_limit_window_s), row.quota_chars,
                           as_utc(row.expires_at), row.max_concurrent_jobs, budgets,
                           ancestry_of(row))

    def reserve_chars(self, key: VerifiedKey, chars: int) -> None:
        """Reserve `chars` of every monthly quota the key spends (its lineage's, its creators') before its job
        is queued, all or none, atomically across every process; `KeyRejected("quota_exceeded")` naming the
        quota they do not fit in. Keys spending no quota pass."""
        budgets = key.quota_budgets()
        if not budgets:
            return
        try:
            self.quota.reserve_all(budgets, chars, utcnow())
        except QuotaExceeded as exc:
            whose = "the key's" if exc.index == 0 and budgets[0][0] == key.budgets[0].lineage_id else \
                "the key that created this key's"
            raise KeyRejected("quota_exceeded", f"This request's {chars:,} characters do not fit in what is left of "
                                                f"{whose} monthly quota of {budgets[exc.index][1]:,}.") from None

    def refund_chars(self, key: VerifiedKey, chars: int) -> None:
        """Give back a reservation whose job was never queued."""
        if budgets := key.quota_budgets():
            self.quota.refund_all([lineage for lineage, _ in budgets], chars, utcnow())

    # ----- management (always scoped to an owner) ------------------------------------------------------

    def create(self, owner: str, spec: KeySpec, *, minted_by: VerifiedKey | None = None) -> tuple[ApiKey, str]:
        """Store a new key and return it with the full key, which is never available again.

        `minted_by`: the key making the request, if a key does (not a signed-in user or the operator's
        CLI). The new key then stays within it: its scopes, rate limit, quota and expiry at most (a
        quota or expiry left out is inherited)."""
        spec = self._validated(spec)
        if minted_by is not None:
            spec = self._within(spec, minted_by)
            if depth(minted_by.ancestry) >= MAX_KEY_DEPTH:
                raise KeyForbidden(f"Keys created by keys may go {MAX_KEY_DEPTH} deep; create this one with a key "
                                   "nearer the top, or signed in.", "exceeds_own_limits", "id")
        row, full = self._new_row(owner, spec, parent_ancestry=minted_by.ancestry if minted_by else None)
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(row)
            session.add(audit_event(owner, "key.created", row.id, f"{row.name} ({', '.join(row.scopes)})"))
            session.commit()
        return row, full

    def _new_row(self, owner: str, spec: KeySpec, *, parent_ancestry: str | None = None,
                 predecessor: ApiKey | None = None) -> tuple[ApiKey, str]:
        """A new key's row: a lineage of its own under `parent_ancestry` (its creator's, when a key creates
        it), or, as `predecessor`'s successor, that key's lineage and ancestry (its counters go on)."""
        full, key_id = generate_key(spec.env), "key_" + secrets.token_hex(8)
        if predecessor is not None:
            lineage, ancestry = lineage_of(predecessor), ancestry_of(predecessor)
        else:
            lineage, ancestry = key_id, ancestry_for(key_id, parent_ancestry)
        return ApiKey(id=key_id, owner=owner, name=spec.name, env=spec.env,
                      digest=digest_key(full, self._pepper), start=display_start(full), scopes=list(spec.scopes),
                      rate_limit_requests=spec.rate_limit.requests, rate_limit_window_s=spec.rate_limit.window_s,
                      quota_chars=spec.quota_chars, max_concurrent_jobs=spec.max_concurrent_jobs,
                      expires_at=spec.expires_at, rotated_from=predecessor.id if predecessor else None,
                      lineage_id=lineage, ancestry=ancestry), full

    @staticmethod
    def _within(spec: KeySpec, parent: VerifiedKey) -> KeySpec:
        """`spec` bounded by the key that creates it, or `KeyForbidden` saying which limit it passes."""
        if not set(spec.scopes) <= parent.scopes:
            raise KeyForbidden("A key can only create keys with scopes it holds itself.", "insufficient_scope",
                               "scopes")
        rate, ceiling = spec.rate_limit, parent.rate_limit
        if rate.requests > ceiling.requests or rate.requests * ceiling.window_s > ceiling.requests * rate.window_s:
            raise KeyForbidden(f"The rate limit may not exceed the creating key's own ({ceiling.requests} requests "
                               f"per {ceiling.window_s} s).", "exceeds_own_limits", "rate_limit")
        if spec.max_concurrent_jobs > parent.max_concurrent_jobs:
            raise KeyForbidden(f"max_concurrent_jobs may not exceed the creating key's own "
                               f"({parent.max_concurrent_jobs}).", "exceeds_own_limits", "max_concurrent_jobs")
        quota, expires_at = spec.quota_chars, spec.expires_at
        if parent.quota_chars is not None:
            if quota is not None and quota > parent.quota_chars:
                raise KeyForbidden(f"quota_chars may not exceed the creating key's own ({parent.quota_chars:,}).",
                                   "exceeds_own_limits", "quota_chars")
            quota = parent.quota_chars if quota is None else quota
        if parent.expires_at is not None:
            if expires_at is not None and expires_at > parent.expires_at:
                raise KeyForbidden("expires_at may not be later than the creating key's own expiry "
                                   f"({parent.expires_at.isoformat()}).", "exceeds_own_limits", "expires_at")
            expires_at = parent.expires_at if expires_at is None else expires_at
        return replace(spec, quota_chars=quota, expires_at=expires_at)

    def _validated(self, spec: KeySpec) -> KeySpec:
        name = spec.name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidKeyRequest("name must be 1–100 characters", "name")
        if spec.env not in KEY_ENVS:
            raise InvalidKeyRequest("env must be live or test", "env")
        unknown = sorted(set(spec.scopes) - set(SCOPES))
        if unknown or not spec.scopes:
            raise InvalidKeyRequest(f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
                                    if unknown else "a key needs at least one scope", "scopes")
        if spec.quota_chars is not None and not 1 <= spec.quota_chars <= MAX_QUOTA_CHARS:
            raise InvalidKeyRequest(f"quota_chars must be 1–{MAX_QUOTA_CHARS:,} characters a month", "quota_chars")
        if not 1 <= spec.max_concurrent_jobs <= MAX_CONCURRENT_JOBS:
            raise InvalidKeyRequest(f"max_concurrent_jobs must be 1–{MAX_CONCURRENT_JOBS}", "max_concurrent_jobs")
        if spec.expires_at is not None and as_utc(spec.expires_at) <= utcnow():
            raise InvalidKeyRequest("expires_at must be in the future", "expires_at")
        return KeySpec(name, spec.env, tuple(dict.fromkeys(spec.scopes)), spec.rate_limit.validated(),
                       spec.quota_chars, as_utc(spec.expires_at), spec.max_concurrent_jobs)

    def get(self, owner: str, key_id: str) -> ApiKey:
        with Session(self.engine) as session:
            row = owned_row(session, ApiKey, key_id, owner, KeyNotFound)
        return row

    def list(self, owner: str, limit: int = 50, cursor: str | None = None) -> KeyPage:
        """The owner's keys, newest first, `limit` per page; `cursor` is the last id of the previous page."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        with Session(self.engine) as session:
            try:
                page = newest_first(session, ApiKey, owner, limit, cursor)
            except BadCursor:
                raise InvalidKeyRequest("cursor is not a key of yours", "cursor") from None
            totals = self._usage_totals(session, [row.id for row in page.items])
            statuses = self._statuses(session, page.items)
        return KeyPage(page.items, totals, page.next_cursor, statuses)

    def status(self, row: ApiKey) -> KeyStatus:
        """`key_status` of one key (one query, to learn whether it was rotated)."""
        with Session(self.engine) as session:
            return self._statuses(session, [row])[row.id]

    def _statuses(self, session: Session, rows: list[ApiKey]) -> dict[str, KeyStatus]:
        """Each row's status; rows that may be in their grace period are checked for a successor in one query."""
        now = utcnow()
        maybe_in_grace = [r.id for r in rows if key_status(r, False, now) == "active" and r.expires_at is not None]
        replaced = set(session.exec(select(ApiKey.rotated_from).where(col(ApiKey.rotated_from).in_(maybe_in_grace)))
                       .all()) if maybe_in_grace else set()
        return {r.id: key_status(r, r.id in replaced, now) for r in rows}

    def overview(self, owner: str, days: int = 30, limit: int = MAX_PAGE_SIZE) -> KeyOverview:
        """The owner's newest keys with statuses, daily usage over `days` and this month's totals: three
        queries however many keys there are (flush buffered usage first to see it up to this moment)."""
        today = utcnow().date()
        first, month_start = today - timedelta(days=days - 1), today.replace(day=1)
        with Session(self.engine) as session:
            keys = newest_first(session, ApiKey, owner, max(1, min(limit, MAX_PAGE_SIZE)), None).items
            statuses = self._statuses(session, keys)
            rows = session.exec(select(KeyUsage).where(col(KeyUsage.key_id).in_([k.id for k in keys]),
                                                       KeyUsage.day >= min(first, month_start))).all() if keys else []
        month = {key.id: (sum(r.requests for r in rows if r.key_id == key.id and r.day >= month_start),
                          sum(r.chars for r in rows if r.key_id == key.id and r.day >= month_start)) for key in keys}
        series = {key.id: daily_series(first, days, [r for r in rows if r.key_id == key.id]) for key in keys}
        return KeyOverview(keys, statuses, series, month)

    def _usage_totals(self, session: Session, key_ids: list[str]) -> dict[str, dict[str, float]]:
        if not key_ids:
            return {}
        rows = session.exec(select(KeyUsage.key_id, func.sum(KeyUsage.requests), func.sum(KeyUsage.chars),
                                   func.sum(KeyUsage.audio_seconds), func.sum(KeyUsage.errors))
                            .where(col(KeyUsage.key_id).in_(key_ids)).group_by(KeyUsage.key_id)).all()
        totals = {key_id: {"requests": 0, "chars": 0, "audio_seconds": 0.0, "errors": 0} for key_id in key_ids}
        for key_id, requests, chars, seconds, errors in rows:
            totals[key_id] = {"requests": int(requests), "chars": int(chars), "audio_seconds": float(seconds),
                              "errors": int(errors)}
        return totals

    def revoke(self, owner: str, key_id: str) -> ApiKey:
        """Revoke at once, here and (through the bus) in every other process. Idempotent."""
        with Session(self.engine, expire_on_commit=False) as session:
            row = owned_row(session, ApiKey, key_id, owner, KeyNotFound)
            newly = row.revoked_at is None
            if newly:
                row.revoked_at = utcnow()
                session.add(row)
                session.add(audit_event(owner, "key.revoked", row.id, row.name))
                session.commit()
        self._invalidate(key_id)
        if newly:
            webhooks.key_event("key.revoked", row)
        return row

    def rotate(self, owner: str, key_id: str, grace_seconds: int = 0, *,
               by: VerifiedKey | None = None) -> tuple[ApiKey, str]:
        """A new key with the same settings; the old one works `grace_seconds` more, then fails.

        A key may rotate itself, or a key whose every scope it holds (`by`); each key is rotated at
        most once (the database refuses a second successor, also when two rotations race)."""
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidKeyRequest(f"grace_seconds must be 0–{MAX_GRACE_SECONDS}", "grace_seconds")
        old = self.get(owner, key_id)
        if by is not None and by.id != old.id and not set(old.scopes) <= by.scopes:
            raise KeyForbidden("To rotate a key, the calling key must hold every scope that key has (or be that "
                               "key).", "insufficient_scope", "id")
        now = utcnow()
        if key_status(old, False, now) in ("revoked", "expired"):
            raise InvalidKeyRequest("a revoked or expired key cannot be rotated; create a new one", "id")
        spec = KeySpec(old.name, old.env, tuple(old.scopes), RateLimit(old.rate_limit_requests,
                       old.rate_limit_window_s), old.quota_chars, as_utc(old.expires_at), old.max_concurrent_jobs)
        new, full = self._new_row(owner, spec, predecessor=old)
        cutoff = now + timedelta(seconds=grace_seconds)
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                row = session.get(ApiKey, old.id)
                assert row is not None
                if grace_seconds == 0:
                    row.revoked_at = now
                else:
                    row.expires_at = min(cutoff, as_utc(row.expires_at) or cutoff)
                session.add_all([new, row, audit_event(owner, "key.rotated", old.id,
                                                       f"{old.name}: replaced by {new.id}, old key works "
                                                       f"{grace_seconds} s more")])
                session.commit()
        except IntegrityError:
            raise InvalidKeyRequest("this key was already rotated: rotate its successor instead", "id") from None
        self._invalidate(old.id)
        return new, full

    def usage_series(self, owner: str, key_id: str, days: int = 30) -> list[dict]:
        """One entry per day for the last `days` days (zeros included), oldest first."""
        if not 1 <= days <= MAX_USAGE_DAYS:
            raise InvalidKeyRequest(f"days must be 1–{MAX_USAGE_DAYS}", "days")
        self.get(owner, key_id)
        today = utcnow().date()
        first = today - timedelta(days=days - 1)
        with Session(self.engine) as session:
            rows = list(session.exec(select(KeyUsage).where(KeyUsage.key_id == key_id, KeyUsage.day >= first)))
        return daily_series(first, days, rows)

    def owner_of(self, key_id: str) -> str:
        """Administrative lookup for the CLI only; never used on a request path."""
        with Session(self.engine) as session:
            row = session.get(ApiKey, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return row.owner

    def _invalidate(self, key_id: str) -> None:
        self.cache.invalidate(key_id)
        self.bus.publish(key_id)

    def close(self) -> None:
        """Write buffered usage and stop background threads (clean shutdown)."""
        self.bus.stop()
        if self._usage is not None:
            self._usage.close()
        else:
            close_process_usage()


def build_key_service(settings: Settings, engine: Engine | None = None) -> KeyService:
    """Wire the service from settings: Redis limiter and bus when Redis is configured."""
    engine = engine or get_engine()
    limiter: RateLimiter = RedisRateLimiter(client_for(settings.redis_url)) if settings.redis_url \
        else InProcessRateLimiter()
    pepper = settings.key_pepper.get_secret_value() if settings.key_pepper else None
    usage = UsageRecorder(engine) if engine is not get_engine() else None  # another database: its own recorder
    return KeyService(engine, pepper, limiter, usage, bus_client=settings.broker_url)


@lru_cache(maxsize=1)
def get_key_service() -> KeyService:
    """The process-wide key service (its cache and usage buffer must be shared by every request)."""
    return build_key_service(get_settings())


#: `ApiKey`: the rows this service hands out (read them; change a key only through the service).
__all__ = ["ALL", "ApiKey", "KeyNotFound", "KeyOverview", "KeyStatus", "key_status", "KeyRejected", "KeyService", "KeySpec", "RateLimit", "SCOPES", "VerifiedKey",
           "get_key_service", "InvalidKeyRequest", "VERIFICATION_ORDER"]
