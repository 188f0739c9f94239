"""The page frame every LockN page shares: navbar, content column, footer."""

from __future__ import annotations

import reflex as rx
from reflex_components_core.core.banner import has_too_many_connection_errors

from backend.core.settings import get_settings
from state.auth import AuthState

#: Widest a content column gets; pages stay readable on large screens.
CONTENT_MAX_WIDTH = "1120px"

NAV_LINKS: tuple[tuple[str, str, bool], ...] = (
    # (label, href, is a backend route that needs a full document load)
    ("Voice Studio", "/studio", False),
    ("Dashboard", "/dashboard", False),
    ("API docs", "/api/docs", True),
)


def logo() -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.image(src="/logo.svg", alt="", width="28px", height="28px"),
            rx.text("LockN", weight="bold", size="5"),
            align="center", spacing="2",
        ),
        href="/", underline="none", color=rx.color("gray", 12), aria_label="LockN home",
    )


def nav_link(label: str, href: str, backend_route: bool, **props) -> rx.Component:
    """A link; backend routes (`/api/docs`, `/auth/*`) need a full document load, not client-side routing."""
    return rx.link(label, href=href, reload_document=backend_route, **props)


def sign_in_button() -> rx.Component:
    """Sign in, then land on the dashboard (a backend route: a full document load)."""
    return rx.link(rx.button("Sign in", size="2", variant="solid"), href="/auth/login?next=/dashboard",
                   reload_document=True)


def account_button() -> rx.Component:
    """Sign in when nobody is; otherwise who is signed in, and a way out."""
    return rx.cond(
        AuthState.signed_in,
        rx.button("Sign out", size="2", variant="soft", on_click=AuthState.sign_out, data_testid="nav-sign-out",
                  title=AuthState.user_email),
        sign_in_button(),
    )


def navbar() -> rx.Component:
    links = [nav_link(label, href, backend, size="2", weight="medium", color=rx.color("gray", 11))
             for label, href, backend in NAV_LINKS]
    return rx.el.nav(
        rx.hstack(
            logo(),
            rx.hstack(*links, spacing="5", align="center", display=["none", "none", "flex"]),
            rx.hstack(
                account_button(),
                rx.menu.root(
                    rx.menu.trigger(rx.icon_button(rx.icon("menu"), variant="ghost", aria_label="Menu")),
                    rx.menu.content(*[rx.menu.item(nav_link(label, href, backend))
                                      for label, href, backend in NAV_LINKS]),
                ),
                display=["flex", "flex", "none"], align="center", spacing="3",
            ),
            rx.box(account_button(), display=["none", "none", "block"]),
            justify="between", align="center", width="100%", max_width=CONTENT_MAX_WIDTH, margin_x="auto",
        ),
        padding_x="1.25rem", padding_y="0.9rem", position="sticky", top="0", z_index="10",
        background=rx.color("gray", 1), border_bottom=f"1px solid {rx.color('gray', 4)}", width="100%",
    )


def footer() -> rx.Component:
    return rx.el.footer(
        rx.flex(
            rx.text("LockN — self-hosted voice AI. Your voices, your machines.", size="2", color=rx.color("gray", 11)),
            rx.hstack(
                nav_link("API docs", "/api/docs", True, size="2"),
                nav_link("Health", "/health", True, size="2"),
                spacing="4",
            ),
            direction=rx.breakpoints(initial="column", sm="row"), justify="between", gap="3", width="100%",
            max_width=CONTENT_MAX_WIDTH, margin_x="auto",
        ),
        padding="1.5rem 1.25rem", border_top=f"1px solid {rx.color('gray', 4)}", width="100%",
    )


def connection_help() -> rx.Component:
    """Said in words when the page cannot reach its server: the usual cause is an address the app was not
    started for (its websocket accepts `LOCKN_PUBLIC_URL`'s origin only), and the fix is a link away."""
    address = get_settings().base_url
    return rx.cond(has_too_many_connection_errors, rx.callout(
        rx.text("This page cannot reach LockN's server. If LockN is running, you may have opened it at an "
                "address it was not started for: open ", rx.link(address, href=address), " instead (set "
                "LOCKN_PUBLIC_URL to the address people use)."),
        icon="unplug", color_scheme="amber", width="100%", border_radius="0", data_testid="connection-help"))


def page_frame(*children: rx.Component) -> rx.Component:
    """Navbar, the page's content in a centred column, footer; never wider than the viewport."""
    return rx.box(
        navbar(),
        connection_help(),
        rx.el.main(*children, width="100%", max_width=CONTENT_MAX_WIDTH, margin_x="auto",
               padding_x="1.25rem", flex_grow="1"),
        footer(),
        display="flex", flex_direction="column", min_height="100vh", width="100%", overflow_x="hidden", background=rx.color("gray", 1),
    )


def private_page(state: type[AuthState], title: str, test_id: str, *panels: rx.Component) -> rx.Component:
    """A signed-in page: its panels under a heading once `state` knows who is signed in, a spinner until then."""
    return page_frame(
        rx.cond(
            state.signed_in,
            rx.vstack(rx.heading(title, as_="h1", size="8"), *panels,
                      spacing="5", padding_y="2rem", width="100%", data_testid=test_id),
            rx.center(rx.spinner(size="3"), padding_y="6rem", width="100%"),
        )
    )
