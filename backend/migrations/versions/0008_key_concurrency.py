"""api_keys.max_concurrent_jobs: how many jobs of one key may be queued or running at once

Revision ID: 0008_key_concurrency
Revises: 0007_one_successor_per_key
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_key_concurrency"
down_revision = "0007_one_successor_per_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_concurrent_jobs", sa.Integer(), nullable=False, server_default="4"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("max_concurrent_jobs")
