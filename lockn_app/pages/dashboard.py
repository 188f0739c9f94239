"""The signed-in user's dashboard: keys, usage, their requests and activity, service status, account."""

from __future__ import annotations

import reflex as rx

from components.dashboard import account_card, keys_panel, status_panel, usage_panel
from components.history import activity_panel, request_log_panel
from components.layout import private_page
from components.webhooks import webhooks_panel
from state.dashboard import DashboardState


def dashboard_page() -> rx.Component:
    return private_page(DashboardState, "Dashboard", "dashboard",
                        keys_panel(), usage_panel(), request_log_panel(), activity_panel(),
                        webhooks_panel(), status_panel(), account_card())
