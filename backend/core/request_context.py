"""What is known about the request being served: its id, and the facts its request log row is made of.

A request's id is the `X-Request-Id` of its answer and the `request_id` of its error body, so a person
who quotes it lets an operator find every line about that request. It lives in a context variable while
the request (or the worker's job) runs; `install_request_ids` makes every log record carry it, and puts
it in front of the message, so it shows in whatever handler prints the record.

`RequestFacts` is filled in as the request goes: who made it (the auth dependencies), which job it
started and how many characters (the job service), which error it ended with (the error handlers). It is
one mutable object per request, so what a route's worker thread notes is seen by the middleware that
writes the request log (`backend/api/request_id.py`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from backend.core.log_masking import add_record_hook

#: What an id taken from a trusted proxy may look like (anything else is replaced by one of ours).
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")

_current: ContextVar[str | None] = ContextVar("lockn_request_id", default=None)


@dataclass
class RequestFacts:
    """What the request log records about one request beyond method, route, status and timing."""

    owner: str | None = None
    key_id: str | None = None
    job_id: str | None = None
    chars: int | None = None
    audio_seconds: float | None = None
    error_code: str | None = None
    #: The client's address as the server saw it; only its network (`client`) is ever written down.
    address: str | None = None

    @property
    def client(self) -> str | None:
        """The client's network (/24, /48), never its host: worked out only when something records it."""
        return client_network(self.address)


def client_network(address: str | None) -> str | None:
    """203.0.113.7 → 203.0.113.0/24; an IPv6 address → its /48; anything else → None."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False))


_facts: ContextVar[RequestFacts | None] = ContextVar("lockn_request_facts", default=None)


def current_facts() -> RequestFacts | None:
    """The facts of the request being served (None outside a request: the CLI, a worker, a test)."""
    return _facts.get()


@contextmanager
def facts_scope(facts: RequestFacts) -> Iterator[RequestFacts]:
    token = _facts.set(facts)
    try:
        yield facts
    finally:
        _facts.reset(token)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(10)


def accepted_or_new(offered: str | None) -> str:
    """`offered` (from a proxy LockN trusts) when it looks like an id, else a new one."""
    return offered if offered and ACCEPTED_ID.fullmatch(offered) else new_request_id()


def current_request_id() -> str | None:
    return _current.get()


@contextmanager
def request_id_scope(request_id: str | None) -> Iterator[None]:
    """Everything logged inside is tagged with `request_id` (a job run by the worker uses its request's id)."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def _tag(record: logging.LogRecord) -> None:
    record.request_id = _current.get()
    if record.request_id:
        try:
            record.msg, record.args = f"[{record.request_id}] {record.getMessage()}", None
        except (TypeError, ValueError):  # arguments that do not fit the message: logging reports it itself
            pass


def install_request_ids() -> None:
    """Tag every log record made while a request id is current, from now on (idempotent)."""
    add_record_hook("request-ids", _tag)
