"""The signed-in user's dashboard: keys, usage, their requests and activity, webhooks, service status, account.

Each section has its own address (`/dashboard/keys`, `/dashboard/usage`, …) behind one section bar; `/dashboard`
shows them all, one after another. A key has its own page too (`/dashboard/keys/<id>`).
"""

from __future__ import annotations

from collections.abc import Callable

import reflex as rx

from components.dashboard import (
    account_card, key_page_panel, keys_panel, section_nav, status_panel, usage_panel,
)
from components.history import activity_panel, request_log_panel
from components.layout import private_page
from components.webhooks import webhooks_panel
from state.dashboard import DashboardState
from state.key_page import KeyPageState

#: slug → (title, what it shows); "" is every section at `/dashboard`.
SECTIONS: dict[str, tuple[str, Callable[[], rx.Component]]] = {
    "keys": ("Keys", keys_panel), "usage": ("Usage", usage_panel), "requests": ("Requests", request_log_panel),
    "activity": ("Activity", activity_panel), "webhooks": ("Webhooks", webhooks_panel),
    "status": ("Status", status_panel), "account": ("Account", account_card),
}
NAV = [("", "All"), *[(slug, title) for slug, (title, _) in SECTIONS.items()]]


def dashboard_page() -> rx.Component:
    return private_page(DashboardState, "Dashboard", "dashboard", section_nav(NAV, ""),
                        *[show() for _, show in SECTIONS.values()])


def dashboard_section_page(slug: str) -> Callable[[], rx.Component]:
    """The page of one section, at `/dashboard/<slug>`."""
    title, show = SECTIONS[slug]

    def page() -> rx.Component:
        return private_page(DashboardState, f"Dashboard · {title}", "dashboard", section_nav(NAV, slug), show())

    page.__name__ = f"dashboard_{slug}_page"
    return page


def key_page() -> rx.Component:
    """One key: its details and rotation line, its usage by day, its requests."""
    found = rx.fragment(key_page_panel(KeyPageState.key), usage_panel(), request_log_panel())
    missing = rx.callout("No key of yours has this address: it may have been mistyped.", icon="info",
                         color_scheme="gray", data_testid="key-missing")
    return private_page(KeyPageState, "API key", "key-page", section_nav(NAV, "keys"),
                        rx.cond(KeyPageState.key_missing, missing, found))
