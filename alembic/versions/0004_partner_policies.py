"""Per-partner policies, event schemas, schema violations and clock guards.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

``partners.policy`` holds only what an operator set for a partner (one JSON
object, see app/policy.py); NULL means every default.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OptionalJson = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)


def upgrade() -> None:
    with op.batch_alter_table("partners") as batch:
        batch.add_column(sa.Column("policy", OptionalJson, nullable=True))
    # Nullable columns without a default: no table rewrite on PostgreSQL.
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("original_event_datetime", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("violations", OptionalJson, nullable=True))
    with op.batch_alter_table("thrad_events") as batch:
        batch.add_column(sa.Column("original_timestamp", sa.Double, nullable=True))
        batch.add_column(sa.Column("violations", OptionalJson, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("thrad_events") as batch:
        batch.drop_column("violations")
        batch.drop_column("original_timestamp")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("violations")
        batch.drop_column("original_event_datetime")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("policy")
