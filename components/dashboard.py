"""Dashboard pieces: key table, dialogs, usage chart, status cards, account card. No business rules."""

from __future__ import annotations

import reflex as rx

from components.confirm import confirm_action
from state.dashboard import GRACE_CHOICES, DashboardState

STATUS_COLORS = {"active": "green", "in grace": "amber", "revoked": "red", "expired": "gray", "ok": "green", "down": "red",
                 "warming up": "amber", "passed": "green", "failed": "red"}


def status_badge(status: rx.Var[str]) -> rx.Component:
    return rx.match(status, *[(k, rx.badge(k, color_scheme=c, variant="soft")) for k, c in STATUS_COLORS.items()],
                    rx.badge(status))


def panel(title: str, *children: rx.Component, **props) -> rx.Component:
    return rx.card(rx.vstack(rx.heading(title, size="4", as_="h2"), *children, spacing="3", width="100%"),
                   width="100%", **props)


def account_card() -> rx.Component:
    return panel(
        "Account",
        rx.flex(
            rx.avatar(src=DashboardState.user_picture, fallback=DashboardState.user_name[:1], size="4"),
            rx.vstack(rx.text(DashboardState.user_name, weight="bold"),
                      rx.text(DashboardState.user_email, size="2", color=rx.color("gray", 11)), spacing="0"),
            rx.spacer(),
            rx.button("Sign out", variant="soft", on_click=DashboardState.sign_out, data_testid="sign-out"),
            align="center", width="100%", wrap="wrap", gap="3",
        ),
    )


def service_card(service: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(rx.text(service["name"], weight="bold", size="2"), rx.spacer(), status_badge(service["status"]),
                      width="100%"),
            rx.text(service["detail"], size="1", color=rx.color("gray", 11), trim="both"),
            rx.text(service["latency"], size="1", color=rx.color("gray", 10)),
            spacing="1", width="100%",
        ),
        data_testid="service-card", data_service=service["name"], data_status=service["status"],
    )


def qa_run_card() -> rx.Component:
    """The last release QA run: when, against what, passed or failed, counts, and its report."""
    run = DashboardState.qa_run
    recorded = rx.card(
        rx.vstack(
            rx.hstack(rx.text("Last release QA run", weight="bold", size="2"), rx.spacer(),
                      status_badge(run["outcome"]), width="100%"),
            rx.text(run["when"], " · ", run["trigger"], " · ", run["target"], size="1",
                    color=rx.color("gray", 11), word_break="break-all"),
            rx.text(run["counts"], size="1", data_testid="qa-run-counts"),
            rx.cond(run["report_url"] != "",
                    rx.link("Open report", href=run["report_url"], reload_document=True, size="1",
                            data_testid="qa-report-link")),
            spacing="1", width="100%",
        ),
        data_testid="qa-run", data_status=run["outcome"], data_run_id=run["id"],
    )
    none_yet = rx.text("No release QA run recorded yet: run make qa LOCKN_BASE_URL=… (README, Release QA).",
                       size="1", color=rx.color("gray", 11), data_testid="qa-run-none")
    return rx.cond(run.contains("id"), recorded, none_yet)


def status_panel() -> rx.Component:
    return panel(
        "Service status",
        rx.grid(rx.foreach(DashboardState.services, service_card),
                columns=rx.breakpoints(initial="1", sm="2", md="3"), spacing="3", width="100%"),
        qa_run_card(),
        rx.moment(interval=4000, on_change=DashboardState.refresh_status, display="none"),
    )


def key_actions(key: rx.Var[dict[str, str]]) -> rx.Component:
    rotate = rx.menu.root(
        rx.menu.trigger(rx.button("Rotate", size="1", variant="soft", data_testid="rotate")),
        rx.menu.content(*[rx.menu.item(f"Old key stops {'now' if grace == 'now' else 'in ' + grace}",
                                       on_click=DashboardState.rotate_key(key["id"], grace),
                                       data_testid=f"rotate-{grace.replace(' ', '-')}")
                          for grace in GRACE_CHOICES]),
    )
    revoke = confirm_action(
        "Revoke", "Revoke key “" + key["name"] + "” (" + key["start"] + ")?",
        "Every request with it fails at once. This cannot be undone.", "Revoke",
        DashboardState.revoke_key(key["id"]), trigger_testid="revoke", confirm_testid="confirm-revoke",
        trigger_props={"variant": "soft"})
    # A key in its grace period was already replaced: it can still be revoked early, not rotated again.
    return rx.match(key["status"], ("active", rx.hstack(rotate, revoke, spacing="2")), ("in grace", revoke),
                    rx.fragment())


def key_name(key: rx.Var[dict[str, str]]) -> rx.Component:
    """The key's name, what it replaced or was replaced by (two rows share a name after a rotation), its quota."""
    return rx.vstack(
        rx.link(key["name"], href="/dashboard/keys/" + key["id"], weight="medium", data_testid="key-link"),
        rx.cond(key["lineage"] != "", rx.text(key["lineage"], size="1", color=rx.color("gray", 11))),
        rx.cond(key["quota"] != "", rx.vstack(
            rx.progress(value=key["quota_pct"].to(int), width="120px"),
            rx.text(key["quota"], size="1", color=rx.color("gray", 11)), spacing="1")),
        spacing="1")


def key_table() -> rx.Component:
    """Every key as a table row on wider screens; as a card on a phone, where nine columns cannot fit."""
    columns = ("Name", "Key", "Env", "Scopes", "Rate limit", "Last used", "Requests this month", "Status", "")
    table = rx.box(
        rx.table.root(
            rx.table.header(rx.table.row(*[rx.table.column_header_cell(c) for c in columns])),
            rx.table.body(rx.foreach(DashboardState.keys, lambda key: rx.table.row(
                rx.table.cell(key_name(key)),
                rx.table.cell(rx.code(key["start"])), rx.table.cell(key["env"]), rx.table.cell(key["scopes"]),
                rx.table.cell(key["rate"]), rx.table.cell(key["last_used"]), rx.table.cell(key["month_requests"]),
                rx.table.cell(status_badge(key["status"])), rx.table.cell(key_actions(key)),
                data_testid="key-row", data_key_id=key["id"], data_status=key["status"]))),
            size="1", width="100%",
        ),
        overflow_x="auto", width="100%",
    )
    cards = rx.vstack(rx.foreach(DashboardState.keys, key_card), spacing="2", width="100%")
    return rx.fragment(rx.mobile_only(cards, width="100%"), rx.tablet_and_desktop(table, width="100%"))


def key_card(key: rx.Var[dict[str, str]]) -> rx.Component:
    def line(label: str, value: rx.Var[str]) -> rx.Component:
        return rx.text(rx.text.span(label + " ", color=rx.color("gray", 11)), value, size="2")

    return rx.card(
        rx.vstack(
            rx.hstack(key_name(key), rx.spacer(), status_badge(key["status"]), width="100%", align="start"),
            rx.code(key["start"]),
            line("Scopes", key["scopes"]), line("Rate limit", key["rate"]),
            line("Last used", key["last_used"]), line("Requests this month", key["month_requests"]),
            key_actions(key),
            spacing="2", width="100%",
        ),
        width="100%", data_testid="key-card", data_status=key["status"], data_key_id=key["id"],
    )


def create_key_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(rx.button(rx.icon("plus", size=16), "Create key", data_testid="create-key")),
        rx.dialog.content(
            rx.dialog.title("Create an API key"),
            rx.form(
                rx.vstack(
                    rx.text("Name", size="2"), rx.input(name="name", placeholder="my app", required=True,
                                                          max_length=100, width="100%"),
                    rx.text("Environment", size="2"),
                    rx.select(["live", "test"], name="env", default_value="live"),
                    rx.text("Scopes", size="2"),
                    rx.grid(rx.foreach(DashboardState.scope_names, lambda scope: rx.checkbox(
                        scope, checked=DashboardState.form_scopes.contains(scope),
                        on_change=lambda checked: DashboardState.toggle_scope(scope, checked))),
                        columns=rx.breakpoints(initial="1", sm="2"), gap="2", width="100%"),
                    rx.text("Rate limit", size="2"),
                    rx.input(name="rate_limit", id="key-rate", default_value="60/minute", width="100%",
                             on_change=DashboardState.check_rate.debounce(150), data_testid="key-rate",
                             aria_label="Rate limit", aria_describedby="key-rate-hint"),
                    rx.text(DashboardState.rate_hint, id="key-rate-hint", size="1", data_testid="key-rate-hint",
                            data_ok=rx.cond(DashboardState.rate_ok, "yes", "no"),
                            color=rx.cond(DashboardState.rate_ok, rx.color("gray", 11), rx.color("red", 11))),
                    rx.text("Concurrent jobs (" + DashboardState.concurrency_range + ")", size="2"),
                    rx.input(name="concurrent", id="key-concurrent", type="number", min=1, max=100,
                             aria_label="Concurrent jobs",
                             default_value="4", width="100%", data_testid="key-concurrent"),
                    rx.text("Monthly character quota (optional)", size="2"),
                    rx.input(name="quota", type="number", min=1, placeholder="unlimited", width="100%"),
                    rx.text("Expires after days (optional)", size="2"),
                    rx.input(name="expires_days", type="number", min=1, placeholder="never", width="100%"),
                    rx.cond(DashboardState.error != "", rx.callout(DashboardState.error, color_scheme="red",
                                                                   icon="triangle_alert", width="100%")),
                    rx.flex(rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                            rx.button("Create", type="submit", data_testid="submit-key",
                                      disabled=~DashboardState.rate_ok),
                            spacing="3", justify="end", width="100%"),
                    spacing="2", width="100%",
                ),
                on_submit=DashboardState.create_key, reset_on_submit=False,
            ),
        ),
        open=DashboardState.create_open, on_open_change=DashboardState.set_create_open,
    )


def revealed_key_dialog() -> rx.Component:
    """The key, shown once: Copy (which then says Copied), Done, a close button and Escape all close it."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.flex(rx.dialog.title("Your new API key", margin="0"), rx.dialog.close(rx.icon_button(
                        rx.icon("x", size=16), variant="ghost", color_scheme="gray", aria_label="Close",
                        data_testid="close-key")), justify="between", align="center", margin_bottom="0.75rem"),
            rx.callout("Copy it now: you will not see this key again.", icon="info", color_scheme="amber"),
            rx.code(DashboardState.revealed_key, data_testid="revealed-key", word_break="break-all",
                    margin_y="1rem", display="block"),
            rx.flex(rx.button(rx.cond(DashboardState.copied, rx.icon("check", size=16), rx.icon("copy", size=16)),
                              rx.cond(DashboardState.copied, "Copied", "Copy"), variant="soft",
                              on_click=DashboardState.copy_key, data_testid="copy-key", aria_live="polite"),
                    rx.button("Done", on_click=DashboardState.dismiss_key, data_testid="dismiss-key"),
                    spacing="3", justify="end"),
        ),
        open=DashboardState.revealed_key != "", on_open_change=DashboardState.dismiss_key,
    )


def usage_chart(title: str, data_key: str, name: str, height: int, ticks: rx.Var[list[int]]) -> rx.Component:
    """One day-by-day bar chart of the usage panel; every chart shares the x-axis (the same 30 days) and
    counts in whole numbers."""
    return rx.vstack(
        rx.text(title, size="2", color=rx.color("gray", 11)),
        rx.recharts.bar_chart(
            rx.recharts.bar(data_key=data_key, fill=rx.color("accent", 9), name=name, is_animation_active=False),
            rx.recharts.x_axis(data_key="day", interval="preserveStartEnd", min_tick_gap=16, tick={"fontSize": 12}),
            rx.recharts.y_axis(ticks=ticks, domain=[0, ticks[-1]], allow_decimals=False, interval=0, width=56,
                               tick={"fontSize": 12}),
            rx.recharts.graphing_tooltip(),
            data=DashboardState.usage, width="100%", height=height, margin={"top": 10, "left": 0, "right": 8},
        ),
        width="100%", spacing="1",
    )


def usage_panel() -> rx.Component:
    chooser = rx.select.root(
        rx.select.trigger(aria_label="Usage of"),
        rx.select.content(rx.foreach(DashboardState.key_choices,
                                     lambda choice: rx.select.item(choice["label"], value=choice["value"]))),
        value=DashboardState.chart_key, on_change=DashboardState.choose_chart, size="1",
    )
    empty = rx.callout("No usage in the last 30 days yet: requests with a key, and generations in the Studio, "
                       "show here by day.", icon="info", color_scheme="gray", width="100%",
                       data_testid="usage-empty")
    return panel(
        "Usage, last 30 days",
        chooser,
        rx.cond(DashboardState.usage_is_empty, empty, rx.fragment(
            usage_chart("Requests per day", "requests", "requests", 200, DashboardState.request_ticks),
            usage_chart("Characters synthesized per day", "chars", "characters", 160, DashboardState.char_ticks),
        )),
        data_testid="usage-panel",
    )


def keys_panel() -> rx.Component:
    empty = rx.vstack(
        rx.text("No API keys yet.", weight="bold"),
        rx.text("Create one, then call the API with it: see the example on the home page.", size="2",
                color=rx.color("gray", 11)),
        spacing="1", padding_y="1rem", data_testid="no-keys",
    )
    return panel(
        "API keys",
        rx.hstack(create_key_dialog(), rx.spacer(), width="100%"),
        rx.cond(DashboardState.error != "", rx.callout(DashboardState.error, color_scheme="red",
                                                       icon="triangle_alert", width="100%")),
        rx.cond(DashboardState.keys.length() > 0, key_table(), empty),
        revealed_key_dialog(),
    )


def section_nav(sections: list[tuple[str, str]], current: str) -> rx.Component:
    """The dashboard's sections as links, each its own address (`/dashboard/<slug>`); the one shown is marked."""
    return rx.flex(
        *[rx.link(rx.button(title, size="1", tab_index=-1,
                            **({"variant": "solid"} if slug == current else {"variant": "soft", "color_scheme": "gray"})),
                  href=f"/dashboard/{slug}" if slug else "/dashboard", data_testid=f"section-{slug or 'all'}",
                  **({"aria_current": "page"} if slug == current else {}))
          for slug, title in sections],
        gap="2", wrap="wrap", width="100%", role="navigation", aria_label="Dashboard sections",
        data_testid="section-nav")


def key_page_panel(key: rx.Var[dict[str, str]]) -> rx.Component:
    """One key: what it is, its limits and its rotation line (what it replaced or what replaced it), its actions."""
    def line(label: str, value: rx.Var[str], test_id: str = "") -> rx.Component:
        return rx.text(rx.text.span(label + " ", color=rx.color("gray", 11)), value, size="2",
                       data_testid=test_id or None)

    return panel(
        "Key " + key["name"],
        rx.hstack(rx.code(key["start"]), status_badge(key["status"]), spacing="2", align="center"),
        line("Environment", key["env"]), line("Scopes", key["scopes"]), line("Rate limit", key["rate"]),
        line("Last used", key["last_used"]), line("Requests this month", key["month_requests"]),
        rx.cond(key["quota"] != "", line("Quota", key["quota"])),
        line("Rotation", rx.cond(key["lineage"] != "", key["lineage"], "never rotated"), "key-rotation"),
        key_actions(key),
        data_testid="key-page-panel",
    )
