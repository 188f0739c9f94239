"""State for the public landing page: which features are live right now."""

from __future__ import annotations

import reflex as rx

from backend.services.status.features import FEATURES, feature_statuses


def _placeholder_cards() -> list[dict[str, str]]:
    """What the page shows before the server has answered: every card, status still being checked."""
    return [{"key": f.key, "title": f.title, "description": f.description, "icon": f.icon, "status": "checking",
             "detail": ""}
            for f in FEATURES]


class LandingState(rx.State):
    """Feature cards with their status (live, warming up, not running, coming soon), refreshed on load and every
    few seconds after."""

    features: list[dict[str, str]] = _placeholder_cards()

    @rx.event(background=True)
    async def load_features(self) -> None:
        """Check routes and workers off the event loop (the worker lookup touches Redis)."""
        cards = await rx.run_in_thread(feature_statuses)
        async with self:
            self.features = cards
