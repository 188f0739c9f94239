"""Brand-new PostgreSQL databases for tests, dropped afterwards (one per test, or one per fault-test cluster)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Yields the URL of a new database on the server of `admin_url`; drops it afterwards."""
    admin = make_url(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"lockn_cluster_{uuid.uuid4().hex[:12]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
