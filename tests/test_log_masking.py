"""No log line ever carries a full API key, whichever logger or formatting style wrote it."""

from __future__ import annotations

import logging

from backend.core.log_masking import install_key_masking
from backend.core.key_format import generate_key


def test_keys_are_masked_in_messages_and_arguments(caplog) -> None:
    install_key_masking()
    key = generate_key("live")
    logger = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        logger.info("presented %s", key)
        logger.warning(f"header was Bearer {key}")
        logger.info("dict arg %(k)s", {"k": key})
        logging.getLogger("uvicorn.access").info('"GET /v1/models?key=%s HTTP/1.1" 401', key)
    assert len(caplog.records) == 4
    assert key not in caplog.text
    assert caplog.text.count(key[:12] + "…") == 4


def test_messages_without_keys_are_untouched(caplog) -> None:
    install_key_masking()
    with caplog.at_level(logging.INFO):
        logging.getLogger("x").info("%d jobs, %s", 3, "lk_live_ is just a prefix")
    assert caplog.records[0].getMessage() == "3 jobs, lk_live_ is just a prefix"
