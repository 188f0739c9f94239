"""Reflex configuration. Every value comes from `backend/core/settings.py`; nothing is set here by hand."""

import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin

from backend.core.settings import get_settings

settings = get_settings()

config = rx.Config(
    app_name="lockn_app",
    frontend_port=settings.port,
    backend_port=settings.port,
    backend_host=settings.host,
    api_url=settings.base_url,
    deploy_url=settings.base_url,
    # The websocket carries the session cookie: accept only our own origin (never "*").
    cors_allowed_origins=[settings.base_url],
    telemetry_enabled=False,
    show_built_with_reflex=False,
    default_color_mode="system",
    # Replicas share Reflex state through Redis (production and its local rehearsal).
    redis_url=settings.redis_url if settings.distributed else None,
    disable_plugins=[SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(
        theme=rx.theme(accent_color="violet", gray_color="slate", radius="medium", has_background=True))],
)
