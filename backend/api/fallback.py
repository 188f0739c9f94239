"""Unknown API paths and wrong methods answer in the API's own JSON envelope, never the frontend's HTML page.

Reflex serves its pages behind the API (`api_transformer`): a path the API does not know would otherwise fall
through to the frontend's 404 page. These catch-alls are registered after every router, so they only see what
no route matched: a path the API has under other methods is a 405 with `Allow`, anything else a 404.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.routing import compile_path

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
