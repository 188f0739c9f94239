"""API docs served from files LockN installs: Swagger UI at `/api/docs`.

FastAPI's default page loads its scripts from a CDN (and a favicon from another site), so offline it is
blank. The `fastapi-offline` wheel ships Swagger UI; LockN serves those files itself under
`/api/docs/static`. Nothing is fetched from outside. (ReDoc is not offered: its bundle fetches its own
logo from redocly's CDN.)
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/api/docs/static"


def install_docs(api: FastAPI, title: str) -> None:
    """Mount the bundled assets and the page (call before the catch-all routes)."""
    api.mount(STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-static")
    openapi_url = api.openapi_url or "/api/openapi.json"

    @api.get("/api/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} — docs",
                                   swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC}/swagger-ui.css", swagger_favicon_url="/logo.svg")
