"""A log-record factory that masks anything shaped like an API key, in every logger.

Installed once per process by each entry point (web app, worker, CLI). It runs
when a record is created, so it covers every handler and formatter, including
ones that libraries add later, and the formatted message with its arguments.
"""

from __future__ import annotations

import logging

from backend.core.key_format import KEY_PATTERN, mask_keys

_installed = False


def install_key_masking() -> None:
    """Mask keys in all log records from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        message = record.getMessage() if record.args else str(record.msg)
        if KEY_PATTERN.search(message):
            record.msg, record.args = mask_keys(message), None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
