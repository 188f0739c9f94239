"""jobs.instructions: the spoken-style direction a request gave (followed by engines that support it)

Revision ID: 0013_job_instructions
Revises: 0012_job_captions
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_job_instructions"
down_revision = "0012_job_captions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("instructions", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("instructions")
