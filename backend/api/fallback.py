"""Unknown API paths and wrong methods answer in the API's own JSON envelope, never the frontend's HTML page;
repeated slashes in an API path are one slash (a client's base URL ending in `/` asks for `/v1//audio/...`).

Reflex serves its pages behind the API (`api_transformer`): a path the API does not know would otherwise fall
through to the frontend's 404 page. These catch-alls are registered after every router, so they only see what
no route matched: a path the API has under other methods is a 405 with `Allow`, anything else a 404.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.errors import ApiError

PREFIXES = ("/api", "/v1")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def install_fallback_routes(api: FastAPI) -> None:
    """Add the catch-alls; call after every router is included (the known paths are read from the schema)."""
    known = [(compile_path(path)[0], {method.upper() for method in operations if method.upper() in METHODS})
             for path, operations in api.openapi()["paths"].items()]

    async def no_such_route(request: Request, path: str) -> None:
        allowed = sorted({method for regex, methods in known if regex.match(request.url.path) for method in methods})
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here; use "
                           f"{', '.join(allowed)}.", headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, "not_found", f"There is no {request.url.path}; see /api/docs for every endpoint.")

    for prefix in PREFIXES:
        api.add_api_route(f"{prefix}/{{path:path}}", no_such_route, methods=list(METHODS), include_in_schema=False)


class CollapseSlashes:
    """ASGI middleware: `/v1//audio/voices` is `/v1/audio/voices` (Open WebUI with a base URL ending in `/`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and "//" in path and path.startswith(PREFIXES):
            collapsed = re.sub(r"/{2,}", "/", path)
            scope = {**scope, "path": collapsed, "raw_path": collapsed.encode()}
        await self.app(scope, receive, send)
