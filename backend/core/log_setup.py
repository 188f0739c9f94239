"""LockN's own log lines (the `lockn.*` loggers): one per record on stdout, JSON in production.

In production and its rehearsal each line is one JSON object (time, level, logger, message, request_id),
what a log shipper indexes; in development a plain line a person reads. Keys are masked and request ids
attached by the record hooks (`log_masking`, `request_context`) before any handler sees a record.
Libraries keep their own handlers (Celery, Granian): this configures only LockN's loggers.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from backend.core.settings import Settings

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Send `lockn.*` records at INFO and above to stdout, as JSON where `settings.distributed` (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    if settings.distributed:
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level",
                                                                       "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logger = logging.getLogger("lockn")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)  # records still propagate: a handler on the root (pytest's, say) sees them too
