"""``inlet events export``: stored events as JSON Lines."""

from __future__ import annotations

import heapq
import itertools
import sys
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import click
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Result

from app import partners as service
from app.cli.common import engine_for, load_settings, operator_errors
from app.cli.thrad_export import thrad_export_row, thrad_query
from app.db import events as events_table


def iso_utc(value: datetime) -> str:
    # SQLite hands back naive datetimes; everything Inlet stores is UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def export_row(row: Any) -> dict[str, Any]:
    return {
        "source": "onside",
        "event_id": str(row.event_id),
        "event_name": row.event_name,
        "sent_event_name": row.sent_event_name,
        "event_datetime": iso_utc(row.event_datetime),
        "installation_id": str(row.installation_id),
        "payload": row.payload,
        "received_at": iso_utc(row.received_at),
    }


@click.group()
def events() -> None:
    """Read stored events."""


@events.command()
@click.option("--partner", required=True, help="The partner whose events to export.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events.")
def export(partner: str, limit: int | None) -> None:
    """Write a partner's events to stdout as JSON Lines, oldest first.

    Both wire formats, merged by receive time; each line says its "source":
    "onside" (batch API) or "thrad" (Events API).
    """
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        partner_id = service.get_partner_id(engine, partner)
        t = events_table
        onside_query = (
            sa.select(t.c.event_id, t.c.event_name, t.c.sent_event_name, t.c.event_datetime,
                      t.c.installation_id, t.c.payload, t.c.received_at, t.c.id)
            .where(t.c.partner_id == partner_id)
            .order_by(t.c.received_at, t.c.id)
        )
        thrad = thrad_query(partner_id)
        if limit:
            onside_query, thrad = onside_query.limit(limit), thrad.limit(limit)
        out = sys.stdout.buffer
        # Streamed in chunks, one connection per table: a large export runs in
        # constant memory, and the two ordered streams merge as they come.
        with (
            engine.connect() as onside_conn,
            engine.connect() as thrad_conn,
            closing(_stream(onside_conn, onside_query)) as onside_rows,
            closing(_stream(thrad_conn, thrad)) as thrad_rows,
        ):
            merged = heapq.merge(
                ((row.received_at, 0, row.id, export_row(row)) for row in onside_rows),
                ((row.received_at, 1, row.id, thrad_export_row(row, iso_utc))
                 for row in thrad_rows),
                key=lambda item: item[:3],
            )
            for *_, item in itertools.islice(merged, limit):
                out.write(orjson.dumps(item) + b"\n")
        out.flush()


def _stream(conn: Connection, query: sa.Select[Any]) -> Result[Any]:
    return conn.execution_options(stream_results=True, yield_per=1000).execute(query)
