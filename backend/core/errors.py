"""How an exception is shown to a person outside the process that raised it: its first line, no traceback.

A status card, `/health`, a log line about an outage and a command's error all show the same thing of an
exception: the first line of its text (later lines tend to carry tracebacks, connection strings and paths), capped
so one runaway message cannot fill a page. The full traceback belongs in the process's own log.
"""

from __future__ import annotations

#: The longest first line shown; a longer one is cut.
FIRST_LINE_CHARS = 300


def first_line(exc: BaseException, *, with_type: bool = False, limit: int = FIRST_LINE_CHARS) -> str:
    """`exc`'s first line of text, at most `limit` characters; its type's name when it has no text. `with_type`
    puts the type's name first ("OutOfMemoryError: …"), where the text alone does not say what went wrong."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0][:limit]
    return f"{type(exc).__name__}: {line}" if with_type else line
