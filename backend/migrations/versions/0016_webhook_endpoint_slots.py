"""webhook_endpoints.slot: the per-owner endpoint cap held by a unique index, so concurrent creates cannot race it

Revision ID: 0016_webhook_endpoint_slots
Revises: 0015_batches
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_webhook_endpoint_slots"
down_revision = "0015_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("slot", sa.Integer(), nullable=True))
    # Existing endpoints take slots 0, 1, … per owner, oldest first (an owner a race left above the cap keeps
    # every endpoint; new ones are refused until they are back under it).
    op.execute("""
        UPDATE webhook_endpoints SET slot = (
            SELECT COUNT(*) FROM webhook_endpoints AS older
            WHERE older.owner = webhook_endpoints.owner
              AND (older.created_at < webhook_endpoints.created_at
                   OR (older.created_at = webhook_endpoints.created_at AND older.id < webhook_endpoints.id)))
    """)
    op.create_index("ux_webhook_endpoints_owner_slot", "webhook_endpoints", ["owner", "slot"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_webhook_endpoints_owner_slot", table_name="webhook_endpoints")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("slot")
