"""API keys and Thrad events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

_TEXT_FIELDS = (
    "page_url",
    "referrer",
    "user_agent",
    "session_id",
    "client_id",
    "click_id",
    "impression_id",
    "bid_id",
    "attribution_type",
    "impression_state",
)
_UA_FIELDS = ("ua_browser", "ua_browser_version", "ua_os", "ua_os_version", "ua_device")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.Integer, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_api_keys_partner_id_partners"
        ),
        sa.UniqueConstraint("key_id", name="uq_api_keys_key_id"),
    )
    op.create_index("ix_api_keys_partner_id", "api_keys", ["partner_id"])
    op.create_table(
        "thrad_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("partner_id", sa.Integer, nullable=False),
        sa.Column("api_key_id", sa.Integer, nullable=False),
        sa.Column("ingest_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("tag_id", sa.Text, nullable=False),
        sa.Column("event_name", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=True),
        sa.Column("event_timestamp", sa.Double, nullable=False),
        *(sa.Column(name, sa.Text, nullable=True) for name in _TEXT_FIELDS),
        sa.Column("view_time_ms", sa.Double, nullable=True),
        sa.Column("consent", Json, nullable=True),
        sa.Column("params", Json, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("ip_address", sa.Text, nullable=True),
        sa.Column("geo_country", sa.Text, nullable=True),
        sa.Column("geo_region", sa.Text, nullable=True),
        sa.Column("geo_city", sa.Text, nullable=True),
        sa.Column("geo_lat", sa.Double, nullable=True),
        sa.Column("geo_lon", sa.Double, nullable=True),
        *(sa.Column(name, sa.Text, nullable=True) for name in _UA_FIELDS),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("job_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_thrad_events"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_thrad_events_partner_id_partners"
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_thrad_events_api_key_id_api_keys"
        ),
        sa.UniqueConstraint("ingest_id", name="uq_thrad_events_ingest_id"),
        sa.UniqueConstraint(
            "partner_id", "tag_id", "event_id", name="uq_thrad_events_partner_id_tag_id_event_id"
        ),
    )
    op.create_index(
        "ix_thrad_events_partner_id_received_at_id",
        "thrad_events",
        ["partner_id", "received_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_thrad_events_partner_id_received_at_id", table_name="thrad_events")
    op.drop_table("thrad_events")
    op.drop_index("ix_api_keys_partner_id", table_name="api_keys")
    op.drop_table("api_keys")
