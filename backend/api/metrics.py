"""`GET /metrics`: Prometheus' view of this machine's LockN processes (see `backend/core/metrics.py`).

Never public in production: with `LOCKN_METRICS_TOKEN` set, the scrape must send it as a bearer token
(compared in constant time); without one, the endpoint answers only in dev and test.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.api.auth import bearer_token
from backend.api.errors import ApiError
from backend.core.metrics import exposition
from backend.core.settings import get_settings
from backend.services.jobs.admission import queue_depths

router = APIRouter(include_in_schema=False)


def _allowed(request: Request) -> bool:
    settings = get_settings()
    if settings.metrics_token is None:
        return settings.env in ("dev", "test")
    presented = bearer_token(request) or ""
    return hmac.compare_digest(presented.encode(), settings.metrics_token.get_secret_value().encode())


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    if not _allowed(request):
        raise ApiError(404, "not_found", "Metrics are off here; set LOCKN_METRICS_TOKEN and scrape with it.")
    body = await asyncio.to_thread(lambda: exposition(queue_depths()))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
