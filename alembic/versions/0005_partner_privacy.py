"""Privacy: the audit of deletions on request.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

The per-partner privacy policies (ip_mode, consent mapping, PII paths) live
in ``partners.policy`` (revision 0004, app/policy.py) and need no column of
their own. Deleting one identifier's data (``inlet events delete``) writes a
row here: who, when, which kind of identifier and its keyed hash, how many
rows; never the identifier or the data.

No index is added on the identifier columns: deletions are rare operator
actions, and an index would be paid for on every insert (and its creation
would lock a large events table). A deletion reads the partner's rows
through the (partner_id, received_at, id) index.
"""

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deletion_audit",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("partner_id", sa.Integer, nullable=False),
        sa.Column("identifier_kind", sa.Text, nullable=False),
        sa.Column("identifier_hash", sa.Text, nullable=False),
        sa.Column("onside_rows", sa.Integer, nullable=False),
        sa.Column("thrad_rows", sa.Integer, nullable=False),
        sa.Column("failed_events", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deletion_audit"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_deletion_audit_partner_id_partners"
        ),
    )
    op.create_index(
        "ix_deletion_audit_partner_id_identifier_hash",
        "deletion_audit",
        ["partner_id", "identifier_hash"],
    )


def downgrade() -> None:
    op.drop_index("ix_deletion_audit_partner_id_identifier_hash", "deletion_audit")
    op.drop_table("deletion_audit")
