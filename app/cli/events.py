"""``inlet events export``: stored events as JSON Lines."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click
import orjson
import sqlalchemy as sa

from app import partners as service
from app.batch import parse_datetime
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


def parse_when(value: str | None, option: str) -> datetime | None:
    """ISO 8601 date and time (naive means UTC), or a date alone (midnight UTC)."""
    if value is None:
        return None
    parsed = parse_datetime(value if ("T" in value or " " in value) else value + "T00:00:00")
    if parsed is None:
        raise click.BadParameter("expected e.g. 2026-05-05 or 2026-05-05T12:00:00Z",
                                 param_hint=option)
    return parsed


@events.command()
@click.option("--partner", required=True, help="The partner whose events to export.")
@click.option("--since", help="Only events received at or after this time (ISO 8601, UTC).")
@click.option("--until", help="Only events received before this time (ISO 8601, UTC).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events.")
def export(partner: str, since: str | None, until: str | None, limit: int | None) -> None:
    """Write a partner's events to stdout as JSON Lines, oldest received first.

    Streams in constant memory; on a terminal, stderr shows a progress bar.
    """
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        partner_id = service.get_partner_id(engine, partner)
        t = events_table
        where = [t.c.partner_id == partner_id]
        if start is not None:
            where.append(t.c.received_at >= start)
        if end is not None:
            where.append(t.c.received_at < end)
        query = (
            sa.select(t.c.event_id, t.c.event_name, t.c.sent_event_name, t.c.event_datetime,
                      t.c.installation_id, t.c.payload, t.c.received_at)
            .where(*where)
            .order_by(t.c.received_at, t.c.id)
        )
        if limit:
            query = query.limit(limit)
        out = sys.stdout.buffer
        with engine.connect() as conn:
            total = None
            if sys.stderr.isatty():
                counting = sa.select(sa.func.count()).select_from(query.subquery())
                total = conn.execute(counting).scalar()
            # Streamed in chunks: a large export runs in constant memory.
            result = conn.execution_options(stream_results=True, yield_per=1000).execute(query)
            if total:
                with click.progressbar(result, length=total, label="exporting",
                                       file=sys.stderr) as rows:
                    for row in rows:
                        out.write(orjson.dumps(export_row(row)) + b"\n")
            else:
                for row in result:
                    out.write(orjson.dumps(export_row(row)) + b"\n")
        out.flush()
