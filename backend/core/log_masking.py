"""Log-record hooks, and the first of them: masking anything shaped like an API key, in every logger.

Installed once per process by each entry point (web app, worker, CLI). A hook runs
when a record is created, so it covers every handler and formatter, including
ones that libraries add later, and the formatted message with its arguments.
(`request_context` adds the second: the request id.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from backend.core.key_format import KEY_PATTERN, mask_keys

_hooks_installed: set[str] = set()


def add_record_hook(name: str, hook: Callable[[logging.LogRecord], None]) -> None:
    """Run `hook` on every log record as it is made, in every logger, from now on; once per `name`."""
    if name in _hooks_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        hook(record)
        return record

    logging.setLogRecordFactory(factory)
    _hooks_installed.add(name)


def _mask(record: logging.LogRecord) -> None:
    message = record.getMessage() if record.args else str(record.msg)
    if KEY_PATTERN.search(message):
        record.msg, record.args = mask_keys(message), None


def install_key_masking() -> None:
    """Mask keys in all log records from now on (idempotent)."""
    add_record_hook("key-masking", _mask)
