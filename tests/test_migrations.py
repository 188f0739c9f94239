"""The same Alembic migrations build the schema on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from backend.core import db


TABLES = {"users", "api_keys", "key_usage", "jobs", "cloned_voices", "login_sessions", "qa_runs"}


def assert_migrations_roundtrip(url: str) -> None:
    """Upgrade to head, compare with the models, downgrade to empty, upgrade again."""
    db.migrate(url)
    engine = db.engine_for(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        drift = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert drift == [], f"models and migrations disagree: {drift}"
    db.downgrade(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.migrate(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_on_sqlite(isolated_settings) -> None:
    assert_migrations_roundtrip(f"sqlite:///{isolated_settings / 'migrations.db'}")


@pytest.mark.postgres
def test_migrations_on_postgresql(postgres_database: str) -> None:
    assert_migrations_roundtrip(postgres_database)


def test_migrate_uses_the_configured_database(isolated_settings) -> None:
    db.migrate()
    assert (isolated_settings / "lockn.db").exists()
    assert TABLES <= set(inspect(db.get_engine()).get_table_names())
