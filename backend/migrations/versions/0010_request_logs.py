"""request_logs: every keyed or signed-in /api and /v1 request, for its owner to look up

Revision ID: 0010_request_logs
Revises: 0009_job_request_id
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_request_logs"
down_revision = "0009_job_request_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_logs",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("chars", sa.Integer(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
    )
    op.create_index("ix_request_logs_owner_created", "request_logs", ["owner", "created_at"])
    op.create_index("ix_request_logs_created_at", "request_logs", ["created_at"])
    op.create_index("ix_request_logs_request_id", "request_logs", ["request_id"])


def downgrade() -> None:
    op.drop_table("request_logs")
