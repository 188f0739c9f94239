"""Request ids: one per HTTP request, carried to every log line it causes, in the web tier and in the worker.

A request's id is the `X-Request-Id` of its answer and the `request_id` of its error body, so a person
who quotes it lets an operator find every line about that request. It lives in a context variable while
the request (or the worker's job) runs; `install_request_ids` makes every log record carry it, and puts
it in front of the message, so it shows in whatever handler prints the record.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: What an id taken from a trusted proxy may look like (anything else is replaced by one of ours).
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")

_current: ContextVar[str | None] = ContextVar("lockn_request_id", default=None)
_installed = False


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


def install_request_ids() -> None:
    """Tag every log record made while a request id is current, from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        record.request_id = _current.get()
        if record.request_id:
            try:
                record.msg, record.args = f"[{record.request_id}] {record.getMessage()}", None
            except (TypeError, ValueError):  # arguments that do not fit the message: logging reports it itself
                pass
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
