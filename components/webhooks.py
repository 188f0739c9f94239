"""The dashboard's webhooks panel: endpoints with their actions, the secret shown once, and the delivery log."""

from __future__ import annotations

import reflex as rx

from components.confirm import confirm_action
from components.dashboard import panel
from state.webhooks import WebhookState

STATUS_COLORS = {"succeeded": "green", "pending": "amber", "failed": "red"}


def endpoint_line(endpoint: rx.Var[dict[str, str]]) -> rx.Component:
    enabled = endpoint["enabled"] == "yes"
    return rx.flex(
        rx.vstack(rx.text(endpoint["url"], size="2", weight="medium", style={"word_break": "break-all"}),
                  rx.text(endpoint["events"] + rx.cond(enabled, "", " · disabled"), size="1",
                          color=rx.color("gray", 11)), spacing="0", flex="1", min_width="0"),
        rx.hstack(
            rx.button("Send test event", size="1", variant="soft", on_click=WebhookState.send_test(endpoint["id"]),
                      data_testid="webhook-test"),
            rx.button(rx.cond(enabled, "Disable", "Enable"), size="1", variant="soft", color_scheme="gray",
                      on_click=WebhookState.toggle_enabled(endpoint["id"], endpoint["enabled"]),
                      data_testid="webhook-toggle"),
            confirm_action("Rotate secret", "Rotate the signing secret of " + endpoint["url"] + "?",
                           "The current secret stops at once: your receiver's signature checks reject every event "
                           "until it has the new secret, shown here once.", "Rotate secret",
                           WebhookState.rotate_secret(endpoint["id"]), trigger_testid="webhook-rotate",
                           confirm_testid="confirm-webhook-rotate",
                           trigger_props={"variant": "soft", "color_scheme": "gray"}),
            confirm_action("Delete", "Delete the endpoint " + endpoint["url"] + "?",
                           "It stops receiving events, and its delivery log goes with it. This cannot be undone.",
                           "Delete endpoint", WebhookState.delete_endpoint(endpoint["id"]),
                           trigger_testid="webhook-delete", confirm_testid="confirm-webhook-delete"),
            spacing="2", wrap="wrap"),
        direction=rx.breakpoints(initial="column", sm="row"), gap="2", width="100%", padding="0.5rem 0",
        border_bottom=f"1px solid {rx.color('gray', 4)}", data_testid="webhook-endpoint",
    )


def delivery_line(delivery: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.flex(
        rx.badge(delivery["status"], color_scheme=rx.match(delivery["status"], *STATUS_COLORS.items(), "gray")),
        rx.vstack(
            rx.text(delivery["event"] + " → " + delivery["endpoint"], size="2", style={"word_break": "break-all"}),
            rx.text(delivery["when"] + " UTC · " + delivery["attempts"] + " attempt(s) · HTTP " + delivery["code"]
                    + " · " + delivery["latency"] + rx.cond(delivery["next"] != "", " · next try " +
                                                              delivery["next"], ""),
                    size="1", color=rx.color("gray", 11)),
            rx.cond(delivery["error"] != "", rx.text(delivery["error"], size="1", color=rx.color("red", 11))),
            spacing="0", flex="1", min_width="0"),
        rx.cond(delivery["status"] == "failed",  # only a failed delivery can be resent (services/webhooks.resend)
                rx.button("Resend", size="1", variant="soft", on_click=WebhookState.resend(delivery["id"]),
                          data_testid="webhook-resend")),
        gap="2", align="center", width="100%", padding="0.4rem 0", border_bottom=f"1px solid {rx.color('gray', 4)}",
        data_testid="webhook-delivery", data_status=delivery["status"],
    )


def add_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.input(name="url", placeholder="https://example.com/hooks/lockn", type="url", required=True,
                     width="100%", data_testid="webhook-url"),
            rx.grid(rx.foreach(WebhookState.event_names, lambda name: rx.checkbox(
                        name, checked=WebhookState.chosen_events.contains(name),
                        on_change=lambda checked: WebhookState.toggle_event(name, checked))),
                    columns=rx.breakpoints(initial="1", sm="3"), spacing="2", width="100%"),
            rx.button("Add endpoint", type="submit", data_testid="webhook-add"),
            spacing="2", width="100%"),
        on_submit=WebhookState.add_endpoint, reset_on_submit=True, width="100%",
    )


def webhooks_panel() -> rx.Component:
    return panel(
        "Webhooks",
        rx.text("LockN POSTs signed events (Standard Webhooks) to your endpoints: jobs done or failed, batches "
                "completed, keys revoked "
                "or expiring within 7 days. Failed deliveries are retried with back-off for 24 hours.",
                size="2", color=rx.color("gray", 11)),
        add_form(),
        rx.cond(WebhookState.webhook_error != "", rx.callout(WebhookState.webhook_error, color_scheme="red",
                                                            icon="triangle_alert", data_testid="webhook-error")),
        rx.cond(WebhookState.new_secret != "", rx.callout(
            rx.vstack(rx.text("Signing secret — copy it now, it is not shown again:", size="2"),
                      rx.code(WebhookState.new_secret, data_testid="webhook-secret", style={"word_break": "break-all"}),
                      rx.button("Done", size="1", variant="soft", on_click=WebhookState.dismiss_secret),
                      spacing="2"),
            icon="key_round", color_scheme="green", width="100%")),
        rx.cond(WebhookState.endpoints.length() > 0,
                rx.vstack(rx.foreach(WebhookState.endpoints, endpoint_line), spacing="0", width="100%"),
                rx.text("No endpoints yet.", size="2", color=rx.color("gray", 11))),
        rx.hstack(rx.heading("Deliveries", size="3", as_="h3"), rx.spacer(),
                  rx.button("Refresh", size="1", variant="ghost", on_click=WebhookState.refresh_deliveries,
                            data_testid="webhook-refresh"), width="100%", align="center"),
        rx.cond(WebhookState.deliveries.length() > 0,
                rx.vstack(rx.foreach(WebhookState.deliveries, delivery_line), spacing="0", width="100%"),
                rx.text("Nothing sent yet.", size="2", color=rx.color("gray", 11))),
        on_mount=WebhookState.load_webhooks, data_testid="webhooks-panel",
    )
