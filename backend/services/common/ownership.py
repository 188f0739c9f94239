"""One owner-scoped lookup for every service: another owner's row is answered exactly like a missing one.

Every read or change of a key, job or cloned voice goes through `owned_row`, so no caller can tell that
an id exists without owning it, and no service can forget the owner check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session

Row = TypeVar("Row")


def owned_row(session: Session, model: type[Row], row_id: str, owner: str,
              missing: Callable[[str], Exception]) -> Row:
    """The row of `model` with `row_id` if `owner` owns it; otherwise raise `missing(row_id)`.

    An id with a control or invisible character (a `%00` in a URL) is no row's id: it is missing without asking
    the database, which would refuse it (PostgreSQL takes no NUL) and be taken for an outage."""
    row: Any = session.get(model, row_id) if row_id.isprintable() else None
    if row is None or row.owner != owner:
        raise missing(row_id)
    return row
