"""LockN's HTTP API: a FastAPI app that Reflex serves beside the pages (`rx.App(api_transformer=...)`).

Routers stay thin: they parse, call a service in `backend/services`, and shape
the answer. The OpenAPI schema is served at `/api/openapi.json`, docs at `/api/docs`.
"""

from __future__ import annotations

from fastapi import FastAPI

from backend.api import audit, batches, health, keys, logs, metrics, openai_compat, qa, voice, webhooks
from backend.api.body_limit import BodySizeLimit
from backend.api.docs import install_docs
from backend.api.errors import install_error_handlers
from backend.api.fallback import CollapseSlashes, install_fallback_routes
from backend.api.request_id import RequestIds
from backend.auth.dev_provider import build_dev_provider_app
from backend.auth.oidc import build_auth_app
from backend.core.heap import freeze_startup_heap
from backend.core.settings import get_settings

API_TITLE = "LockN API"
API_VERSION = "0.1.0"


def build_api() -> FastAPI:
    """Assemble the API with every router, the login routes and the shared error handling."""
    settings = get_settings()
    api = FastAPI(title=API_TITLE, version=API_VERSION, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    install_error_handlers(api)
    api.add_middleware(BodySizeLimit)
    api.add_middleware(CollapseSlashes)
    api.add_middleware(RequestIds)  # added last: the outermost, so every answer has an id
    api.include_router(health.router)
    api.include_router(keys.router)
    api.include_router(batches.router)  # before voice's /api/voice/{…} routes
    api.include_router(voice.router)
    api.include_router(openai_compat.router)
    api.include_router(logs.router)
    api.include_router(audit.router)
    api.include_router(webhooks.router)
    api.include_router(metrics.router)
    api.include_router(qa.router)
    install_docs(api, API_TITLE)
    install_fallback_routes(api)
    if settings.identity_provider == "dev":
        # Never in production: DevProvider itself refuses LOCKN_ENV=prod, and prod settings refuse the dev IdP.
        api.mount("/dev-idp", build_dev_provider_app(settings))
    api.mount("/auth", build_auth_app(settings))
    return api


def serve_api() -> FastAPI:
    """The API as a server process runs it alone (`granian --factory backend.api:serve_api`, the benches' stack):
    built, then its start-up objects frozen (`backend/core/heap.py`: a full collection walked them for ~240 ms
    while every request waited). Tests build many apps in one process and call `build_api`, which freezes nothing."""
    api = build_api()
    freeze_startup_heap()
    return api
