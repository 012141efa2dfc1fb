"""``inlet events export``: stored events as JSON Lines."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click
import orjson
import sqlalchemy as sa

from app import partners as service
from app.cli.common import engine_for, load_settings, operator_errors
from app.db import events as events_table


def iso_utc(value: datetime) -> str:
    # SQLite hands back naive datetimes; everything Inlet stores is UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def export_row(row: Any) -> dict[str, Any]:
    return {
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
    """Write a partner's events to stdout as JSON Lines, oldest first."""
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        partner_id = service.get_partner_id(engine, partner)
        t = events_table
        query = (
            sa.select(t.c.event_id, t.c.event_name, t.c.sent_event_name, t.c.event_datetime,
                      t.c.installation_id, t.c.payload, t.c.received_at)
            .where(t.c.partner_id == partner_id)
            .order_by(t.c.received_at, t.c.id)
        )
        if limit:
            query = query.limit(limit)
        out = sys.stdout.buffer
        with engine.connect() as conn:
            # Streamed in chunks: a large export runs in constant memory.
            result = conn.execution_options(stream_results=True, yield_per=1000).execute(query)
            for row in result:
                out.write(orjson.dumps(export_row(row)) + b"\n")
        out.flush()
