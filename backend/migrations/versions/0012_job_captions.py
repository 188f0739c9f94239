"""jobs.captions_requested and jobs.captions: sentence and word timings for a job that asked for them

Revision ID: 0012_job_captions
Revises: 0011_audit_events
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_job_captions"
down_revision = "0011_audit_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("captions_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("captions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("captions")
        batch.drop_column("captions_requested")
