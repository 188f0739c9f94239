"""The dashboard's history panels: "Requests" (your requests, filtered, a row opened) and "Activity" (the audit trail)."""

from __future__ import annotations

import reflex as rx

from components.dashboard import panel
from state.history import ActivityState, RequestLogState

STATUS_COLORS = {"2xx": "green", "3xx": "gray", "4xx": "amber", "5xx": "red"}


def status_badge(row: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.match(row["status_class"], *[(k, rx.badge(row["status"], color_scheme=c, variant="soft"))
                                            for k, c in STATUS_COLORS.items()], rx.badge(row["status"]))


def log_line(row: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.box(
        rx.flex(
            status_badge(row),
            rx.text(row["method"] + " " + row["route"], size="2", weight="medium", flex="1", min_width="0",
                    overflow_wrap="anywhere"),
            rx.text(row["latency"], size="1", color=rx.color("gray", 11)),
            gap="3", align="center", width="100%",
        ),
        rx.text(row["when"] + " UTC · " + row["key"], size="1", color=rx.color("gray", 11)),
        on_click=RequestLogState.open_row(row), cursor="pointer", padding="0.5rem 0.75rem", width="100%",
        border_bottom=f"1px solid {rx.color('gray', 4)}", _hover={"background": rx.color("gray", 3)},
        data_testid="log-row", data_status=row["status"],
    )


def detail(label: str, value: rx.Var[str]) -> rx.Component:
    return rx.cond(value != "", rx.flex(rx.text(label, size="2", color=rx.color("gray", 11), min_width="8rem"),
                                        rx.text(value, size="2", overflow_wrap="anywhere"), gap="3"))


def row_dialog() -> rx.Component:
    opened = RequestLogState.opened
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(opened["method"] + " " + opened["route"]),
            rx.vstack(
                detail("Request id", opened["request_id"]), detail("When", opened["when"] + " UTC"),
                detail("Status", opened["status"]), detail("Error", opened["error_code"]),
                detail("Key", opened["key"]), detail("Time to answer", opened["latency"]),
                detail("Job", opened["job_id"]), detail("Characters", opened["chars"]),
                detail("Audio", opened["audio"]), detail("Client network", opened["client"]),
                detail("User agent", opened["user_agent"]),
                spacing="2", width="100%", data_testid="log-detail",
            ),
            rx.flex(rx.dialog.close(rx.button("Close", variant="soft")), justify="end", margin_top="1rem"),
        ),
        open=opened.length() > 0, on_open_change=RequestLogState.close_row,
    )


def filters() -> rx.Component:
    def chooser(choices, name: str, label: str) -> rx.Component:  # type: ignore[no-untyped-def]
        """The select of filter `name` (`RequestLogState.log_<name>`)."""
        return rx.select.root(rx.select.trigger(aria_label=label), rx.select.content(choices),
                              value=getattr(RequestLogState, f"log_{name}"),
                              on_change=lambda value: RequestLogState.filter_by(name, value), size="1")

    keys = rx.foreach(RequestLogState.log_key_choices, lambda c: rx.select.item(c["label"], value=c["value"]))
    statuses = rx.foreach(RequestLogState.log_status_choices, lambda s: rx.select.item(s, value=s))
    routes = rx.foreach(RequestLogState.log_route_choices,
                        lambda r: rx.select.item(rx.cond(r == "all", "all routes", r), value=r))
    times = rx.foreach(RequestLogState.log_time_choices, lambda t: rx.select.item(t, value=t))
    search = rx.form(rx.input(name="request_id", placeholder="Find a request id (req_…)", size="1",
                              default_value=RequestLogState.log_search),
                     on_submit=RequestLogState.search_request_id, reset_on_submit=False)
    return rx.flex(chooser(keys, "key", "Key"), chooser(statuses, "status", "Status"),
                   chooser(routes, "route", "Route"), chooser(times, "since", "Time"),
                   search, gap="2", wrap="wrap", width="100%")


def request_log_panel() -> rx.Component:
    empty = rx.text("No requests yet: what your keys and this dashboard ask of the API shows here, newest first.",
                    size="2", color=rx.color("gray", 11), data_testid="no-logs")
    return panel(
        "Requests",
        filters(),
        rx.cond(RequestLogState.log_error != "", rx.callout(RequestLogState.log_error, color_scheme="red",
                                                            icon="triangle_alert", width="100%")),
        rx.cond(RequestLogState.log_rows.length() > 0,
                rx.vstack(rx.foreach(RequestLogState.log_rows, log_line), spacing="0", width="100%"), empty),
        rx.cond(RequestLogState.log_cursor != "",
                rx.button("Show older", variant="soft", size="1", on_click=RequestLogState.older_logs)),
        row_dialog(),
        on_mount=RequestLogState.load_logs, data_testid="logs-panel",
    )


def activity_line(event: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.box(
        rx.text(rx.text.span(event["who"], weight="medium"), " " + event["what"] + " ",
                rx.text.span(event["detail"], color=rx.color("gray", 11)), size="2"),
        rx.text(event["when"] + " UTC" + rx.cond(event["client"] != "", " · from " + event["client"], ""),
                size="1", color=rx.color("gray", 11)),
        padding="0.5rem 0.75rem", width="100%", border_bottom=f"1px solid {rx.color('gray', 4)}",
        data_testid="activity-row", data_action=event["action"],
    )


def activity_panel() -> rx.Component:
    empty = rx.text("Nothing yet: keys created, rotated or revoked, sign-ins and cloned voices show here.",
                    size="2", color=rx.color("gray", 11))
    return panel(
        "Activity",
        rx.cond(ActivityState.activity.length() > 0,
                rx.vstack(rx.foreach(ActivityState.activity, activity_line), spacing="0", width="100%"), empty),
        rx.cond(ActivityState.activity_cursor != "",
                rx.button("Show older", variant="soft", size="1", on_click=ActivityState.older_activity)),
        on_mount=ActivityState.load_activity, data_testid="activity-panel",
    )
