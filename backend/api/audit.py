"""`GET /api/audit`: what was done to your keys, sign-ins and voices, by whom, when and from where."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from backend.api.deps import ReadKeys
from backend.api.errors import ApiErrorEnvelope, error_responses
from backend.core.clock import as_utc
from backend.services.accounts.audit import owner_activity

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=error_responses(ApiErrorEnvelope))


class AuditEventOut(BaseModel):
    id: str
    created_at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    request_id: str | None
    client: str | None


class AuditListOut(BaseModel):
    data: list[AuditEventOut]
    next_cursor: str | None


@router.get("", response_model=AuditListOut, summary="Your account's audit trail, newest first")
def list_audit(principal: ReadKeys,
               limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> AuditListOut:
    page = owner_activity(principal.owner, limit, cursor)
    return AuditListOut(data=[AuditEventOut(**{**event.model_dump(), "created_at": as_utc(event.created_at)})
                              for event in page.items], next_cursor=page.next_cursor)
