"""LockN's HTTP API: a FastAPI app that Reflex serves beside the pages (`rx.App(api_transformer=...)`).

Routers stay thin: they parse, call a service in `backend/services`, and shape
the answer. The OpenAPI schema is served at `/api/openapi.json`, docs at `/api/docs`.
"""

from __future__ import annotations

from fastapi import FastAPI

from backend.api import health, keys, openai_compat, voice
from backend.api.errors import install_error_handlers

API_TITLE = "LockN API"
API_VERSION = "0.1.0"


def build_api() -> FastAPI:
    """Assemble the API with every router and the shared error handling."""
    api = FastAPI(title=API_TITLE, version=API_VERSION, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    install_error_handlers(api)
    api.include_router(health.router)
    api.include_router(keys.router)
    api.include_router(voice.router)
    api.include_router(openai_compat.router)
    return api
