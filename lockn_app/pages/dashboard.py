"""The signed-in user's dashboard: keys, usage, service status, account."""

from __future__ import annotations

import reflex as rx

from components.dashboard import account_card, keys_panel, status_panel, usage_panel
from components.layout import page_frame
from state.dashboard import DashboardState


def dashboard_page() -> rx.Component:
    return page_frame(
        rx.cond(
            DashboardState.signed_in,
            rx.vstack(
                rx.heading("Dashboard", as_="h1", size="8"),
                keys_panel(), usage_panel(), status_panel(), account_card(),
                spacing="5", padding_y="2rem", width="100%", data_testid="dashboard",
            ),
            rx.center(rx.spinner(size="3"), padding_y="6rem", width="100%"),
        )
    )
