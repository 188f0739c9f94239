"""What a synthesis request may ask for, stated once for every door: the API's schemas and the Studio's inputs
show these limits and formats, and the jobs service enforces them (`service.enqueue_synthesis`).

Each value is decided where it belongs (speed and instructions by the engine contract every engine honours,
formats by the codecs); a door reads them here, so it depends on the rules of a request, not on the engine and
codec modules behind them.
"""

from __future__ import annotations

from backend.media.codecs import FORMATS, STREAMABLE, FormatName
from backend.media.engine import MAX_INSTRUCTIONS_CHARS, MAX_SPEED, MIN_SPEED

__all__ = ["FORMATS", "FormatName", "MAX_INSTRUCTIONS_CHARS", "MAX_SPEED", "MAX_TEXT_CHARS", "MIN_SPEED", "STREAMABLE",
           "content_type", "file_name"]

#: The longest text one request may ask to be spoken (a batch's file has many such lines).
MAX_TEXT_CHARS = 4096


def content_type(fmt: str) -> str:
    """The media type a job's audio in `fmt` is served as."""
    return FORMATS[fmt].content_type


def file_name(stem: str, fmt: str) -> str:
    """A download's file name for audio in `fmt`."""
    return f"{stem}.{FORMATS[fmt].extension}"
