"""The public landing page: the promise, what is live, and how to call the API."""

from __future__ import annotations

import reflex as rx

from backend.core.settings import get_settings
from components.code_example import code_example
from components.features import feature_grid
from components.hero import hero
from components.layout import page_frame
from state.landing import LandingState


def section(title: str, subtitle: str, *children: rx.Component, **props) -> rx.Component:
    return rx.vstack(
        rx.heading(title, as_="h2", size="7"),
        rx.text(subtitle, color=rx.color("gray", 11), size="3"),
        *children,
        spacing="4", width="100%", padding_y="2.5rem", **props,
    )


def landing_page() -> rx.Component:
    return page_frame(
        hero(),
        section("What LockN does", "Everything below is checked against the running platform.",
                feature_grid(LandingState.features, LandingState.load_features), id="features"),
        section("Call it like OpenAI", "Create a key in the dashboard, then:",
                code_example(get_settings().base_url), id="api"),
    )
