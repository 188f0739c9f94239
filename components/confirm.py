"""One confirmation dialog for every action that cannot be undone (revoke a key, delete a voice, a generation or a
webhook endpoint, rotate a webhook secret).

Why one helper: a person learns the dialog once — a title that names the object, a sentence that says what is lost,
"keep" on the left, the red action on the right — and every destructive button in the app asks the same way.
"""

from __future__ import annotations

from typing import Any

import reflex as rx


def confirm_action(trigger: str, title: rx.Var[str] | str, consequence: rx.Var[str] | str, action: str,
                   on_confirm: Any, *, trigger_testid: str, confirm_testid: str, keep: str = "Cancel",
                   trigger_props: dict[str, Any] | None = None) -> rx.Component:
    """A `trigger` button that opens an alert dialog: `title` (naming the object), `consequence` (what is lost),
    `keep` closes it untouched, `action` runs `on_confirm`. The trigger is red and ghostly unless
    `trigger_props` say otherwise."""
    props = {"size": "1", "variant": "ghost", "color_scheme": "red", **(trigger_props or {})}
    return rx.alert_dialog.root(
        rx.alert_dialog.trigger(rx.button(trigger, data_testid=trigger_testid, **props)),
        rx.alert_dialog.content(
            rx.alert_dialog.title(title, style={"overflow_wrap": "anywhere"}),
            rx.alert_dialog.description(consequence),
            rx.flex(
                rx.alert_dialog.cancel(rx.button(keep, variant="soft", color_scheme="gray",
                                                 data_testid="confirm-keep")),
                rx.alert_dialog.action(rx.button(action, color_scheme="red", data_testid=confirm_testid,
                                                 on_click=on_confirm)),
                spacing="3", justify="end", margin_top="1rem", wrap="wrap",
            ),
            data_testid="confirm-dialog", max_width="28rem",
        ),
    )
