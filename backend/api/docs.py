"""API docs served from files LockN installs: Swagger UI at `/api/docs`, ReDoc at `/api/redoc`.

FastAPI's default pages load their scripts from a CDN (and a favicon from another site), so offline they
are blank. The `fastapi-offline` wheel ships Swagger UI and ReDoc; LockN serves those files itself under
`/api/docs/static` and points both pages at them. Nothing is fetched from outside.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/api/docs/static"


def install_docs(api: FastAPI, title: str) -> None:
    """Mount the bundled assets and the two pages (call before the catch-all routes)."""
    api.mount(STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-static")
    openapi_url = api.openapi_url or "/api/openapi.json"

    @api.get("/api/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} — docs",
                                   swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC}/swagger-ui.css", swagger_favicon_url="/logo.svg")

    @api.get("/api/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} — reference",
                              redoc_js_url=f"{STATIC}/redoc.standalone.js", redoc_favicon_url="/logo.svg",
                              with_google_fonts=False)
