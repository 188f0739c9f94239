"""The LockN app: Reflex pages plus the HTTP API, served by one process on one port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import reflex as rx
from fastapi import FastAPI
from starlette.types import ASGIApp

from backend.api import build_api
from backend.api.loopback import redirect_loopback_browsers
from backend.core.heap import freeze_startup_heap
from backend.core.settings import get_settings
from backend.core.log_masking import install_key_masking
from backend.core.log_setup import configure_logging
from backend.core.request_context import install_request_ids
from backend.services.status.features import RouteTable
from backend.services.keys.service import get_key_service
from backend.services.accounts.request_log import request_log_recorder
from backend.services.keys.usage import close_process_usage
from lockn_app.pages.dashboard import SECTIONS, dashboard_page, dashboard_section_page, key_page
from lockn_app.pages.landing import landing_page
from lockn_app.pages.studio import studio_page
from state.auth import AuthState
from state.dashboard import DashboardState
from state.key_page import KeyPageState
from state.landing import LandingState
from state.studio import StudioState

install_key_masking()
install_request_ids()
configure_logging(get_settings())
api = build_api()


def around_pages(outer: FastAPI) -> Callable[[ASGIApp], ASGIApp]:
    """Mount Reflex's app (pages, websocket, uploads) inside the API, as `api_transformer=api` would, minus the
    second CORS layer Reflex adds to a Starlette transformer: the app's own outermost CORS layer already covers
    every route, and two of them answered `Vary: Origin, Origin`."""

    def transform(reflex_app: ASGIApp) -> ASGIApp:
        outer.mount("", reflex_app)
        return outer

    return transform

app = rx.App(
    # The API around the pages; then the whole app sends browsers on 127.0.0.1 / [::1] to the public URL.
    api_transformer=[around_pages(api), redirect_loopback_browsers(get_settings().base_url)],
    head_components=[rx.el.link(rel="icon", href="/logo.svg", type="image/svg+xml")],
)
app.add_page(landing_page, route="/", title="LockN — self-hosted voice AI",
             description="Text to speech, voice cloning and an OpenAI-compatible API on your own machines.",
             on_load=[LandingState.load_features, AuthState.load_profile])
app.add_page(studio_page, route="/studio", title="Voice Studio — LockN", on_load=StudioState.load)
app.add_page(lambda: rx.fragment(), route="/voice", on_load=rx.redirect("/studio"))
app.add_page(dashboard_page, route="/dashboard", title="Dashboard — LockN", on_load=DashboardState.load)
for slug, (section, _) in SECTIONS.items():
    app.add_page(dashboard_section_page(slug), route=f"/dashboard/{slug}", title=f"{section} · Dashboard — LockN",
                 on_load=DashboardState.load)
app.add_page(key_page, route="/dashboard/keys/[key_id]", title="API key · Dashboard — LockN",
             on_load=KeyPageState.load_key)
app.add_page(lambda: rx.fragment(), route="/portfolio", on_load=rx.redirect("/dashboard"))

# What this process serves decides which features the landing page calls live.
RouteTable.register(api.openapi()["paths"])
RouteTable.register(app._unevaluated_pages.keys())
freeze_startup_heap()  # the pages and states built above live as long as the process: never walk them again


@app.register_lifespan_task
@contextlib.asynccontextmanager
async def flush_usage_on_shutdown() -> AsyncIterator[None]:
    """Buffered key usage and request log rows are written when the server stops cleanly (and every few seconds)."""
    yield
    if get_key_service.cache_info().currsize:
        get_key_service().bus.stop()
    close_process_usage()
    if request_log_recorder.cache_info().currsize:
        request_log_recorder().close()
