"""Webhooks end to end: a real worker delivers signed events to a receiver on loopback, retries a failing one with
back-off, and the address check keeps deliveries off private networks in production."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from backend.core.models import utcnow
from backend.services.webhooks import service as webhooks
from backend.services.webhooks.destinations import DestinationRefused, check_destination
from tests.conftest import reset_caches
from tests.webhook_receiver import Receiver

OWNER, OTHER = "auth0|webhook-owner", "auth0|someone-else"
VOICE = "en_US-joe-medium"


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> float:
    """Retries 0.3 s, 1.2 s, 4.8 s … apart instead of 5 s, 20 s, 80 s … (set before the worker starts)."""
    monkeypatch.setenv("LOCKN_WEBHOOK_RETRY_BASE_S", "0.3")
    reset_caches()
    return 0.3


def verified(request: dict, secret: str) -> dict:
    """The payload, after `standardwebhooks` checked its signature (raises if it does not match)."""
    return Webhook(secret).verify(request["body"], request["headers"])


def wait_for_delivery(delivery_id: str, status: str, timeout_s: float = 30.0) -> webhooks.DeliveryView:
    deadline = time.monotonic() + timeout_s
    while True:
        delivery = next(d for d in webhooks.list_deliveries(OWNER) if d.id == delivery_id)
        if delivery.status == status:
            return delivery
        assert time.monotonic() < deadline, delivery
        webhooks.send_due_deliveries()  # what the workers' sweep does every 30 s
        time.sleep(0.1)


def test_a_signed_job_succeeded_reaches_a_loopback_receiver(worker, webhook_worker, receiver: Receiver) -> None:
    from backend.services.jobs.service import enqueue_synthesis

    endpoint, secret = webhooks.create_endpoint(OWNER, receiver.url, ["job.succeeded", "job.failed"])
    assert secret.startswith("whsec_") and endpoint.events == ["job.succeeded", "job.failed"]
    job = enqueue_synthesis(OWNER, "Tell my server when you are done.", VOICE, "mp3")
    (request,) = receiver.wait_for(1)
    payload = verified(request, secret)
    assert payload["type"] == "job.succeeded" and payload["data"]["job_id"] == job.id
    assert payload["data"]["audio_url"].endswith(f"/api/voice/jobs/{job.id}/audio")
    assert request["headers"]["host"] == f"127.0.0.1:{receiver.server.server_port}"
    (delivery,) = webhooks.list_deliveries(OWNER)
    assert request["headers"]["webhook-id"] == delivery.id
    delivery = wait_for_delivery(delivery.id, "succeeded")
    assert (delivery.attempts, delivery.response_status, delivery.error) == (1, 200, None)
    assert delivery.latency_ms is not None and delivery.latency_ms > 0
    with pytest.raises(Exception):  # a secret that is not the endpoint's does not verify
        Webhook("whsec_" + "A" * 32).verify(request["body"], request["headers"])


def test_a_failing_receiver_is_retried_with_back_off(fast_retries: float, webhook_worker) -> None:
    failing = Receiver(statuses=[500, 503])
    try:
        endpoint, secret = webhooks.create_endpoint(OWNER, failing.url, ["job.failed"])
        test = webhooks.send_test(OWNER, endpoint.id)
        first_failure = wait_for_delivery(test.id, "pending")
        while first_failure.attempts < 1:
            first_failure = wait_for_delivery(test.id, "pending")
        done = wait_for_delivery(test.id, "succeeded")
        requests = failing.wait_for(3)
    finally:
        failing.server.shutdown()
    assert done.attempts == 3 and done.response_status == 200
    assert {r["headers"]["webhook-id"] for r in requests} == {test.id}, "one message, tried three times"
    assert all(verified(r, secret)["type"] == "webhook.test" for r in requests)
    gaps = [b["at"] - a["at"] for a, b in zip(requests, requests[1:])]
    assert gaps[0] >= fast_retries and gaps[1] >= 4 * fast_retries, gaps  # 0.3 s, then 1.2 s: exponential


def test_a_delivery_that_keeps_failing_is_given_up_after_24_hours(fast_retries: float, webhook_worker) -> None:
    failing = Receiver(statuses=[500] * 10)
    try:
        endpoint, _ = webhooks.create_endpoint(OWNER, failing.url, ["key.revoked"])
        test = webhooks.send_test(OWNER, endpoint.id)
        failing.wait_for(1)
        from sqlalchemy import update

        from backend.core.db import get_engine
        from backend.core.models import WebhookDelivery

        with get_engine().begin() as connection:  # the event happened a day ago
            connection.execute(update(WebhookDelivery).where(WebhookDelivery.id == test.id)
                               .values(created_at=utcnow() - timedelta(hours=24)))
        given_up = wait_for_delivery(test.id, "failed")
    finally:
        failing.server.shutdown()
    assert given_up.response_status == 500 and "given up after 24 hours" in given_up.error
    resent = webhooks.resend(OWNER, test.id)  # the log's "resend": tried again at once
    assert resent.status == "pending"


def test_redirects_are_not_followed(webhook_worker) -> None:
    bouncing = Receiver(statuses=[302], redirect_to="http://169.254.169.254/latest/meta-data/")
    try:
        endpoint, _ = webhooks.create_endpoint(OWNER, bouncing.url, ["key.revoked"])
        test = webhooks.send_test(OWNER, endpoint.id)
        bouncing.wait_for(1)
        delivery = wait_for_delivery(test.id, "pending")
        while delivery.response_status is None:
            delivery = wait_for_delivery(test.id, "pending")
    finally:
        bouncing.server.shutdown()
    assert delivery.response_status == 302 and delivery.error == "the endpoint answered 302"
    assert len(bouncing.requests) == 1


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/x", "http://10.0.0.8/x", "http://192.168.1.1/x",
    "http://172.16.5.4/x", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/x", "http://0.0.0.0/x",
    "http://[::ffff:10.0.0.1]/x", "http://[fd00::1]/x", "http://224.0.0.1/x", "ftp://example.com/x",
    "http://user:pass@93.184.216.34/x"])
def test_private_and_odd_destinations_are_refused_in_production(url: str) -> None:
    with pytest.raises(DestinationRefused):
        check_destination(url, allow_loopback=False)


def test_a_public_address_is_pinned_with_its_host_kept() -> None:
    destination = check_destination("https://93.184.216.34:8443/hook?x=1", allow_loopback=False)
    assert destination.pinned_url == "https://93.184.216.34:8443/hook?x=1" and destination.host == "93.184.216.34"
    assert check_destination("http://127.0.0.1:8080/h", allow_loopback=True).pinned_url == "http://127.0.0.1:8080/h"


def test_production_settings_refuse_a_loopback_endpoint(monkeypatch: pytest.MonkeyPatch, database) -> None:
    monkeypatch.setattr(webhooks, "_allow_loopback", lambda: False)  # what LOCKN_ENV=prod/rehearsal decide
    with pytest.raises(webhooks.InvalidWebhook, match="loopback"):
        webhooks.create_endpoint(OWNER, "http://127.0.0.1:8080/hook", ["job.succeeded"])
    assert webhooks.list_endpoints(OWNER) == []


def test_key_events(key_service, embedded_broker, receiver: Receiver) -> None:
    """`key.revoked` when a key is revoked (once), `key.expiring` once per key, 7 days ahead."""
    from backend.services.keys.service import KeySpec

    _, secret = webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked", "key.expiring"])
    soon = key_service.create(OWNER, KeySpec("soon", expires_at=utcnow() + timedelta(days=3)))[0]
    key_service.create(OWNER, KeySpec("later", expires_at=utcnow() + timedelta(days=30)))
    revoked = key_service.create(OWNER, KeySpec("gone"))[0]
    key_service.revoke(OWNER, revoked.id)
    key_service.revoke(OWNER, revoked.id)
    assert webhooks.notify_expiring_keys() == 1
    webhooks.notify_expiring_keys()  # the next sweep finds it again: still one event
    events = sorted((d.event_type, d.status) for d in webhooks.list_deliveries(OWNER))
    assert events == [("key.expiring", "pending"), ("key.revoked", "pending")]
    for delivery in webhooks.list_deliveries(OWNER):  # no worker here: deliver in-process, as the task would
        webhooks.deliver(delivery.id)
    payloads = {verified(r, secret)["type"]: verified(r, secret)["data"] for r in receiver.wait_for(2)}
    assert payloads["key.revoked"]["key_id"] == revoked.id and payloads["key.expiring"]["key_id"] == soon.id


def test_webhooks_api_scopes_and_owners(key_service, embedded_broker, receiver: Receiver) -> None:
    from backend.api import build_api
    from backend.services.keys.service import KeySpec

    writer = key_service.create(OWNER, KeySpec("admin", scopes=("keys:read", "keys:write")))[1]
    reader = key_service.create(OWNER, KeySpec("reader", scopes=("keys:read",)))[1]
    other = key_service.create(OTHER, KeySpec("other", scopes=("keys:read", "keys:write")))[1]
    app = TestClient(build_api())

    def call(method: str, path: str, key: str, **kwargs):  # type: ignore[no-untyped-def]
        return app.request(method, f"/api/webhooks{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs)

    made = call("POST", "", writer, json={"url": receiver.url, "events": ["job.succeeded"]})
    assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
    endpoint_id = made.json()["id"]
    assert "secret" not in call("GET", "", reader).json()["data"][0], "the secret is shown once"
    assert call("POST", "", reader, json={"url": receiver.url, "events": ["job.succeeded"]}).status_code == 403
    bad = call("POST", "", writer, json={"url": receiver.url, "events": ["job.exploded"]})
    assert bad.status_code == 422 and "job.exploded" in bad.json()["error"]["message"]
    assert call("GET", "", other).json()["data"] == []
    assert call("POST", f"/{endpoint_id}/test", other).status_code == 404
    test = call("POST", f"/{endpoint_id}/test", writer)
    assert test.status_code == 202 and test.json()["event_type"] == "webhook.test"
    rotated = call("POST", f"/{endpoint_id}/rotate-secret", writer).json()["secret"]
    assert rotated != made.json()["secret"]
    assert call("POST", f"/{endpoint_id}/disable", writer).json()["enabled"] is False
    log = call("GET", "/deliveries", reader).json()["data"]
    assert [d["id"] for d in log] == [test.json()["id"]] and call("GET", "/deliveries", other).json()["data"] == []
    assert call("POST", f"/deliveries/{log[0]['id']}/resend", other).status_code == 404
    assert call("DELETE", f"/{endpoint_id}", writer).status_code == 204
    assert call("GET", "", writer).json()["data"] == [] and call("GET", "/deliveries", reader).json()["data"] == []
    webhooks.deliver(test.json()["id"])  # its endpoint is gone: nothing is sent, nothing breaks
    assert receiver.requests == []
