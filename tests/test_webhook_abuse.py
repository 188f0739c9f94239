"""Webhooks under abuse: a trickling endpoint, floods of test events and resends, a racing endpoint cap, slow DNS,
addresses that smuggle a private IPv4 inside IPv6. Real loopback servers, real workers, SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.core.db import get_engine
from backend.core.models import WebhookDelivery, utcnow
from backend.services.webhooks import service as webhooks
from backend.services.webhooks.destinations import DestinationRefused, check_destination
from bench.trickler import Trickler
from tests.conftest import reset_caches
from tests.webhook_receiver import Receiver

OWNER, OTHER = "auth0|hostile-owner", "auth0|bystander"
VOICE = "en_US-joe-medium"


def setting(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    """Set `LOCKN_<NAME>` variables for this test (and the workers it starts) and forget cached settings."""
    for name, value in values.items():
        monkeypatch.setenv(f"LOCKN_{name.upper()}", str(value))
    reset_caches()


def delivery(delivery_id: str) -> webhooks.DeliveryView:
    owner_of = {d.id: d for owner in (OWNER, OTHER) for d in webhooks.list_deliveries(owner)}
    return owner_of[delivery_id]


def race(count: int, action: Callable[[], str]) -> list[str]:
    """Run `action` in `count` threads released at once; what each returned."""
    barrier = threading.Barrier(count)

    def run(_: int) -> str:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def age(delivery_id: str, **values: object) -> None:
    with get_engine().begin() as connection:
        connection.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))


# ----- item 1: a trickling endpoint --------------------------------------------------------------------------


def test_a_trickling_endpoint_is_cut_off_at_the_attempts_deadline(key_service, embedded_broker) -> None:
    """A header byte every 2–4 s never trips a per-read timeout; the attempt's own deadline ends it, as a failed
    try to be retried (before: the worker waited until the endpoint chose to finish, then called it delivered)."""
    assert webhooks.get_settings().webhook_timeout_s == 5  # the default, longer than any gap between two bytes
    trickler = Trickler(finish_after_s=25)
    try:
        endpoint, _ = webhooks.create_endpoint(OWNER, trickler.url, ["key.revoked"])
        test = webhooks.send_test(OWNER, endpoint.id)
        started = time.monotonic()
        webhooks.deliver(test.id)  # what the webhook worker's task runs
        took = time.monotonic() - started
        trickler.wait_for_hang_ups(1)
    finally:
        trickler.stop()
    tried = delivery(test.id)
    print(f"\ntrickling endpoint: the attempt ended after {took:.1f} s (deadline 5 s)")
    assert tried.status == "pending" and tried.attempts == 1 and tried.response_status is None
    assert tried.error == "the endpoint did not answer within 5 s"
    assert tried.next_attempt_at is not None, "a failed try is scheduled again"


def test_an_answer_with_endless_headers_is_a_failed_try(monkeypatch, key_service, embedded_broker) -> None:
    """Headers are bounded: 1 MB of them sent at once fails the attempt (httpcore stops at 100 KB)."""
    setting(monkeypatch, webhook_timeout_s=10)
    flood = Trickler(interval_s=(0.5, 0.5), finish_after_s=10, burst=b"X-Big: " + b"a" * 2**20)
    try:
        endpoint, _ = webhooks.create_endpoint(OWNER, flood.url, ["key.revoked"])
        test = webhooks.send_test(OWNER, endpoint.id)
        webhooks.deliver(test.id)
    finally:
        flood.stop()
    tried = delivery(test.id)
    assert tried.status == "pending" and tried.error == "could not reach the endpoint (RemoteProtocolError)"


def test_another_owners_speech_finishes_while_a_trickling_endpoint_holds_deliveries(
        monkeypatch, worker, webhook_worker) -> None:
    """make run's topology (speech worker + webhook worker): with two deliveries stuck on a trickling endpoint,
    a bystander's job still runs at once (before: both deliveries held the only `cpu` slot until the endpoint
    finished). Prints the job's time idle and under the trickle (medians of three); asserts only the order of events."""
    from backend.services.jobs.service import enqueue_synthesis, job_status

    setting(monkeypatch, webhook_timeout_s=20)  # the stuck deliveries outlive the job by far

    def speak(text: str) -> float:
        started = time.monotonic()
        job = enqueue_synthesis(OTHER, text, VOICE, "wav")
        while (job := job_status(job.id, OTHER)).status not in ("succeeded", "failed"):
            assert time.monotonic() - started < 120, job
            time.sleep(0.05)
        assert job.status == "succeeded", job.error
        return time.monotonic() - started

    speak("Warm the worker up first.")
    idle = statistics.median(speak(f"The bystander speaks while nobody abuses anything, take {n}.") for n in range(3))
    trickler = Trickler(finish_after_s=25)
    try:
        endpoint, _ = webhooks.create_endpoint(OWNER, trickler.url, ["job.succeeded"])
        for _ in range(2):
            webhooks.send_test(OWNER, endpoint.id)
        while len(trickler.opened) < 2:  # both deliveries are being trickled to
            time.sleep(0.05)
        loaded = statistics.median(speak(f"The bystander speaks while an endpoint trickles, take {n}.")
                                   for n in range(3))
        still_open = trickler.open_now
    finally:
        trickler.stop()
    print(f"\nbystander's job, median of 3: idle {idle:.2f} s, with a trickling webhook endpoint live {loaded:.2f} s "
          f"(x{loaded / idle:.2f})")
    assert still_open == 2, "the job finished while both deliveries were still held by the trickling endpoint"


# ----- every failure path reaches the give-up ----------------------------------------------------------------


def test_an_attempt_cut_off_by_the_time_limit_is_a_failed_try(monkeypatch, key_service, embedded_broker,
                                                             receiver: Receiver) -> None:
    """Celery's soft time limit (or any exception) mid-attempt is recorded and scheduled, and given up after the
    24 hours like any failed try (before: the exception escaped and the row stayed pending for the sweep)."""

    def cut_off(*_args: object) -> int:
        raise SoftTimeLimitExceeded()  # what Celery raises inside a task past its soft limit

    endpoint, _ = webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked"])
    monkeypatch.setattr(webhooks, "_post", cut_off)
    first = webhooks.send_test(OWNER, endpoint.id)
    webhooks.deliver(first.id)
    assert (delivery(first.id).status, delivery(first.id).error) == (
        "pending", "the attempt was cut off (SoftTimeLimitExceeded)")
    old = webhooks.send_test(OWNER, endpoint.id)
    age(old.id, created_at=utcnow() - timedelta(hours=24))
    webhooks.deliver(old.id)
    assert delivery(old.id).status == "failed" and "given up after 24 hours" in delivery(old.id).error


def test_the_sweep_gives_up_a_delivery_whose_attempts_never_finished(key_service, embedded_broker,
                                                                    receiver: Receiver) -> None:
    """A worker killed mid-attempt leaves its row pending; once its 24 hours are over the sweep gives it up
    instead of sending it again forever (before: it was resent every sweep)."""
    endpoint, _ = webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked"])
    lost = webhooks.send_test(OWNER, endpoint.id)
    recent = webhooks.send_test(OWNER, endpoint.id)
    age(lost.id, created_at=utcnow() - timedelta(hours=25), attempts=40, next_attempt_at=utcnow())
    age(recent.id, next_attempt_at=utcnow())
    assert webhooks.send_due_deliveries(utcnow() + timedelta(seconds=1)) == 1, "only the recent one is sent again"
    given_up = delivery(lost.id)
    assert given_up.status == "failed" and given_up.error.startswith("given up after 24 hours")
    assert delivery(recent.id).status == "pending"


# ----- item 2: test events and resends -----------------------------------------------------------------------


def test_test_events_do_not_fill_the_queue_admission_measures(monkeypatch, key_service, embedded_broker,
                                                              receiver: Receiver) -> None:
    """Deliveries wait on their own queue: however many test events one owner queues, another owner's speech
    finds room (before: they waited on `cpu`, counted against LOCKN_MAX_QUEUE_DEPTH, and speech answered 503)."""
    from backend.queue.inventory import queue_depth
    from backend.core.redis_client import get_redis
    from backend.services.jobs.admission import check_queue_room

    setting(monkeypatch, max_queue_depth=3, webhook_sends_per_minute=100)
    endpoint, _ = webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked"])
    for _ in range(5):
        webhooks.send_test(OWNER, endpoint.id)  # no worker runs: they stay queued
    check_queue_room("piper")  # the gate every speech request passes: room, although five deliveries wait
    assert queue_depth(get_redis(), "webhooks") == 5 and queue_depth(get_redis(), "cpu") == 0


def test_test_events_and_resends_share_a_rate_limit_per_owner(monkeypatch, key_service, embedded_broker,
                                                              receiver: Receiver) -> None:
    from backend.api import build_api
    from backend.services.keys.service import KeySpec

    setting(monkeypatch, webhook_sends_per_minute=3)
    key = key_service.create(OWNER, KeySpec("admin", scopes=("keys:read", "keys:write")))[1]
    endpoint, _ = webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked"])
    others, _ = webhooks.create_endpoint(OTHER, receiver.url, ["key.revoked"])
    app = TestClient(build_api())
    headers = {"Authorization": f"Bearer {key}"}
    sent = [app.post(f"/api/webhooks/{endpoint.id}/test", headers=headers) for _ in range(2)]
    assert [r.status_code for r in sent] == [202, 202]
    failed = sent[0].json()["id"]
    age(failed, status="failed")
    assert app.post(f"/api/webhooks/deliveries/{failed}/resend", headers=headers).status_code == 202  # the third
    refused = app.post(f"/api/webhooks/{endpoint.id}/test", headers=headers)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited" and "faster than allowed" in \
        refused.json()["error"]["message"]
    age(failed, status="failed")
    assert app.post(f"/api/webhooks/deliveries/{failed}/resend", headers=headers).status_code == 429
    assert len(webhooks.list_deliveries(OWNER)) == 2, "a refused test event writes no delivery"
    webhooks.send_test(OTHER, others.id)  # another owner's budget is untouched


def test_only_a_failed_delivery_can_be_resent(monkeypatch, key_service, embedded_broker, receiver: Receiver) -> None:
    """Resending a delivered (or still pending) event is refused and keeps its 24-hour window (before: it was sent
    again and its window restarted); two resends racing reopen a failed one once."""
    from backend.api import build_api
    from backend.services.keys.service import KeySpec

    setting(monkeypatch, webhook_sends_per_minute=100)
    key = key_service.create(OWNER, KeySpec("admin", scopes=("keys:read", "keys:write")))[1]
    endpoint, _ = webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked"])
    done = webhooks.send_test(OWNER, endpoint.id)
    webhooks.deliver(done.id)
    delivered = delivery(done.id)
    assert delivered.status == "succeeded"
    app = TestClient(build_api())
    refused = app.post(f"/api/webhooks/deliveries/{done.id}/resend", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_resendable"
    assert refused.json()["error"]["message"] == "Only a failed delivery can be resent; this one is succeeded."
    assert delivery(done.id) == delivered, "nothing about it changed"
    pending = webhooks.send_test(OWNER, endpoint.id)
    with pytest.raises(webhooks.NotResendable, match="pending"):
        webhooks.resend(OWNER, pending.id)
    age(pending.id, status="failed")

    def resend() -> str:
        try:
            return webhooks.resend(OWNER, pending.id).status
        except webhooks.NotResendable:
            return "refused"

    assert sorted(race(2, resend)) == ["pending", "refused"]


# ----- item 7: destinations and the endpoint cap -------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://[2002:c0a8:101::1]/x",        # 6to4 of 192.168.1.1
    "http://[2002:7f00:1::1]/x",          # 6to4 of 127.0.0.1 (refused even where loopback is allowed)
    "http://[2002:a9fe:a9fe::1]/x",       # 6to4 of 169.254.169.254, cloud metadata
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo
    "http://[fec0::1]/x",                 # site-local, which Python calls global
    "http://[64:ff9b::a00:1]/x",          # NAT64 of 10.0.0.1
    "http://[2001:db8::1]/x",             # documentation
])
def test_ipv6_addresses_carrying_private_ones_are_refused(url: str) -> None:
    for allow_loopback in (False, True):
        with pytest.raises(DestinationRefused):
            check_destination(url, allow_loopback=allow_loopback)


def test_a_6to4_address_of_a_public_host_is_allowed() -> None:
    assert check_destination("http://[2002:5db8:d822::1]/x", allow_loopback=False).address == "2002:5db8:d822::1"


def test_a_resolver_that_never_answers_is_given_up_on(monkeypatch, key_service, embedded_broker,
                                                      receiver: Receiver) -> None:
    """DNS has a deadline: adding an endpoint answers at once that the host did not resolve, and a delivery's
    lookup counts within its attempt (a failed try, retried later). `getaddrinfo` stands in for a resolver that
    hangs (as one behind a dropped UDP packet does for its resolv.conf timeouts)."""
    setting(monkeypatch, webhook_dns_timeout_s=0.5)
    endpoint, _ = webhooks.create_endpoint(OWNER, receiver.url.replace("127.0.0.1", "localhost"), ["key.revoked"])
    real = socket.getaddrinfo

    def hanging(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "localhost":
            time.sleep(5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    started = time.monotonic()
    with pytest.raises(webhooks.InvalidWebhook, match="could not be resolved within 0.5 s"):
        webhooks.create_endpoint(OWNER, "http://localhost:9/other", ["key.revoked"])
    test = webhooks.send_test(OWNER, endpoint.id)
    webhooks.deliver(test.id)
    print(f"\ntwo hanging lookups answered in {time.monotonic() - started:.2f} s")
    tried = delivery(test.id)
    assert tried.status == "pending" and tried.error == "the host 'localhost' could not be resolved within 0.5 s"
    assert receiver.requests == []


def test_the_endpoint_cap_holds_against_concurrent_creates(key_service, embedded_broker,
                                                           receiver: Receiver) -> None:
    """Twenty creates at once make exactly ten endpoints; then, one slot free, two racing creates make one.
    (Before: each counted the endpoints, then inserted, so racing creates passed the cap.) SQLite and PostgreSQL."""

    def create() -> str:
        try:
            webhooks.create_endpoint(OWNER, receiver.url, ["key.revoked"])
            return "made"
        except webhooks.InvalidWebhook as exc:
            return str(exc)

    outcomes = race(20, create)
    assert outcomes.count("made") == webhooks.MAX_ENDPOINTS == len(webhooks.list_endpoints(OWNER))
    assert all("the most there may be" in outcome for outcome in outcomes if outcome != "made")
    for _ in range(3):
        webhooks.delete_endpoint(OWNER, webhooks.list_endpoints(OWNER)[3].id)
        assert race(2, create).count("made") == 1
        assert len(webhooks.list_endpoints(OWNER)) == webhooks.MAX_ENDPOINTS
