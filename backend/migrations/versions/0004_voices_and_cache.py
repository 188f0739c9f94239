"""cloned_voices, and jobs.cache_key for the content-addressed audio cache

Revision ID: 0004_voices_and_cache
Revises: 0003_jobs
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_voices_and_cache"
down_revision = "0003_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloned_voices",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("engine", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("transcript", sa.String(length=500), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cloned_voices_owner", "cloned_voices", ["owner"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cache_key", sa.String(length=64), nullable=True))
        batch.create_index("ix_jobs_cache_key", ["cache_key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_cache_key")
        batch.drop_column("cache_key")
    op.drop_index("ix_cloned_voices_owner", table_name="cloned_voices")
    op.drop_table("cloned_voices")
