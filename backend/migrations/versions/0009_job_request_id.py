"""jobs.request_id: the id of the request that asked for the job, for the worker's log lines

Revision ID: 0009_job_request_id
Revises: 0008_key_concurrency
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_job_request_id"
down_revision = "0008_key_concurrency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_id")
