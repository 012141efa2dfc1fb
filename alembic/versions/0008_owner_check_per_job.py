"""The event tables' foreign keys, checked once a transaction instead of once a row.

On PostgreSQL a foreign key is checked by a trigger for every row inserted:
``events.partner_id`` cost 8-9 ms of a 1,000-event job's ~35 ms move
(EXPLAIN ANALYZE: "Trigger for constraint fk_events_partner_id_partners:
calls=1000"), and a Thrad row paid it twice (partner and API key). Every
row of a job names the same partner, so the same question was asked a
thousand times.

This revision drops those three constraints (events.partner_id,
thrad_events.partner_id, thrad_events.api_key_id) on PostgreSQL and adds
``inlet_require_owners``, which a worker's transaction calls once, before
its first row (worker/sql.py). It asks what the triggers asked, with the
same lock and the same error:

- each partner (and API key) the transaction's rows name is locked
  ``FOR KEY SHARE``, as the trigger locks it, so a concurrent DELETE of it
  waits for the transaction to end;
- one that does not exist raises SQLSTATE 23503 (foreign_key_violation),
  which the worker counts as permanent, as it did the trigger's.

What is given up: a partner or API key deleted by hand after events were
stored under it no longer fails on those events. Inlet never deletes
either (partners and keys are revoked, their rows kept), and support's
lookups and exports find events by partner id whatever becomes of the row.
SQLite keeps its foreign keys: its check costs little, and its tables are
rebuilt by every migration that touches them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (table, constraint, definition): the constraints this revision replaces.
FOREIGN_KEYS = (
    ("events", "fk_events_partner_id_partners", "(partner_id) REFERENCES partners (id)"),
    (
        "thrad_events",
        "fk_thrad_events_partner_id_partners",
        "(partner_id) REFERENCES partners (id)",
    ),
    (
        "thrad_events",
        "fk_thrad_events_api_key_id_api_keys",
        "(api_key_id) REFERENCES api_keys (id)",
    ),
)

REQUIRE_OWNERS = """
CREATE FUNCTION inlet_require_owners(partner_ids integer[], api_key_ids integer[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    present integer[];
    missing integer;
BEGIN
    SELECT coalesce(array_agg(id), '{}') INTO present
    FROM (SELECT id FROM partners WHERE id = ANY(partner_ids) ORDER BY id FOR KEY SHARE) AS p;
    SELECT min(x) INTO missing FROM unnest(partner_ids) AS x WHERE x <> ALL(present);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'events name partner id %, and no partner has that id', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT coalesce(array_agg(id), '{}') INTO present
    FROM (SELECT id FROM api_keys WHERE id = ANY(api_key_ids) ORDER BY id FOR KEY SHARE) AS k;
    SELECT min(x) INTO missing FROM unnest(api_key_ids) AS x WHERE x <> ALL(present);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'events name API key id %, and no API key has that id', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(REQUIRE_OWNERS)
    for table, name, _ in FOREIGN_KEYS:
        # On a partitioned table: its partitions' copies go with it.
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, definition in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY {definition}")
    op.execute("DROP FUNCTION inlet_require_owners(integer[], integer[])")
