"""Request bodies are capped before they are read: a huge upload costs LockN at most the limit.

A declared `Content-Length` over the limit is refused at once, without reading
a byte; a body streamed without one is counted as it arrives and refused the
moment it passes the limit. Either way the client gets the API's own 413
envelope. Limits are per path prefix: the voice upload allows a 10 MB clip,
and so does Reflex's own upload route (the Studio's clip drop zone), which
would otherwise read an upload of any size into memory; everything else is
small JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.errors import ApiError, error_response
from backend.services.jobs.batches import MAX_BATCH_BYTES, MAX_LINES
from backend.services.voices.service import MAX_UPLOAD_BYTES

#: 4,096 characters of text, up to 4 bytes each in UTF-8, and the rest of a JSON request.
DEFAULT_LIMIT_BYTES = 64 * 1024
LIMITED_PREFIXES = ("/api/", "/v1/", "/_upload")
DEFAULT_MESSAGE = "The request body is over 64 KB, the most this endpoint accepts (text: at most 4,096 characters)."
#: (method, path, limit, message): a clip of the largest allowed size plus room for the form's other fields.
CLIP_MESSAGE = f"The upload is too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB (a 10–30 s clip is far smaller)."
BATCH_MESSAGE = f"The batch file is too large: the limit is {MAX_BATCH_BYTES // 2**20} MB (and {MAX_LINES:,} lines)."
LIMITS: tuple[tuple[str, str, int, str], ...] = (
    ("POST", "/api/voice/voices", MAX_UPLOAD_BYTES + 64 * 1024, CLIP_MESSAGE),
    ("POST", "/_upload", MAX_UPLOAD_BYTES + 64 * 1024, CLIP_MESSAGE),
    ("POST", "/api/voice/batches", MAX_BATCH_BYTES, BATCH_MESSAGE),
)


class BodyTooLarge(HTTPException):
    """Raised from `receive` mid-stream; the API's HTTPException handler renders it as 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodySizeLimit:
    """ASGI middleware enforcing `LIMITS` (and `DEFAULT_LIMIT_BYTES` elsewhere)."""

    def __init__(self, app: ASGIApp, limits: Sequence[tuple[str, str, int, str]] = LIMITS) -> None:
        self.app, self.limits = app, limits

    def limit_for(self, method: str, path: str) -> tuple[int, str]:
        """The byte limit of this route and the sentence that explains it."""
        return next(((limit, message) for m, p, limit, message in self.limits
                     if m == method and path.rstrip("/") == p), (DEFAULT_LIMIT_BYTES, DEFAULT_MESSAGE))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The API's own routes and Reflex's upload route: Reflex serves its pages and websocket through this
        # app too (api_transformer), and those carry no request bodies worth a limit.
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        limit, message = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(Request(scope), ApiError(413, "payload_too_large", message))
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > limit:
                raise BodyTooLarge(message)  # rendered by the API's HTTPException handler
            return chunk

        await self.app(scope, counted, send)
