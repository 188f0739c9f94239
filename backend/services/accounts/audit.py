"""The audit trail: what was done to an owner's keys, sign-ins and voices, by whom, when and from where.

A service that changes something adds `audit_event(...)` to the very transaction that makes the change,
so the trail never claims what did not happen nor misses what did. Who did it comes from the request
being served: the key that called (`key:<id>`), otherwise the signed-in user (`user`), or, where
`actor_scope("operator")` is set (the admin CLI), the operator. Nothing updates or deletes an event.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlmodel import Session

from backend.core.db import get_engine
from backend.core.models import AuditEvent  # also the rows `owner_activity` hands out
from backend.core.request_context import current_facts, current_request_id
from backend.services.common.pagination import BadCursor, Page, newest_first

#: Every action the trail records, and how the dashboard says it.
ACTIONS = {
    "key.created": "created key", "key.rotated": "rotated key", "key.revoked": "revoked key",
    "session.signed_in": "signed in", "session.signed_out": "signed out",
    "voice.cloned": "cloned voice", "voice.deleted": "deleted voice",
    "webhook.created": "added webhook", "webhook.deleted": "deleted webhook",
    "webhook.secret_rotated": "rotated webhook secret", "webhook.enabled": "enabled webhook",
    "webhook.disabled": "disabled webhook",
}

_actor: ContextVar[str] = ContextVar("lockn_audit_actor", default="user")


@contextmanager
def actor_scope(actor: str) -> Iterator[None]:
    """Changes made inside are the `actor`'s (e.g. "operator" for the admin CLI)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def audit_event(owner: str, action: str, target: str | None = None, detail: str | None = None) -> AuditEvent:
    """The event row for `action`, to be added to the session that makes the change."""
    assert action in ACTIONS, action
    facts = current_facts()
    actor = f"key:{facts.key_id}" if facts is not None and facts.key_id else _actor.get()
    return AuditEvent(id="evt_" + secrets.token_hex(10), owner=owner, actor=actor, action=action, target=target,
                      detail=(detail or None) and detail[:500], request_id=current_request_id(),
                      client=facts.client if facts is not None else None)


class InvalidAuditQuery(ValueError):
    """The cursor is not one of the owner's events."""


def owner_activity(owner: str, limit: int = 50, cursor: str | None = None) -> Page[AuditEvent]:
    """The owner's events, newest first."""
    with Session(get_engine()) as session:
        try:
            return newest_first(session, AuditEvent, owner, limit, cursor)
        except BadCursor:
            raise InvalidAuditQuery("cursor is not an event of yours") from None
