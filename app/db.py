"""The engine factory and the table definitions (SQLAlchemy Core).

The tables here describe the schema; Alembic migrations create it, and
``alembic check`` in the test run keeps the two from drifting. The event
tables store what crosses the queue (``app/onside/contract.py``,
``app/thrad/contract.py``): ``tests/test_contract.py`` checks that their
columns and the contracts' fields agree, so a field added to a contract
needs its column (and its migration) here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from app.thrad.contract import PLAIN_TEXT_FIELDS, UA_FIELDS

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# jsonb on PostgreSQL (smaller, indexable); JSON text on SQLite.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# For optional JSON: an absent value is SQL NULL (``IS NULL`` finds it), not JSON null.
OptionalJson = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)
Timestamp = sa.DateTime(timezone=True)

# Schema objects that exist on one database only: on PostgreSQL the event
# tables are partitioned by day of receipt (migration 0006, docs/storage.md),
# and a unique key over every row of a partitioned table is impossible, so
# the dedup keys live in their own tables there; SQLite keeps its unique keys.
# alembic/env.py compares each object only on its own database.
SQLITE_ONLY = {"only_on": "sqlite"}
POSTGRESQL_ONLY = {"only_on": "postgresql"}

partners = sa.Table(
    "partners",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.LargeBinary, nullable=False),
    sa.Column("rate_limit", sa.Text, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", Timestamp, nullable=True),
    # The policies an operator set for this partner (app/policy.py); NULL: all defaults.
    sa.Column("policy", OptionalJson, nullable=True),
)

# Support staff for the admin page: separate from partners, so a partner's
# credentials can never open it. Same keyed hash as partner secrets.
admin_users = sa.Table(
    "admin_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("partner_id", sa.Integer, nullable=False),
    sa.Column("event_id", sa.Uuid(as_uuid=False), nullable=False),
    sa.Column("event_name", sa.Text, nullable=False),
    sa.Column("sent_event_name", sa.Text, nullable=False),
    sa.Column("event_datetime", Timestamp, nullable=False),
    sa.Column("installation_id", sa.Uuid(as_uuid=False), nullable=False),
    sa.Column("payload", Json, nullable=False),
    # The time as sent, when a clock guard clamped event_datetime (app/quality/clock.py).
    sa.Column("original_event_datetime", Timestamp, nullable=True),
    # Schema violations let through in warn mode (app/quality/schemas.py); NULL: none.
    sa.Column("violations", OptionalJson, nullable=True),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("job_id", sa.Text, nullable=True),
    # The idempotency key: an event id counts once per partner, never across
    # partners. SQLite only: PostgreSQL checks event_keys instead.
    sa.UniqueConstraint("partner_id", "event_id", info=SQLITE_ONLY),
    # SQLite only: on PostgreSQL a worker's transaction checks its rows'
    # partners once (inlet_require_owners, migration 0008), not row by row.
    sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], info=SQLITE_ONLY),
    # "The latest events of a partner" and the export's oldest-first scan.
    sa.Index(None, "partner_id", "received_at", "id"),
)
# The admin page's count of flagged events (app/admin/quality.py): a partial
# index holds the flagged rows only, so it costs nothing for the others.
sa.Index(
    "ix_events_flagged",
    events.c.received_at,
    postgresql_where=sa.or_(
        events.c.violations.is_not(None), events.c.original_event_datetime.is_not(None)
    ),
    sqlite_where=sa.or_(
        events.c.violations.is_not(None), events.c.original_event_datetime.is_not(None)
    ),
)

# Thrad's Events API: Bearer API keys, several per partner, each with a label.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("partner_id", sa.Integer, sa.ForeignKey("partners.id"), nullable=False),
    # The public half of the key ("ik_" + 16 hex): how a key is found and named.
    sa.Column("key_id", sa.Text, nullable=False, unique=True),
    sa.Column("label", sa.Text, nullable=False),
    # Keyed BLAKE2b of the secret half, as for the Basic credentials.
    sa.Column("key_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Index(None, "partner_id"),
)

# Single events of Thrad's Events API, enriched by the worker.
thrad_events = sa.Table(
    "thrad_events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("partner_id", sa.Integer, nullable=False),
    sa.Column("api_key_id", sa.Integer, nullable=False),
    # Given by the web tier to each accepted request: a job run twice lands once,
    # even for events without an event_id.
    sa.Column("ingest_id", sa.Uuid(as_uuid=False), nullable=False),
    sa.Column("tag_id", sa.Text, nullable=False),
    sa.Column("event_name", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=True),
    # Unix seconds, as sent (or the receive time): "timestamp" in the wire format.
    sa.Column("event_timestamp", sa.Double, nullable=False),
    *(sa.Column(name, sa.Text, nullable=True) for name in PLAIN_TEXT_FIELDS),
    sa.Column("view_time_ms", sa.Double, nullable=True),
    sa.Column("consent", OptionalJson, nullable=True),
    sa.Column("params", Json, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("ip_address", sa.Text, nullable=True),
    sa.Column("geo_country", sa.Text, nullable=True),
    sa.Column("geo_region", sa.Text, nullable=True),
    sa.Column("geo_city", sa.Text, nullable=True),
    sa.Column("geo_lat", sa.Double, nullable=True),
    sa.Column("geo_lon", sa.Double, nullable=True),
    *(sa.Column(name, sa.Text, nullable=True) for name in UA_FIELDS),
    # As for events: the timestamp as sent when clamped, and warn-mode violations.
    sa.Column("original_timestamp", sa.Double, nullable=True),
    sa.Column("violations", OptionalJson, nullable=True),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("job_id", sa.Text, nullable=True),
    # Thrad's dedup key. NULLs are distinct in a unique key, so an event
    # without event_id is always stored. SQLite only, as for events: on
    # PostgreSQL thrad_event_keys holds both keys.
    sa.UniqueConstraint("ingest_id", info=SQLITE_ONLY),
    sa.UniqueConstraint("partner_id", "tag_id", "event_id", info=SQLITE_ONLY),
    # As for events: checked once a transaction on PostgreSQL (migration 0008).
    sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], info=SQLITE_ONLY),
    sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], info=SQLITE_ONLY),
    sa.Index(None, "partner_id", "received_at", "id"),
)
sa.Index(
    "ix_thrad_events_flagged",
    thrad_events.c.received_at,
    postgresql_where=sa.or_(
        thrad_events.c.violations.is_not(None), thrad_events.c.original_timestamp.is_not(None)
    ),
    sqlite_where=sa.or_(
        thrad_events.c.violations.is_not(None), thrad_events.c.original_timestamp.is_not(None)
    ),
)


# A partner's JSON Schema for the payload (Onside) or params (Thrad) of one
# event name, normalized (app/quality/schemas.py).
event_schemas = sa.Table(
    "event_schemas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("partner_id", sa.Integer, sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("event_name", sa.Text, nullable=False),
    sa.Column("schema", Json, nullable=False),
    # "warn" or "enforce".
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("partner_id", "event_name"),
)

# One row per `inlet events delete` (app/ops/deletion.py): who asked, when,
# for which kind of identifier and how much went. The identifier itself is
# never stored, only its keyed hash; nor is any of the deleted data.
deletion_audit = sa.Table(
    "deletion_audit",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("deleted_at", Timestamp, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("partner_id", sa.Integer, sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("identifier_kind", sa.Text, nullable=False),
    sa.Column("identifier_hash", sa.Text, nullable=False),
    sa.Column("onside_rows", sa.Integer, nullable=False),
    sa.Column("thrad_rows", sa.Integer, nullable=False),
    sa.Column("failed_events", sa.Integer, nullable=False),
    sa.Index(None, "partner_id", "identifier_hash"),
)

# PostgreSQL's dedup keys (worker/dedup.py): each stored event's key under
# two consecutive periods of INLET_DEDUP_DAYS, partitioned by period_start so
# that keys older than the window go as whole partitions.
event_keys = sa.Table(
    "event_keys",
    metadata,
    sa.Column("partner_id", sa.Integer, nullable=False),
    sa.Column("event_id", sa.Uuid(as_uuid=False), nullable=False),
    sa.Column("period_start", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("partner_id", "event_id", "period_start"),
    info=POSTGRESQL_ONLY,
)

# Thrad's: dedup_key stands for (tag_id, event_id), or for the ingest_id of
# an event without event_id (worker/thrad.py dedup_key).
thrad_event_keys = sa.Table(
    "thrad_event_keys",
    metadata,
    sa.Column("partner_id", sa.Integer, nullable=False),
    sa.Column("dedup_key", sa.Text, nullable=False),
    sa.Column("period_start", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("partner_id", "dedup_key", "period_start"),
    info=POSTGRESQL_ONLY,
)


def exists_on(item: sa.Table | sa.Constraint, dialect: str) -> bool:
    """Whether a table or constraint of ``metadata`` exists on this database."""
    only_on = item.info.get("only_on")
    return only_on is None or only_on == dialect


def make_engine(url: str, **kwargs: object) -> Engine:
    """One engine per process, made by whoever needs it (never at import time)."""
    options: dict[str, object] = {
        "json_serializer": lambda obj: orjson.dumps(obj).decode(),
        "json_deserializer": orjson.loads,
        "pool_pre_ping": True,
        # A failed statement's exception (logged by RQ with its traceback)
        # must not carry the batch's payloads and addresses into the logs.
        "hide_parameters": True,
    }
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        # Web, workers and the CLI share one file: wait for the lock instead of failing.
        options["connect_args"] = {"timeout": 15}
    else:
        options["connect_args"] = {"connect_timeout": 5, "options": _utc_options(url)}
    options.update(kwargs)
    engine = sa.create_engine(url, **options)  # type: ignore[arg-type]
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _utc_options(url: str) -> str:
    """libpq's startup options, with the session time zone pinned to UTC.

    Timestamps are read back in the session's zone: under a database default
    such as America/New_York, a year-1 timestamp comes back in year 0 ("BC")
    and psycopg refuses it. Set at connection start, it costs no round trip
    and survives RESET ALL; options already in the URL are kept.
    """
    given = sa.engine.make_url(url).query.get("options") or ""
    if isinstance(given, tuple):
        given = " ".join(given)
    return f"{given} -c timezone=UTC".strip()


def _create_private_sqlite_file(url: str) -> None:
    """Create a new SQLite file 600 (its folder 700) before SQLite would make it 644.

    The file holds every event and the credential hashes. SQLite gives the WAL
    and its index the main file's mode, so they are private too.
    """
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):  # another process made it first
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_conn.cursor()
    # WAL lets the web tier read credentials while a worker writes a batch;
    # FULL keeps a committed batch through a power loss (its job is gone from Redis).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
