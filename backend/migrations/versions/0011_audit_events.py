"""audit_events: an append-only record of what was done to each owner's keys, sessions and voices

Revision ID: 0011_audit_events
Revises: 0010_request_logs
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_audit_events"
down_revision = "0010_request_logs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=60), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=120), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
    )
    op.create_index("ix_audit_events_owner_created", "audit_events", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_table("audit_events")
