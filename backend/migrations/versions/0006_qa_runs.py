"""qa_runs: recorded runs of the release smoke suite

Revision ID: 0006_qa_runs
Revises: 0005_login_sessions
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_qa_runs"
down_revision = "0005_login_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qa_runs",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("passed_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("report_path", sa.String(length=1000), nullable=True),
    )
    op.create_index("ix_qa_runs_target", "qa_runs", ["target"])
    op.create_index("ix_qa_runs_finished_at", "qa_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_qa_runs_finished_at", table_name="qa_runs")
    op.drop_index("ix_qa_runs_target", table_name="qa_runs")
    op.drop_table("qa_runs")
