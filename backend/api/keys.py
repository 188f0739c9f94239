"""`/api/keys`: key management for the signed-in user or a key holding `keys:*` scopes.

Thin by design: parse, call `KeyService`, shape the answer. Another owner's key
answers 404, exactly like a missing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator

from backend.api.deps import Caller, ReadKeys, WriteKeys
from backend.api.errors import ApiError, ApiErrorEnvelope, error_responses
from backend.core.clock import as_utc
from backend.services.keys.service import (
    DEFAULT_MAX_CONCURRENT_JOBS, DEFAULT_SCOPES, MAX_CONCURRENT_JOBS, MAX_GRACE_SECONDS, MAX_PAGE_SIZE, MAX_QUOTA_CHARS,
    MAX_USAGE_DAYS, SCOPES, ApiKey, KeySpec, KeyStatus, RateLimit, get_key_service,
)

router = APIRouter(prefix="/api/keys", tags=["keys"], responses=error_responses(ApiErrorEnvelope))
ScopeName = Literal["tts:read", "tts:write", "keys:read", "keys:write"]


class RateLimitIn(BaseModel):
    requests: int = Field(60, ge=1, le=1_000_000)
    window_seconds: int = Field(60, ge=1, le=86_400)


class CreateKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    env: Literal["live", "test"] = "live"
    scopes: list[ScopeName] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1,
                                    description="; ".join(f"`{k}`: {v}" for k, v in SCOPES.items()))
    rate_limit: RateLimitIn = Field(default_factory=RateLimitIn)
    quota_chars: int | None = Field(None, ge=1, le=MAX_QUOTA_CHARS,
                                    description="Characters per calendar month (UTC); none = unlimited. A key "
                                                "creating a key passes on its own quota and expiry when none is given, and the new "
                                                "key also spends the creating key's quota, rate limit and jobs at once.")
    expires_at: datetime | None = None
    max_concurrent_jobs: int = Field(DEFAULT_MAX_CONCURRENT_JOBS, ge=1, le=MAX_CONCURRENT_JOBS,
                                     description="Jobs of this key queued or running at once; more answer 429.")


class RotateIn(BaseModel):
    grace_seconds: int = Field(0, ge=0, le=MAX_GRACE_SECONDS,
                               description="How long the old key keeps working; 0 revokes it at once.")


class UsageTotals(BaseModel):
    requests: int
    chars: int
    audio_seconds: float = Field(description="Rounded to milliseconds.")
    errors: int

    @field_validator("audio_seconds")
    @classmethod
    def _milliseconds(cls, value: float) -> float:
        return round(value, 3)


class KeyOut(BaseModel):
    id: str
    name: str
    env: str
    start: str = Field(description="The first characters of the key, safe to display.")
    scopes: list[str]
    rate_limit: RateLimitIn
    quota_chars: int | None
    max_concurrent_jobs: int
    status: KeyStatus = Field(description="`in_grace`: rotated, still working until `expires_at`.")
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None
    usage: UsageTotals | None = Field(None, description="All-time totals (in listings).")

    @classmethod
    def of(cls, row: ApiKey, status: KeyStatus | None = None, usage: dict[str, float] | None = None) -> KeyOut:
        """`status` as the key service worked it out (asked of it when not given)."""
        status = status or get_key_service().status(row)
        return cls(id=row.id, name=row.name, env=row.env, start=row.start, scopes=row.scopes,
                   rate_limit=RateLimitIn(requests=row.rate_limit_requests, window_seconds=row.rate_limit_window_s),
                   quota_chars=row.quota_chars, max_concurrent_jobs=row.max_concurrent_jobs, status=status, expires_at=as_utc(row.expires_at),
                   created_at=as_utc(row.created_at), last_used_at=as_utc(row.last_used_at),
                   revoked_at=as_utc(row.revoked_at), rotated_from=row.rotated_from, usage=usage)


class CreatedKeyOut(KeyOut):
    key: str = Field(description="The full key. Shown only in this response: store it now.")


class KeyListOut(BaseModel):
    data: list[KeyOut]
    next_cursor: str | None


class UsageDay(BaseModel):
    day: str
    requests: int
    chars: int
    audio_seconds: float
    errors: int


class UsageOut(BaseModel):
    key_id: str
    days: list[UsageDay]


@router.post("", status_code=201, response_model=CreatedKeyOut, summary="Create a key (the full key is shown once)")
def create_key(body: CreateKeyIn, principal: WriteKeys) -> CreatedKeyOut:
    spec = KeySpec(body.name, body.env, tuple(body.scopes), RateLimit(body.rate_limit.requests,
                   body.rate_limit.window_seconds), body.quota_chars, body.expires_at, body.max_concurrent_jobs)
    row, full = get_key_service().create(principal.owner, spec, minted_by=principal.key)
    return CreatedKeyOut(**KeyOut.of(row).model_dump(), key=full)


@router.get("", response_model=KeyListOut, summary="List your keys, newest first")
def list_keys(principal: ReadKeys, limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
              cursor: str | None = None) -> KeyListOut:
    page = get_key_service().list(principal.owner, limit, cursor)
    return KeyListOut(data=[KeyOut.of(row, page.statuses[row.id], page.usage_totals.get(row.id)) for row in page.keys],
                      next_cursor=page.next_cursor)


@router.get("/self", response_model=KeyOut, summary="The calling key's own metadata (whoami)")
def key_self(principal: Caller) -> KeyOut:
    if principal.key is None:
        raise ApiError(400, "bad_request", "/api/keys/self describes the API key you call with; "
                                           "you are signed in without one.")
    return KeyOut.of(get_key_service().get(principal.owner, principal.key.id))


@router.get("/{key_id}", response_model=KeyOut, summary="One of your keys")
def get_key(key_id: str, principal: ReadKeys) -> KeyOut:
    return KeyOut.of(get_key_service().get(principal.owner, key_id))


@router.post("/{key_id}/rotate", response_model=CreatedKeyOut, summary="Replace a key; the old one lasts the grace")
def rotate_key(key_id: str, principal: WriteKeys, body: RotateIn | None = None) -> CreatedKeyOut:
    row, full = get_key_service().rotate(principal.owner, key_id, (body or RotateIn()).grace_seconds,
                                         by=principal.key)
    return CreatedKeyOut(**KeyOut.of(row).model_dump(), key=full)


@router.post("/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key at once, everywhere")
def revoke_key(key_id: str, principal: WriteKeys) -> KeyOut:
    return KeyOut.of(get_key_service().revoke(principal.owner, key_id))


@router.get("/{key_id}/usage", response_model=UsageOut, summary="Daily usage, oldest day first")
def key_usage(key_id: str, principal: ReadKeys,
              days: Annotated[int, Query(ge=1, le=MAX_USAGE_DAYS)] = 30) -> UsageOut:
    series = get_key_service().usage_series(principal.owner, key_id, days)
    return UsageOut(key_id=key_id, days=[UsageDay(**day) for day in series])
