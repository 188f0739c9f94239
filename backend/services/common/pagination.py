"""Newest-first keyset pagination, shared by every owner-scoped listing (keys, jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlmodel import Session, SQLModel, col, select

from backend.services.common.ownership import owned_row

Row = TypeVar("Row", bound=SQLModel)


class BadCursor(ValueError):
    """The cursor is not an item of this owner's listing."""


@dataclass(frozen=True)
class Page(Generic[Row]):
    items: list[Row]
    next_cursor: str | None


def newest_first(session: Session, model: type[Row], owner: str, limit: int, cursor: str | None,
                 where: Sequence[Any] = ()) -> Page[Row]:
    """`limit` of the owner's rows ordered by (created_at, id) descending, after the row named by `cursor`,
    narrowed by the extra conditions `where` (e.g. the request log's filters).

    The model needs `id`, `owner` and `created_at`. Keyset (not offset) pagination: stable while rows
    are added, and each page costs one indexed query.
    """
    query = select(model).where(model.owner == owner, *where)  # type: ignore[attr-defined]
    if cursor:
        anchor = owned_row(session, model, cursor, owner, BadCursor)
        created, ident = col(model.created_at), col(model.id)  # type: ignore[attr-defined]
        query = query.where((created < anchor.created_at) |  # type: ignore[attr-defined]
                            ((created == anchor.created_at) & (ident < anchor.id)))  # type: ignore[attr-defined]
    order = (col(model.created_at).desc(), col(model.id).desc())  # type: ignore[attr-defined]
    rows = list(session.exec(query.order_by(*order).limit(limit + 1)))
    items = rows[:limit]
    return Page(items, items[-1].id if len(rows) > limit else None)  # type: ignore[attr-defined]
