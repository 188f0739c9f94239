"""Feature cards for the landing page; the status comes from state, never from the markup."""

from __future__ import annotations

import reflex as rx

STATUS_BADGES = {"live": ("Live", "green"), "warming": ("Warming up", "amber"), "down": ("Not running", "red"),
                 "soon": ("Coming soon", "gray"), "checking": ("Checking…", "gray")}


def status_badge(status: rx.Var[str]) -> rx.Component:
    return rx.match(
        status,
        *[(key, rx.badge(label, color_scheme=color, variant="soft", data_status=key))
          for key, (label, color) in STATUS_BADGES.items()],
        rx.badge(status),
    )


#: Icons the cards may name; `rx.icon` needs a name known at compile time, so a state value picks one here.
CARD_ICONS = ("audio-lines", "key-round", "plug", "mic", "cpu")


def card_icon(name: rx.Var[str]) -> rx.Component:
    return rx.match(name, *[(icon, rx.icon(icon, size=18)) for icon in CARD_ICONS], rx.icon("sparkles", size=18))


def feature_card(feature: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.center(card_icon(feature["icon"]), width="36px", height="36px", border_radius="8px",
                          background=rx.color("accent", 3), color=rx.color("accent", 11)),
                status_badge(feature["status"]),
                justify="between", align="center", width="100%",
            ),
            rx.heading(feature["title"], size="4", as_="h3"),
            rx.text(feature["description"], size="2", color=rx.color("gray", 11)),
            # Why a built feature cannot work right now (no worker, warming up, no weights), from the heartbeats.
            rx.cond(feature["detail"] != "", rx.text(feature["detail"], size="1", color=rx.color("amber", 11),
                                                     data_testid="feature-detail")),
            spacing="3", align="start",
        ),
        data_testid="feature-card", data_feature=feature["key"], size="2", height="100%",
    )


def feature_grid(features: rx.Var[list[dict[str, str]]], refresh: rx.EventHandler) -> rx.Component:
    """The cards, asking the server again every 4 s (`refresh`) so a stopped worker shows without a reload."""
    return rx.fragment(
        rx.grid(rx.foreach(features, feature_card), columns=rx.breakpoints(initial="1", sm="2", md="3"),
                spacing="4", width="100%"),
        rx.moment(interval=4000, on_change=refresh, display="none"),
    )
