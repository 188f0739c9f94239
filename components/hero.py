"""The landing page's hero: the one-line promise and the two ways in."""

from __future__ import annotations

import reflex as rx


def hero() -> rx.Component:
    return rx.vstack(
        rx.badge("Self-hosted · Open source · OpenAI-compatible", variant="surface", radius="full", size="2"),
        rx.heading("Voice AI you run yourself.", as_="h1", size=rx.breakpoints(initial="8", md="9"),
                   weight="bold", line_height="1.1"),
        rx.text(
            "Text to speech, voice cloning and an OpenAI-compatible API on your own machines, "
            "with per-key access control and GPU workers that scale out.",
            size=rx.breakpoints(initial="3", md="5"), color=rx.color("gray", 11), max_width="680px",
        ),
        rx.flex(
            rx.link(rx.button("Open Voice Studio", size="3", width="100%"), href="/studio"),
            rx.link(rx.button("Read the API docs", size="3", variant="outline", width="100%"),
                    href="/api/docs", reload_document=True),
            spacing="3", direction=rx.breakpoints(initial="column", sm="row"), width=["100%", "auto"],
        ),
        spacing="5", align="start", padding_y=rx.breakpoints(initial="3rem", md="5rem"), width="100%",
        data_testid="hero",
    )
