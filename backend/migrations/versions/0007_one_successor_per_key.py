"""api_keys.rotated_from unique: a key has at most one successor

Two rotations of one key racing each other (or a key rotated again during its grace period) left
several live successors. The database now refuses a second one atomically. Successors made before
this revision keep working; only the oldest keeps its link to the key it replaced.

Revision ID: 0007_one_successor_per_key
Revises: 0006_qa_runs
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_one_successor_per_key"
down_revision = "0006_qa_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("rotated_from", sa.String),
                    sa.column("created_at", sa.DateTime))
    connection = op.get_bind()
    rows = connection.execute(sa.select(keys.c.id, keys.c.rotated_from).where(keys.c.rotated_from.is_not(None))
                              .order_by(keys.c.rotated_from, keys.c.created_at, keys.c.id)).all()
    seen: set[str] = set()
    for key_id, rotated_from in rows:
        if rotated_from in seen:
            connection.execute(sa.update(keys).where(keys.c.id == key_id).values(rotated_from=None))
        seen.add(rotated_from)
    op.create_index("ux_api_keys_rotated_from", "api_keys", ["rotated_from"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_api_keys_rotated_from", table_name="api_keys")
