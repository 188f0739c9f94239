"""The dashboard's webhooks panel: add an endpoint (its secret shown once), send a test event, disable or enable
it, rotate its secret, delete it; and the delivery log (status, attempts, response code, latency) with resend."""

from __future__ import annotations

import reflex as rx

from backend.services.webhooks import service as webhooks
from state.auth import signed_in
from state.dashboard import DashboardState


def endpoint_row(endpoint: webhooks.EndpointView) -> dict[str, str]:
    return {"id": endpoint.id, "url": endpoint.url, "events": ", ".join(endpoint.events),
            "enabled": "yes" if endpoint.enabled else ""}


def delivery_row(delivery: webhooks.DeliveryView, urls: dict[str, str]) -> dict[str, str]:
    """A delivery as the log shows it, every value already formatted."""
    return {"id": delivery.id, "event": delivery.event_type, "status": delivery.status,
            "endpoint": urls.get(delivery.endpoint_id, delivery.endpoint_id),
            "attempts": str(delivery.attempts), "code": str(delivery.response_status or "—"),
            "latency": f"{delivery.latency_ms:,.0f} ms" if delivery.latency_ms is not None else "—",
            "when": delivery.created_at.strftime("%Y-%m-%d %H:%M:%S"), "error": delivery.error or "",
            "next": delivery.next_attempt_at.strftime("%H:%M:%S") if delivery.status == "pending" and
            delivery.next_attempt_at else ""}


class WebhookState(DashboardState):
    endpoints: list[dict[str, str]] = []
    deliveries: list[dict[str, str]] = []
    chosen_events: list[str] = ["job.succeeded", "job.failed"]
    #: A secret just made (new endpoint or rotation): shown once, until dismissed.
    new_secret: str = ""
    webhook_error: str = ""

    @rx.var
    def event_names(self) -> list[str]:
        return list(webhooks.EVENTS)

    def _refresh(self) -> None:
        owner = self._owner()
        if owner is None:
            return
        listed = webhooks.list_endpoints(owner)
        urls = {endpoint.id: endpoint.url for endpoint in listed}
        self.endpoints = [endpoint_row(endpoint) for endpoint in listed]
        self.deliveries = [delivery_row(delivery, urls) for delivery in webhooks.list_deliveries(owner)]

    def _act(self, action) -> None:  # type: ignore[no-untyped-def]
        """Run `action(owner)` and show what went wrong in words, then show the panel as it now is."""
        owner = self._owner()
        if owner is None:
            return
        self.webhook_error = ""
        try:
            action(owner)
        except (webhooks.InvalidWebhook, webhooks.WebhookNotFound, webhooks.SendingTooFast,
                webhooks.NotResendable) as exc:
            self.webhook_error = str(exc) or "That endpoint or delivery is gone."
        self._refresh()

    @rx.event
    @signed_in
    def load_webhooks(self, owner: str) -> None:
        self._refresh()

    @rx.event
    def toggle_event(self, event: str, checked: bool) -> None:
        chosen = set(self.chosen_events) | {event} if checked else set(self.chosen_events) - {event}
        self.chosen_events = [name for name in webhooks.EVENTS if name in chosen]

    @rx.event
    def add_endpoint(self, form: dict) -> None:
        def add(owner: str) -> None:
            _, self.new_secret = webhooks.create_endpoint(owner, str(form.get("url", "")), self.chosen_events)
        self._act(add)

    @rx.event
    def send_test(self, endpoint_id: str) -> None:
        self._act(lambda owner: webhooks.send_test(owner, endpoint_id))

    @rx.event
    def toggle_enabled(self, endpoint_id: str, enabled: str) -> None:
        self._act(lambda owner: webhooks.set_enabled(owner, endpoint_id, not enabled))

    @rx.event
    def rotate_secret(self, endpoint_id: str) -> None:
        def rotate(owner: str) -> None:
            self.new_secret = webhooks.rotate_secret(owner, endpoint_id)
        self._act(rotate)

    @rx.event
    def delete_endpoint(self, endpoint_id: str) -> None:
        self._act(lambda owner: webhooks.delete_endpoint(owner, endpoint_id))

    @rx.event
    def resend(self, delivery_id: str) -> None:
        self._act(lambda owner: webhooks.resend(owner, delivery_id))

    @rx.event
    def refresh_deliveries(self) -> None:
        self._refresh()

    @rx.event
    def dismiss_secret(self) -> None:
        self.new_secret = ""
