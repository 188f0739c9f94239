"""The Voice Studio: make a voice say something, hear it, download it, clone your own."""

from __future__ import annotations

import reflex as rx

from components.layout import private_page
from components.studio import clone_panel, generate_panel, history_panel, library_panel, readiness_banner
from state.studio import StudioState


def studio_page() -> rx.Component:
    return private_page(StudioState, "Voice Studio", "studio",
                        readiness_banner(), generate_panel(), library_panel(), clone_panel(), history_panel())
