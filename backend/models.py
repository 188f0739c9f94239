"""SQLModel tables. The schema itself is owned by the Alembic migrations in `backend/migrations`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp LockN stores is UTC."""
    return datetime.now(UTC)


class User(SQLModel, table=True):
    """A person who signed in. `id` is the identity provider's `sub`, so it is stable across logins."""

    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
