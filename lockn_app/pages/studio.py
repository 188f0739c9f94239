"""The Voice Studio: make a voice say something, hear it, download it, clone your own."""

from __future__ import annotations

import reflex as rx

from components.layout import page_frame
from components.studio import clone_panel, generate_panel, history_panel, library_panel
from state.studio import StudioState


def studio_page() -> rx.Component:
    return page_frame(
        rx.cond(
            StudioState.signed_in,
            rx.vstack(
                rx.heading("Voice Studio", as_="h1", size="8"),
                generate_panel(), library_panel(), clone_panel(), history_panel(),
                spacing="5", padding_y="2rem", width="100%", data_testid="studio",
            ),
            rx.center(rx.spinner(size="3"), padding_y="6rem", width="100%"),
        )
    )
