"""`GET /api/logs`: your own requests, newest first, as the request log recorded them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from backend.api.deps import ReadKeys
from backend.api.errors import ApiErrorEnvelope, error_responses
from backend.core.clock import as_utc
from backend.services.accounts.request_log import LogFilter, owner_log

router = APIRouter(prefix="/api/logs", tags=["logs"], responses=error_responses(ApiErrorEnvelope))


class LogOut(BaseModel):
    id: str
    request_id: str
    created_at: datetime
    key_id: str | None
    method: str
    route: str
    status: int
    error_code: str | None
    latency_ms: float
    chars: int | None
    audio_seconds: float | None
    job_id: str | None
    client: str | None
    user_agent: str | None


class LogListOut(BaseModel):
    data: list[LogOut]
    next_cursor: str | None


@router.get("", response_model=LogListOut, summary="Your requests, newest first (filters are optional)")
def list_logs(principal: ReadKeys, key_id: str | None = None,
              status: Literal["2xx", "3xx", "4xx", "5xx"] | None = None, route: str | None = None,
              since: datetime | None = None, until: datetime | None = None, request_id: str | None = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> LogListOut:
    where = LogFilter(key_id, status, route, since and as_utc(since), until and as_utc(until), request_id)
    page = owner_log(principal.owner, where, limit, cursor)
    return LogListOut(data=[LogOut(**{**row.model_dump(), "created_at": as_utc(row.created_at)})
                            for row in page.items], next_cursor=page.next_cursor)
