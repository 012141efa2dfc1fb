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
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


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
    for table, clamped in (
        ("events", "original_event_datetime"),
        ("thrad_events", "original_timestamp"),
    ):
        flagged = sa.text(f"violations IS NOT NULL OR {clamped} IS NOT NULL")
        op.create_index(
            f"ix_{table}_flagged",
            table,
            ["received_at"],
            postgresql_where=flagged,
            sqlite_where=flagged,
        )
    op.create_table(
        "event_schemas",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.Integer, nullable=False),
        sa.Column("event_name", sa.Text, nullable=False),
        sa.Column("schema", Json, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_schemas"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_event_schemas_partner_id_partners"
        ),
        sa.UniqueConstraint(
            "partner_id", "event_name", name="uq_event_schemas_partner_id_event_name"
        ),
    )


def downgrade() -> None:
    op.drop_table("event_schemas")
    op.drop_index("ix_thrad_events_flagged", "thrad_events")
    op.drop_index("ix_events_flagged", "events")
    with op.batch_alter_table("thrad_events") as batch:
        batch.drop_column("violations")
        batch.drop_column("original_timestamp")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("violations")
        batch.drop_column("original_event_datetime")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("policy")
