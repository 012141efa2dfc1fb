"""Partners and Onside events.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("password_hash", sa.LargeBinary, nullable=False),
        sa.Column("rate_limit", sa.Text, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_partners"),
        sa.UniqueConstraint("name", name="uq_partners_name"),
        sa.UniqueConstraint("username", name="uq_partners_username"),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("partner_id", sa.Integer, nullable=False),
        sa.Column("event_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("event_name", sa.Text, nullable=False),
        sa.Column("sent_event_name", sa.Text, nullable=False),
        sa.Column("event_datetime", Timestamp, nullable=False),
        sa.Column("installation_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("job_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_events_partner_id_partners"
        ),
        sa.UniqueConstraint("partner_id", "event_id", name="uq_events_partner_id_event_id"),
    )
    op.create_index(
        "ix_events_partner_id_received_at_id", "events", ["partner_id", "received_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_events_partner_id_received_at_id", table_name="events")
    op.drop_table("events")
    op.drop_table("partners")
