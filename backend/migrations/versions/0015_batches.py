"""batches and batch_lines: files of lines spoken as ordinary jobs, a few at a time

Revision ID: 0015_batches
Revises: 0014_webhooks
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_batches"
down_revision = "0014_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("captions", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_batches_owner", "batches", ["owner"])
    op.create_table(
        "batch_lines",
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("voice", sa.String(120), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
    )
    op.create_index("ix_batch_lines_batch_status", "batch_lines", ["batch_id", "status", "line"])
    op.create_index("ix_batch_lines_job_id", "batch_lines", ["job_id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("batch_id")
    op.drop_table("batch_lines")
    op.drop_table("batches")
