"""Every answer carries its request's id (`X-Request-Id`), and everything logged while it runs is tagged with it.

The id is LockN's own (`req_…`), or, with `LOCKN_TRUST_PROXY_REQUEST_ID=1`, the one the proxy in front sent
(when it looks like an id): a client talking to LockN directly cannot choose what its requests are logged as.
Error bodies repeat it (`backend/api/errors.py`), so a person can quote it.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.request_ids import accepted_or_new, request_id_scope
from backend.core.settings import get_settings

HEADER = "X-Request-Id"


class RequestIds:
    """ASGI middleware; outermost, so even a refusal before routing (a body too large) has an id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(HEADER) if get_settings().trust_proxy_request_id else None
        request_id = accepted_or_new(offered)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with request_id_scope(request_id):
            await self.app(scope, receive, send_with_id)
