"""Event tables partitioned by day of receipt, dedup keys within a window (PostgreSQL).

Turns the unpartitioned ``events`` and ``thrad_events`` of an existing
deployment into tables partitioned by ``received_at``, one partition a day,
made ahead of time by pg_partman; the dedup keys move to ``event_keys`` and
``thrad_event_keys`` (worker/dedup.py, docs/storage.md). Every row is copied,
and the copy is counted before the old table is dropped.

The new tables are built from the old ones' live column list
(``LIKE ... INCLUDING DEFAULTS``), so columns that other migrations add to
the event tables cross without being named here. SQLite is unchanged.

The copy runs in the migration's one transaction: a deployment with a
large table should expect it to take as long as copying the table and
building its indexes once.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import os

import sqlalchemy as sa

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Days a partition set is made ahead of today by create_parent and every maintenance pass.
PREMAKE = 7

# table -> (dedup key table, its key column, the SQL of a stored row's key, the
# unique keys of the unpartitioned table that the key table replaces)
TABLES = {
    "events": {
        "keys": "event_keys",
        "key_ddl": "event_id uuid NOT NULL",
        "key_column": "event_id",
        "key_sql": "event_id",
        "pk": "pk_events",
        "index": ("ix_events_partner_id_received_at_id", "partner_id, received_at, id"),
        "fks": {"fk_events_partner_id_partners": "(partner_id) REFERENCES partners (id)"},
        "uniques": {"uq_events_partner_id_event_id": "partner_id, event_id"},
    },
    "thrad_events": {
        "keys": "thrad_event_keys",
        "key_ddl": "dedup_key text NOT NULL",
        "key_column": "dedup_key",
        # The text worker/thrad.py's dedup_key builds.
        "key_sql": (
            "CASE WHEN event_id IS NULL THEN 'i:' || ingest_id::text "
            "ELSE length(tag_id) || ':' || tag_id || event_id END"
        ),
        "pk": "pk_thrad_events",
        "index": ("ix_thrad_events_partner_id_received_at_id", "partner_id, received_at, id"),
        "fks": {
            "fk_thrad_events_partner_id_partners": "(partner_id) REFERENCES partners (id)",
            "fk_thrad_events_api_key_id_api_keys": "(api_key_id) REFERENCES api_keys (id)",
        },
        "uniques": {
            "uq_thrad_events_ingest_id": "ingest_id",
            "uq_thrad_events_partner_id_tag_id_event_id": "partner_id, tag_id, event_id",
        },
    },
}


def _dedup_days() -> int:
    # The same variable every Inlet process reads (app/settings.py); the
    # migration needs it only to give the copied rows their keys.
    return int(os.environ.get("INLET_DEDUP_DAYS") or 30)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS partman")
    conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
    span = _dedup_days() * 86400
    for table, spec in TABLES.items():
        _partition(conn, table, spec, span)


def _scalar(conn: sa.Connection, sql: str, **params: object) -> object:
    return conn.execute(sa.text(sql), params).scalar()


def _other_indexes(conn: sa.Connection, table: str, spec: dict) -> list[str]:  # type: ignore[type-arg]
    """CREATE INDEX statements of the table's indexes that this migration does not
    make itself (e.g. migration 0004's partial ``ix_*_flagged``), to make again."""
    known = {spec["pk"], spec["index"][0], *spec["uniques"]}
    return [
        definition
        for name, definition in conn.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
            {"t": table},
        ).all()
        if name not in known
    ]


def _partition(conn: sa.Connection, table: str, spec: dict, span: int) -> None:  # type: ignore[type-arg]
    old = f"{table}_unpartitioned"
    others = _other_indexes(conn, table, spec)
    conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {old}")
    # Free the names of the old table's constraints and indexes for the new one.
    for (name,) in conn.execute(
        sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"),
        {"t": old},
    ).all():
        conn.exec_driver_sql(f'ALTER TABLE {old} RENAME CONSTRAINT "{name}" TO "{name}_old"')
    for (name,) in conn.execute(
        sa.text(
            "SELECT indexname FROM pg_indexes"
            " WHERE tablename = :t AND right(indexname, 4) <> '_old'"
        ),
        {"t": old},
    ).all():
        conn.exec_driver_sql(f'ALTER INDEX "{name}" RENAME TO "{name}_old"')

    conn.exec_driver_sql(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (received_at)"
    )
    # The id sequence is owned by the old column: it would go with the old table.
    sequence = _scalar(conn, "SELECT pg_get_serial_sequence(:t, 'id')", t=old)
    if sequence:
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    # A partitioned table's primary key must hold the partition key.
    conn.exec_driver_sql(
        f"ALTER TABLE {table} ADD CONSTRAINT {spec['pk']} PRIMARY KEY (id, received_at)"
    )
    index, columns = spec["index"]
    conn.exec_driver_sql(f"CREATE INDEX {index} ON {table} ({columns})")
    for definition in others:
        conn.exec_driver_sql(definition)
    for name, definition in spec["fks"].items():
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY {definition}")

    first = _scalar(conn, f"SELECT date_trunc('day', min(received_at)) FROM {old}")
    conn.execute(
        sa.text(
            "SELECT partman.create_parent(:parent, 'received_at', 'native', 'daily',"
            " p_premake := :premake, p_start_partition := :start)"
        ),
        {
            "parent": f"public.{table}",
            "premake": PREMAKE,
            "start": str(first) if first is not None else None,
        },
    )
    conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM {old}")

    keys = spec["keys"]
    conn.exec_driver_sql(
        f"CREATE TABLE {keys} (partner_id integer NOT NULL, {spec['key_ddl']},"
        " period_start timestamptz NOT NULL,"
        f" CONSTRAINT pk_{keys} PRIMARY KEY (partner_id, {spec['key_column']}, period_start))"
        " PARTITION BY RANGE (period_start)"
    )
    # Keys from the start of the previous period: older ones no resend can meet.
    oldest = _scalar(
        conn, "SELECT to_timestamp((floor(extract(epoch FROM now()) / :s) - 1) * :s)", s=span
    )
    conn.execute(
        sa.text(
            "SELECT partman.create_parent(:parent, 'period_start', 'native', 'daily',"
            " p_premake := :premake, p_start_partition := :start)"
        ),
        {"parent": f"public.{keys}", "premake": PREMAKE, "start": str(oldest)},
    )
    # Each row's key under its period and the one before (worker/dedup.py).
    conn.execute(
        sa.text(
            f"INSERT INTO {keys} (partner_id, {spec['key_column']}, period_start)"
            f" SELECT partner_id, {spec['key_sql']},"
            "        to_timestamp((floor(extract(epoch FROM received_at) / :s) - back) * :s)"
            f" FROM {old} CROSS JOIN (VALUES (0), (1)) AS b (back)"
            " WHERE received_at >= :oldest"
            " ON CONFLICT DO NOTHING"
        ),
        {"s": span, "oldest": oldest},
    )

    copied = _scalar(conn, f"SELECT count(*) FROM {table}")
    before = _scalar(conn, f"SELECT count(*) FROM {old}")
    if copied != before:
        raise RuntimeError(f"{table}: copied {copied} rows of {before}; nothing was changed")
    conn.exec_driver_sql(f"DROP TABLE {old}")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table, spec in TABLES.items():
        _unpartition(conn, table, spec)
    conn.exec_driver_sql("DROP EXTENSION IF EXISTS pg_partman")
    conn.exec_driver_sql("DROP SCHEMA IF EXISTS partman CASCADE")


def _unpartition(conn: sa.Connection, table: str, spec: dict) -> None:  # type: ignore[type-arg]
    """Back to one table with unique keys: of rows that share a key (a resend
    stored again after the dedup window), the first received is kept."""
    # A partitioned table's index is defined "ON ONLY" the parent.
    others = [d.replace(" ON ONLY ", " ON ", 1) for d in _other_indexes(conn, table, spec)]
    old = f"{table}_unpartitioned"
    columns = [
        name
        for (name,) in conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        ).all()
    ]
    listed = ", ".join(columns)
    ranks = ", ".join(
        f"row_number() OVER (PARTITION BY {cols} ORDER BY received_at, id) AS rank_{n}"
        for n, cols in enumerate(spec["uniques"].values())
    )
    # NULLs are distinct in a unique key: a rank among NULL event ids means nothing.
    keep = " AND ".join(
        f"(rank_{n} = 1 OR event_id IS NULL)"
        if "event_id" in cols and table == "thrad_events"
        else f"rank_{n} = 1"
        for n, cols in enumerate(spec["uniques"].values())
    )
    conn.exec_driver_sql(f"CREATE TABLE {old} (LIKE {table} INCLUDING DEFAULTS)")
    conn.exec_driver_sql(
        f"INSERT INTO {old} ({listed}) SELECT {listed} FROM"
        f" (SELECT {listed}, {ranks} FROM {table}) AS ranked WHERE {keep}"
    )
    sequence = _scalar(conn, "SELECT pg_get_serial_sequence(:t, 'id')", t=table)
    if sequence:
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY {old}.id")
    for parent in (table, spec["keys"]):
        conn.execute(
            sa.text("DELETE FROM partman.part_config WHERE parent_table = :p"),
            {"p": f"public.{parent}"},
        )
        conn.exec_driver_sql(f"DROP TABLE {parent}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS partman.template_public_{parent}")
    conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {table}")
    conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {spec['pk']} PRIMARY KEY (id)")
    for name, cols in spec["uniques"].items():
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({cols})")
    index, cols = spec["index"]
    conn.exec_driver_sql(f"CREATE INDEX {index} ON {table} ({cols})")
    for definition in others:
        conn.exec_driver_sql(definition)
    for name, definition in spec["fks"].items():
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY {definition}")
