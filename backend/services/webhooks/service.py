"""Webhooks: an owner's endpoints hear of their jobs and keys, signed with the Standard Webhooks scheme.

The rules, in one place for the API, the dashboard and the workers:
- An endpoint is a public http(s) URL (`webhook_destinations`), a set of event types and a signing secret
  (`whsec_…`, shown once when made or rotated, stored encrypted). At most `MAX_ENDPOINTS` per owner, held as
  numbered slots under a unique index, so concurrent creates cannot pass the cap between count and insert.
- `emit` writes one delivery row per subscribed, enabled endpoint and hands each to a Celery task at once, on
  the `webhooks` queue, which a worker of its own consumes: a slow endpoint never holds a synthesis slot, and
  admission control (which measures the speech queues) never counts a delivery.
  Emitting never fails the action it reports: a broker that is down only delays the first attempt.
- A delivery is one attempt at a time (`deliver`): signed (`webhook-id`, `webhook-timestamp`,
  `webhook-signature` headers, by the `standardwebhooks` package), POSTed to the checked address, redirects
  not followed; a 2xx answer delivers it. One attempt, DNS included, has `LOCKN_WEBHOOK_TIMEOUT_S` in all (an
  endpoint trickling its answer a byte at a time gets no longer), and the answer's headers are bounded
  (httpcore's 100 KB). Whatever else ends an attempt is a failed try: it is tried again with exponential
  back-off (`retry_delay`) until `RETRY_WINDOW_S` (24 h) after the event, then marked failed. A destination
  refused by the address check fails at once (trying again would not change the answer).
- The workers' sweep (`workers/reaper.py`) sends the due retries (`send_due_deliveries`), gives up the ones
  whose 24 hours passed without an attempt that could say so (a worker killed mid-attempt), and sends the
  `key.expiring` events (`notify_expiring_keys`, once per key and endpoint, 7 days ahead). Every send claims
  its row first with a conditional UPDATE, so two sweeps or a sweep and a task never deliver one attempt twice.
- "Send test event" and "Resend" share one rate limit per owner (`LOCKN_WEBHOOK_SENDS_PER_MINUTE`), and only a
  failed delivery can be resent (its 24 hours start again); a pending or delivered one answers 409.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import secrets
import ssl
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from functools import cache

import httpx
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from standardwebhooks.webhooks import Webhook

from backend.core.db import get_engine
from backend.core.models import ApiKey, Job, WebhookDelivery, WebhookEndpoint, as_utc, utcnow
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue.app import get_celery
from backend.queue.routing import WEBHOOK_QUEUE, WEBHOOK_TASK
from backend.services.accounts.audit import audit_event
from backend.services.common.ownership import owned_row
from backend.services.keys.rate_limit import RedisRateLimiter
from backend.services.webhooks.destinations import Destination, DestinationRefused, UnresolvedHost, check_destination

logger = logging.getLogger("lockn.webhooks")

#: What an endpoint can subscribe to. `webhook.test` is sent only by "Send test event", to that endpoint.
EVENTS = ("job.succeeded", "job.failed", "batch.completed", "key.revoked", "key.expiring")
TEST_EVENT = "webhook.test"
MAX_ENDPOINTS = 10
#: How long a delivery keeps being tried after its event, and the longest wait between two tries.
RETRY_WINDOW_S = 24 * 3600
MAX_RETRY_DELAY_S = 6 * 3600
#: A row handed to the queue is not handed again by the sweep for this long (its task is on the way).
CLAIM_S = 120
#: How far ahead `key.expiring` warns.
EXPIRY_NOTICE = timedelta(days=7)
DELIVERY_PAGE = 50


class WebhookNotFound(LookupError):
    """No such endpoint or delivery among the caller's."""


class InvalidWebhook(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class SendingTooFast(Exception):
    """The owner asked for more test events and resends than `LOCKN_WEBHOOK_SENDS_PER_MINUTE` allows."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"You are sending test events and resends faster than allowed; try again in "
                         f"{self.retry_after_s} s.")


class NotResendable(Exception):
    """Only a failed delivery can be resent: a pending one is still being tried, a delivered one arrived."""

    def __init__(self, status: str) -> None:
        super().__init__(f"Only a failed delivery can be resent; this one is {status}.")


@dataclass(frozen=True)
class EndpointView:
    id: str
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookEndpoint) -> EndpointView:
        return cls(row.id, row.url, row.events.split(","), row.enabled, as_utc(row.created_at))


@dataclass(frozen=True)
class DeliveryView:
    id: str
    endpoint_id: str
    event_type: str
    status: str
    attempts: int
    response_status: int | None
    error: str | None
    latency_ms: float | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryView:
        return cls(row.id, row.endpoint_id, row.event_type, row.status, row.attempts, row.response_status,
                   row.error, row.latency_ms, as_utc(row.created_at), as_utc(row.delivered_at),
                   as_utc(row.next_attempt_at))


# ----- endpoints -------------------------------------------------------------------------------------------


def create_endpoint(owner: str, url: str, events: list[str]) -> tuple[EndpointView, str]:
    """A new endpoint and its signing secret (returned this once).

    The endpoint takes the owner's lowest free slot (0 … `MAX_ENDPOINTS` - 1); the unique index on
    (owner, slot) makes two creates racing for one slot end with one row, and the loser looks again."""
    url, events = url.strip(), _checked_events(events)
    _check_url(url)
    secret = _new_secret()
    for _ in range(MAX_ENDPOINTS + 1):  # each lost race means another create took a slot: bounded
        with Session(get_engine(), expire_on_commit=False) as session:
            taken = set(session.exec(select(WebhookEndpoint.slot).where(WebhookEndpoint.owner == owner)).all())
            free = [slot for slot in range(MAX_ENDPOINTS) if slot not in taken]
            if not free:
                raise InvalidWebhook(f"you have {len(taken)} webhook endpoints, the most there may be; delete one "
                                     "first", "url")
            row = WebhookEndpoint(id="wh_" + secrets.token_hex(8), owner=owner, url=url, events=",".join(events),
                                  secret_encrypted=_sealed(secret), slot=free[0])
            session.add(row)
            session.add(audit_event(owner, "webhook.created", row.id, url))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
        return EndpointView.of(row), secret
    raise InvalidWebhook("webhook endpoints are being added too fast to count; try again", "url")


def list_endpoints(owner: str) -> list[EndpointView]:
    with Session(get_engine()) as session:
        rows = session.exec(select(WebhookEndpoint).where(WebhookEndpoint.owner == owner)
                            .order_by(col(WebhookEndpoint.created_at))).all()
    return [EndpointView.of(row) for row in rows]


def set_enabled(owner: str, endpoint_id: str, enabled: bool) -> EndpointView:
    """Stop (or start again) sending to an endpoint; deliveries already pending stop with it."""
    with Session(get_engine(), expire_on_commit=False) as session:
        row = owned_row(session, WebhookEndpoint, endpoint_id, owner, WebhookNotFound)
        row.enabled = enabled
        session.add(row)
        session.add(audit_event(owner, "webhook.enabled" if enabled else "webhook.disabled", row.id, row.url))
        session.commit()
    return EndpointView.of(row)


def rotate_secret(owner: str, endpoint_id: str) -> str:
    """A new signing secret, in force for every delivery from now on (returned this once)."""
    secret = _new_secret()
    with Session(get_engine()) as session:
        row = owned_row(session, WebhookEndpoint, endpoint_id, owner, WebhookNotFound)
        row.secret_encrypted = _sealed(secret)
        session.add(row)
        session.add(audit_event(owner, "webhook.secret_rotated", row.id, row.url))
        session.commit()
    return secret


def delete_endpoint(owner: str, endpoint_id: str) -> None:
    with Session(get_engine()) as session:
        row = owned_row(session, WebhookEndpoint, endpoint_id, owner, WebhookNotFound)
        session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == row.id))  # type: ignore[call-overload]
        session.delete(row)
        session.add(audit_event(owner, "webhook.deleted", row.id, row.url))
        session.commit()


def send_test(owner: str, endpoint_id: str) -> DeliveryView:
    """A `webhook.test` event to this endpoint only (also when it is subscribed to nothing else); counts against
    the owner's send rate (`SendingTooFast` beyond it)."""
    check_send_rate(owner)
    with Session(get_engine()) as session:
        endpoint = owned_row(session, WebhookEndpoint, endpoint_id, owner, WebhookNotFound)
    delivery = _new_delivery(endpoint, TEST_EVENT, {"message": "A test event from LockN."}, None)
    return DeliveryView.of(_record_and_send([delivery])[0])


# ----- events ----------------------------------------------------------------------------------------------


def emit(owner: str, event_type: str, data: dict, event_key: str | None = None) -> int:
    """Queue `event_type` for every enabled endpoint of `owner` that wants it; how many were queued.

    Never raises: an event is news about something already done, and must not undo or fail it."""
    assert event_type in EVENTS, event_type
    try:
        with Session(get_engine()) as session:
            endpoints = session.exec(select(WebhookEndpoint).where(WebhookEndpoint.owner == owner,
                                                                   col(WebhookEndpoint.enabled).is_(True))).all()
        wanted = [e for e in endpoints if event_type in e.events.split(",")]
        return len(_record_and_send([_new_delivery(e, event_type, data, event_key) for e in wanted]))
    except Exception:  # noqa: BLE001 - see the docstring; the sweep or a resend can still deliver what was written
        logger.exception("could not queue %s for %s", event_type, owner)
        return 0


def job_event(job: Job) -> None:
    """`job.succeeded` or `job.failed` for a job that just ended."""
    event = "job.succeeded" if job.status == "succeeded" else "job.failed"
    base = get_settings().base_url
    emit(job.owner, event, {
        "job_id": job.id, "status": job.status, "voice": job.voice_id, "engine": job.engine, "format": job.format,
        "characters": job.text_chars, "duration_s": job.duration_s, "error": job.error,
        "status_url": f"{base}/api/voice/jobs/{job.id}",
        "audio_url": f"{base}/api/voice/jobs/{job.id}/audio" if job.status == "succeeded" else None})


def key_event(event_type: str, key: ApiKey) -> None:
    """`key.revoked` or `key.expiring` (the latter once per key and endpoint)."""
    emit(key.owner, event_type, {"key_id": key.id, "name": key.name, "start": key.start,
                                 "expires_at": as_utc(key.expires_at).isoformat() if key.expires_at else None},
         event_key=f"{event_type}:{key.id}" if event_type == "key.expiring" else None)


def notify_expiring_keys(now: datetime | None = None) -> int:
    """Queue `key.expiring` for every live key that expires within `EXPIRY_NOTICE` (each key once)."""
    now = now or utcnow()
    with Session(get_engine()) as session:
        keys = session.exec(select(ApiKey).where(col(ApiKey.revoked_at).is_(None), col(ApiKey.expires_at) > now,
                                                 col(ApiKey.expires_at) <= now + EXPIRY_NOTICE)).all()
    for key in keys:
        key_event("key.expiring", key)
    return len(keys)


# ----- deliveries ------------------------------------------------------------------------------------------


def list_deliveries(owner: str, endpoint_id: str | None = None, limit: int = DELIVERY_PAGE) -> list[DeliveryView]:
    """The owner's newest deliveries (of one endpoint, when given), newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.owner == owner)
    if endpoint_id:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    with Session(get_engine()) as session:
        rows = session.exec(query.order_by(col(WebhookDelivery.created_at).desc()).limit(min(limit, 200))).all()
    return [DeliveryView.of(row) for row in rows]


def resend(owner: str, delivery_id: str) -> DeliveryView:
    """Try a failed delivery again now: its 24 hours start again. Counts against the owner's send rate.

    `NotResendable` for a pending delivery (it is still being tried) or a delivered one (it arrived; resending
    it would also restart its 24 hours). One conditional UPDATE decides, so two resends racing reopen it once."""
    check_send_rate(owner)
    with Session(get_engine()) as session:
        row = owned_row(session, WebhookDelivery, delivery_id, owner, WebhookNotFound)
    now = utcnow()
    with get_engine().begin() as connection:
        reopened = connection.execute(
            update(WebhookDelivery).where(col(WebhookDelivery.id) == row.id, col(WebhookDelivery.status) == "failed")
            .values(status="pending", created_at=now, next_attempt_at=now + timedelta(seconds=CLAIM_S))).rowcount
    if reopened != 1:
        raise NotResendable(row.status if row.status != "failed" else "being resent already")
    _send_task(row.id)
    with Session(get_engine()) as session:
        return DeliveryView.of(session.get(WebhookDelivery, row.id))


def check_send_rate(owner: str) -> None:
    """Count one test event or resend against the owner's `LOCKN_WEBHOOK_SENDS_PER_MINUTE`, or raise
    `SendingTooFast` (nothing is sent then): each one is an outbound request someone else's server receives.
    Counted in the broker's Redis (the rate limiter's Redis store), so every web process shares one count."""
    decision = RedisRateLimiter(get_redis()).hit(f"webhook-sends:{owner}", get_settings().webhook_sends_per_minute, 60)
    if not decision.allowed:
        raise SendingTooFast(decision.retry_after)


def retry_delay(attempts: int) -> float:
    """Seconds before try `attempts + 1`: `LOCKN_WEBHOOK_RETRY_BASE_S` (5 s) × 4ⁿ, at most 6 h apart."""
    return min(get_settings().webhook_retry_base_s * 4 ** max(attempts - 1, 0), MAX_RETRY_DELAY_S)


def deliver(delivery_id: str) -> None:
    """One attempt at one delivery (the Celery task's body). Nothing happens unless the row is pending and this
    call wins the claim on its current attempt count."""
    with Session(get_engine()) as session:
        row = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, row.endpoint_id) if row is not None else None
    if row is None or row.status != "pending" or not _claim(row):
        return
    if endpoint is None or not endpoint.enabled:
        _finish(row, "failed", None, "the endpoint was disabled or deleted", None)
        return
    started = time.perf_counter()
    try:
        status = _post(endpoint, row)
    except UnresolvedHost as exc:  # DNS may answer next time
        _after_failure(row, None, str(exc), started)
        return
    except DestinationRefused as exc:
        _finish(row, "failed", None, str(exc), None)
        return
    except Exception as exc:  # noqa: BLE001 - whatever ends an attempt (timeout, protocol error, the task's time
        # limit, a bug) is a failed try, scheduled or given up here; never a row left pending for the sweep to resend
        _after_failure(row, None, _describe(exc), started)
        return
    if 200 <= status < 300:
        _finish(row, "succeeded", status, None, _elapsed_ms(started))
    else:
        _after_failure(row, status, f"the endpoint answered {status}", started)


def send_due_deliveries(now: datetime | None = None) -> int:
    """Hand every pending delivery whose time has come to the queue (the sweep); how many. A due one whose 24
    hours have passed is given up instead: its last attempt never finished (its worker was killed mid-way)."""
    now = now or utcnow()
    give_up_expired(now)
    with Session(get_engine()) as session:
        due = session.exec(select(WebhookDelivery.id).where(WebhookDelivery.status == "pending",
                                                            col(WebhookDelivery.next_attempt_at) <= now)).all()
    sent = 0
    for delivery_id in due:
        with get_engine().begin() as connection:  # claim: only one sweep sends it
            claimed = connection.execute(
                update(WebhookDelivery).where(col(WebhookDelivery.id) == delivery_id,
                                              col(WebhookDelivery.status) == "pending",
                                              col(WebhookDelivery.next_attempt_at) <= now)
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_S))).rowcount == 1
        if claimed:
            _send_task(delivery_id)
            sent += 1
    return sent


def give_up_expired(now: datetime | None = None) -> int:
    """Mark failed every pending delivery that is due and older than `RETRY_WINDOW_S`; how many. (One whose
    attempt ends normally is given up by that attempt; this catches the attempts that never ended.)"""
    now = now or utcnow()
    with get_engine().begin() as connection:
        return connection.execute(
            update(WebhookDelivery).where(col(WebhookDelivery.status) == "pending",
                                          col(WebhookDelivery.next_attempt_at) <= now,
                                          col(WebhookDelivery.created_at) <= now - timedelta(seconds=RETRY_WINDOW_S))
            .values(status="failed", next_attempt_at=None,
                    error="given up after 24 hours; the last attempt did not finish")).rowcount


# ----- inside --------------------------------------------------------------------------------------------


def _checked_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise InvalidWebhook(f"choose one or more events from {', '.join(EVENTS)}"
                             + (f" ({', '.join(unknown)} is not one)" if unknown else ""), "events")
    return [event for event in EVENTS if event in events]


def _allow_loopback() -> bool:
    return get_settings().env in ("dev", "test")


def _check_url(url: str) -> None:
    """The URL read strictly, then its destination checked (`webhook_destinations`). Strictly: a URL is one token,
    so any whitespace, control or invisible character inside it is refused (a `\\r\\n` would otherwise
    smuggle a header line into the stored URL), and it must parse as a URL (port in range, brackets closed)."""
    odd = next((at for at, char in enumerate(url) if char.isspace() or unicodedata.category(char)[0] == "C"), None)
    if odd is not None:
        raise InvalidWebhook(f"the URL holds U+{ord(url[odd]):04X} {unicodedata.name(url[odd], 'a control character')}"
                             f" at character {odd + 1}; a URL has no whitespace or control characters "
                             "(percent-encode them, such as %20 for a space)", "url")
    try:
        _ = urlsplit(url).port, httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidWebhook(f"the URL cannot be read: {exc}", "url") from None
    try:
        check_destination(url, _allow_loopback(), get_settings().webhook_dns_timeout_s)
    except DestinationRefused as exc:
        raise InvalidWebhook(str(exc), "url") from None


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _fernet() -> Fernet:
    """Encrypts signing secrets at rest, keyed from LOCKN_SECRET_KEY (a new LOCKN_SECRET_KEY means new secrets:
    rotate each endpoint's secret)."""
    digest = hashlib.sha256(b"lockn webhook secrets\x00" + get_settings().session_secret().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _sealed(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def _new_delivery(endpoint: WebhookEndpoint, event_type: str, data: dict, event_key: str | None) -> WebhookDelivery:
    now = utcnow()
    return WebhookDelivery(id="msg_" + secrets.token_hex(12), endpoint_id=endpoint.id, owner=endpoint.owner,
                           event_type=event_type, event_key=event_key, created_at=now,
                           payload={"type": event_type, "timestamp": now.isoformat(), "data": data},
                           next_attempt_at=now + timedelta(seconds=CLAIM_S))


def _record_and_send(deliveries: list[WebhookDelivery]) -> list[WebhookDelivery]:
    """Write each delivery (one already made for its once-only event is skipped), then queue it."""
    written = []
    for delivery in deliveries:
        try:
            with Session(get_engine(), expire_on_commit=False) as session:
                session.add(delivery)
                session.commit()
            written.append(delivery)
        except IntegrityError:
            continue  # this endpoint already has this once-only event (e.g. key.expiring for this key)
    for delivery in written:
        try:
            _send_task(delivery.id)
        except Exception:  # noqa: BLE001 - the broker is down: the sweep sends it once CLAIM_S has passed
            logger.warning("could not queue webhook delivery %s; the sweep will", delivery.id)
    return written


def _send_task(delivery_id: str) -> None:
    get_celery().send_task(WEBHOOK_TASK, args=[delivery_id], queue=WEBHOOK_QUEUE)


def _claim(row: WebhookDelivery) -> bool:
    with get_engine().begin() as connection:
        return connection.execute(
            update(WebhookDelivery).where(col(WebhookDelivery.id) == row.id, col(WebhookDelivery.status) == "pending",
                                          col(WebhookDelivery.attempts) == row.attempts)
            .values(attempts=row.attempts + 1, next_attempt_at=utcnow() + timedelta(seconds=CLAIM_S))).rowcount == 1


def _post(endpoint: WebhookEndpoint, row: WebhookDelivery) -> int:
    """Sign and send one attempt to the address that was checked (see `webhook_destinations`); the answer's
    status. The whole attempt, DNS included, ends within `LOCKN_WEBHOOK_TIMEOUT_S` (`TimeoutError` otherwise).
    The answer's body is never read: an endpoint cannot make a worker download anything."""
    settings = get_settings()
    deadline = time.monotonic() + settings.webhook_timeout_s
    destination = check_destination(endpoint.url, _allow_loopback(),
                                    min(settings.webhook_dns_timeout_s, settings.webhook_timeout_s))
    secret = _fernet().decrypt(endpoint.secret_encrypted.encode()).decode()
    body = json.dumps(row.payload, separators=(",", ":"))
    sent_at = utcnow()
    headers = {"webhook-id": row.id, "webhook-timestamp": str(int(sent_at.timestamp())),
               "webhook-signature": Webhook(secret).sign(row.id, sent_at, body),
               "content-type": "application/json", "user-agent": "LockN-Webhooks/1",
               "host": httpx.URL(endpoint.url).netloc.decode()}
    return asyncio.run(_send(destination, body, headers, deadline - time.monotonic()))


async def _send(destination: Destination, body: str, headers: dict[str, str], budget_s: float) -> int:
    """POST `body` and wait for the answer's status line and headers, all within `budget_s`.

    httpx's timeouts bound each read, not the whole: an endpoint sending a header byte every few seconds would
    never trip them. `asyncio.timeout` bounds the whole attempt and cancels it, connection and all. Response
    headers are bounded by httpcore (h11 refuses more than 100 KB of them)."""
    extensions = {"sni_hostname": destination.host} if destination.url.startswith("https://") else {}
    async with asyncio.timeout(max(budget_s, 0.001)):
        async with httpx.AsyncClient(timeout=max(budget_s, 0.001), follow_redirects=False,
                                     verify=_tls_context()) as client:
            async with client.stream("POST", destination.pinned_url, content=body, headers=headers,
                                     extensions=extensions) as response:
                return response.status_code


@cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (the system's trust store via certifi) for every attempt of this process: building one
    reads the CA bundle, ~20 ms of CPU each time, which a busy webhook worker would take from synthesis."""
    return httpx.create_ssl_context()


def _after_failure(row: WebhookDelivery, status: int | None, error: str, started: float) -> None:
    """Schedule the next try, or give up once the next one would fall past the 24 hours."""
    next_at = utcnow() + timedelta(seconds=retry_delay(row.attempts + 1))
    if next_at > as_utc(row.created_at) + timedelta(seconds=RETRY_WINDOW_S):
        _finish(row, "failed", status, error + "; given up after 24 hours", _elapsed_ms(started))
    else:
        _finish(row, "pending", status, error, _elapsed_ms(started), next_at)


def _finish(row: WebhookDelivery, status: str, response_status: int | None, error: str | None,
            latency_ms: float | None, next_attempt_at: datetime | None = None) -> None:
    values: dict[str, object] = {"status": status, "response_status": response_status, "error": error,
                                 "latency_ms": latency_ms, "next_attempt_at": next_attempt_at}
    if status == "succeeded":
        values["delivered_at"] = utcnow()
    with get_engine().begin() as connection:
        connection.execute(update(WebhookDelivery).where(col(WebhookDelivery.id) == row.id).values(**values))


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _describe(exc: Exception) -> str:
    if isinstance(exc, InvalidToken):
        return "the endpoint's secret cannot be read (LOCKN_SECRET_KEY changed?): rotate the secret"
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return f"the endpoint did not answer within {get_settings().webhook_timeout_s:g} s"
    if isinstance(exc, httpx.HTTPError):
        return f"could not reach the endpoint ({type(exc).__name__})"
    return f"the attempt was cut off ({type(exc).__name__})"
