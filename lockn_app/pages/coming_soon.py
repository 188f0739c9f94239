"""A page for an area that is not built yet: says so plainly and points to what works today."""

from __future__ import annotations

import reflex as rx

from components.layout import nav_link, page_frame


def coming_soon_page(title: str, promise: str) -> rx.Component:
    return page_frame(
        rx.vstack(
            rx.badge("Coming soon", color_scheme="gray", variant="soft", size="2"),
            rx.heading(title, as_="h1", size="8"),
            rx.text(promise, size="4", color=rx.color("gray", 11), max_width="640px"),
            rx.hstack(
                nav_link("Service health", "/health", True, size="3"),
                nav_link("API docs", "/api/docs", True, size="3"),
                rx.link("Back to the home page", href="/", size="3"),
                spacing="5", wrap="wrap",
            ),
            spacing="4", align="start", padding_y="5rem", data_testid="coming-soon",
        )
    )


def studio_page() -> rx.Component:
    return coming_soon_page(
        "Voice Studio",
        "Pick a voice, type, listen and download; clone your own voice from a short clip. "
        "The Studio opens here as soon as it is ready.",
    )
