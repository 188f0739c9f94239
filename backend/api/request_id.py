"""Every answer carries its request's id (`X-Request-Id`); a keyed or signed-in request is written to the log.

The id is LockN's own (`req_…`), or, with `LOCKN_TRUST_PROXY_REQUEST_ID=1`, the one the proxy in front sent
(when it looks like an id): a client talking to LockN directly cannot choose what its requests are logged as.
Error bodies repeat it (`backend/api/errors.py`), so a person can quote it.

While the request runs, its `RequestFacts` are filled in by whoever learns them (the auth dependencies,
the job service, the error handlers); when the answer has been sent, a request with an owner under `/api`
or `/v1` becomes one request log row (`services/request_log.py`), buffered, never a database write here.
"""

from __future__ import annotations

import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.metrics import HTTP_LATENCY, HTTP_REQUESTS
from backend.core.clock import utcnow
from backend.core.request_context import RequestFacts, accepted_or_new, facts_scope, request_id_scope
from backend.core.settings import get_settings
from backend.services.accounts.request_log import request_log_recorder

HEADER = "X-Request-Id"
LOGGED_PREFIXES = ("/api/", "/v1/")
#: What the HTTP metrics count: the API and health (not the pages' static files, one series per file).
COUNTED_PREFIXES = ("/api/", "/v1/", "/health", "/metrics")
#: HTTP's methods as metrics label them; any other method a client invents (`X0001…`, kilobytes long) is
#: counted as `other`, so no request can add a series (a label value is a series on every replica, forever).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"


class RequestIds:
    """ASGI middleware; outermost, so even a refusal before routing (a body too large) has an id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accepted_or_new(headers.get(HEADER) if get_settings().trust_proxy_request_id else None)
        facts = RequestFacts(address=(scope.get("client") or (None,))[0])
        scope.setdefault("state", {}).update(request_id=request_id, facts=facts)
        started, answered = time.perf_counter(), {}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
                answered.update(status=message["status"], latency_ms=(time.perf_counter() - started) * 1000)
            await send(message)

        with request_id_scope(request_id), facts_scope(facts):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:  # answered 500 by Starlette's outermost layer, after this one
                answered.setdefault("status", 500)
                answered.setdefault("latency_ms", (time.perf_counter() - started) * 1000)
                facts.error_code = facts.error_code or "internal_error"
                raise
            finally:
                if answered and scope["path"].startswith(COUNTED_PREFIXES):
                    route = _route(scope)
                    _count(scope, route, answered)
                    if facts.owner and scope["path"].startswith(LOGGED_PREFIXES) and get_settings().request_log:
                        _record(scope, route, headers, request_id, facts, answered)


def _route(scope: Scope) -> str:
    """The route's template (`/api/voice/jobs/{job_id}`), so that metrics and logs group by it."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


def metric_method(method: str) -> str:
    """The method's metrics label: itself when HTTP defines it, else `OTHER_METHOD`."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def _count(scope: Scope, route: str, answered: dict) -> None:
    HTTP_REQUESTS.labels(route, metric_method(scope["method"]), str(answered["status"])).inc()
    HTTP_LATENCY.labels(route).observe(answered["latency_ms"] / 1000)


def _record(scope: Scope, route: str, headers: Headers, request_id: str, facts: RequestFacts,
            answered: dict) -> None:
    request_log_recorder().record(
        owner=facts.owner, created_at=utcnow(), request_id=request_id, key_id=facts.key_id,
        method=scope["method"][:8], route=route[:200], status=answered["status"], error_code=facts.error_code,
        latency_ms=round(answered["latency_ms"], 2), chars=facts.chars, audio_seconds=facts.audio_seconds,
        job_id=facts.job_id, client=facts.client,
        user_agent=(headers.get("user-agent") or "")[:200] or None)
