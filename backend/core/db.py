"""Database engine, sessions and migrations.

One engine per database URL per process. SQLite is the embedded default and
PostgreSQL the production database; Alembic migrations (in `backend/migrations`)
are the only way the schema is created, on both, so development and production
never drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, event, text
from sqlmodel import Session, create_engine

from backend.core.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """A pooled engine for `url`; SQLite gets WAL mode so readers never block the writer."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args={"connect_timeout": 3})


def _configure_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # Durable against an application crash (WAL), without an fsync on every commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine() -> Engine:
    """The engine for the configured database."""
    return engine_for(get_settings().sqlalchemy_url)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on any error: no half-written rows."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def serialize_for(session: Session, scope: str, owner: str) -> None:
    """Make the rest of `session`'s transaction wait for any other transaction that called this for the same
    `scope` and `owner`, so a cap checked by counting rows and then inserting one holds under concurrency.

    PostgreSQL: a transaction-scoped advisory lock on a hash of the pair (released at commit or rollback).
    SQLite allows one writer at a time: a write as the transaction's first statement takes that lock now and
    waits for it (the busy timeout), where a count read first would let two transactions count the same rows."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"{scope}\x1f{owner}"})
    else:
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))


def ping(engine: Engine | None = None) -> None:
    """Run `SELECT 1`; raises when the database cannot be reached."""
    with (engine or get_engine()).connect() as connection:
        connection.execute(text("SELECT 1"))


def alembic_config(url: str | None = None) -> AlembicConfig:
    """Alembic configured for `url` (default: the configured database), no ini file needed."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", (url or get_settings().sqlalchemy_url).replace("%", "%%"))
    return config


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (the latest by default)."""
    if (url or get_settings().sqlalchemy_url).startswith("sqlite"):
        engine_for(url or get_settings().sqlalchemy_url)  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Take the database at `url` back to `revision` (empty by default)."""
    command.downgrade(alembic_config(url), revision)
