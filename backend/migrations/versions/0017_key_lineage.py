"""api_keys.lineage_id and ancestry: limits belong to a key's lineage (rotation) and its creators (child keys)

Revision ID: 0017_key_lineage
Revises: 0016_webhook_endpoint_slots
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_key_lineage"
down_revision = "0016_webhook_endpoint_slots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("lineage_id", sa.String(40), nullable=False, server_default=""))
        batch.add_column(sa.Column("ancestry", sa.String(400), nullable=False, server_default=""))
    # Existing keys: a successor spends its first predecessor's lineage; who created whom was never recorded,
    # so each chain starts as its own root.
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("rotated_from", sa.String),
                    sa.column("lineage_id", sa.String), sa.column("ancestry", sa.String))
    connection = op.get_bind()
    predecessor = dict(connection.execute(sa.select(keys.c.id, keys.c.rotated_from)).all())
    for key_id in predecessor:
        root, seen = key_id, {key_id}
        while predecessor.get(root) in predecessor and predecessor[root] not in seen:
            root = predecessor[root]
            seen.add(root)
        connection.execute(keys.update().where(keys.c.id == key_id).values(lineage_id=root, ancestry=f"/{root}/"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("ancestry")
        batch.drop_column("lineage_id")
