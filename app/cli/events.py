"""``inlet events``: export, find where an event is, delete one identifier's events
(app/cli/deletion.py), prune and maintain partitions."""

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

from app import partitions
from app.cli import deletion
from app.cli.common import engine_for, load_settings, operator_errors, redis_for
from app.credentials import partners as service
from app.onside.export import onside_export_row, onside_query
from app.ops.find import describe_found, find_events
from app.queue import make_queue
from app.request.jsonchecks import parse_datetime
from app.thrad.export import thrad_export_row, thrad_query


def iso_utc(value: datetime) -> str:
    # SQLite hands back naive datetimes; everything Inlet stores is UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@click.group()
def events() -> None:
    """Export, find, delete and prune stored events."""


events.add_command(deletion.delete)
events.add_command(deletion.deletions)


def parse_when(value: str | None, option: str) -> datetime | None:
    """ISO 8601 date and time (naive means UTC), or a date alone (midnight UTC)."""
    if value is None:
        return None
    parsed = parse_datetime(value if ("T" in value or " " in value) else value + "T00:00:00")
    if parsed is None:
        raise click.BadParameter(
            "expected e.g. 2026-05-05 or 2026-05-05T12:00:00Z", param_hint=option
        )
    return parsed


@events.command()
@click.option("--partner", required=True, help="The partner whose events to export.")
@click.option("--since", help="Only events received at or after this time (ISO 8601, UTC).")
@click.option("--until", help="Only events received before this time (ISO 8601, UTC).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events.")
def export(partner: str, since: str | None, until: str | None, limit: int | None) -> None:
    """Write a partner's events to stdout as JSON Lines.

    Oldest received first.
    Both wire formats, merged by receive time; each line says its "source":
    "onside" (batch API) or "thrad" (Events API). Streams in constant memory;
    on a terminal, stderr shows a progress bar.
    """
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        partner_id = service.get_partner_id(engine, partner)
        onside, thrad = export_queries(partner_id, start, end, limit)
        out = sys.stdout.buffer
        # Streamed in chunks, one connection per table: a large export runs in
        # constant memory, and the two ordered streams merge as they come.
        with (
            engine.connect() as onside_conn,
            engine.connect() as thrad_conn,
            closing(_stream(onside_conn, onside)) as onside_rows,
            closing(_stream(thrad_conn, thrad)) as thrad_rows,
        ):
            merged = heapq.merge(
                (
                    (row.received_at, 0, row.id, onside_export_row(row, iso_utc))
                    for row in onside_rows
                ),
                (
                    (row.received_at, 1, row.id, thrad_export_row(row, iso_utc))
                    for row in thrad_rows
                ),
                key=lambda item: item[:3],
            )
            lines = (item for *_, item in itertools.islice(merged, limit))
            total = _count(engine, onside, thrad, limit) if sys.stderr.isatty() else None
            if total:
                with click.progressbar(
                    lines, length=total, label="exporting", file=sys.stderr
                ) as bar:
                    for item in bar:
                        out.write(orjson.dumps(item) + b"\n")
            else:
                for item in lines:
                    out.write(orjson.dumps(item) + b"\n")
        out.flush()


def export_queries(
    partner_id: int, start: datetime | None, end: datetime | None, limit: int | None = None
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The export's two queries. Bounded by received_at, the partition key on
    PostgreSQL, so they read only the days between --since and --until."""
    onside = onside_query(partner_id)
    onside = _window(onside, onside.selected_columns.received_at, start, end)
    thrad = thrad_query(partner_id)
    thrad = _window(thrad, thrad.selected_columns.received_at, start, end)
    if limit:
        onside, thrad = onside.limit(limit), thrad.limit(limit)
    return onside, thrad


def _window(
    query: sa.Select[Any], column: Any, start: datetime | None, end: datetime | None
) -> sa.Select[Any]:
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column < end)
    return query


def _count(engine: Any, *queries_and_limit: Any) -> int:
    *queries, limit = queries_and_limit
    with engine.connect() as conn:
        total = sum(
            conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
            for q in queries
        )
    return min(total, limit) if limit else total


def _stream(conn: Connection, query: sa.Select[Any]) -> Result[Any]:
    return conn.execution_options(stream_results=True, yield_per=1000).execute(query)


@events.command()
@click.option("--partner", required=True, help="The partner who sent the event.")
@click.option("--event-id", help="The event's event_id (Onside's UUID, or Thrad's).")
@click.option("--installation-id", help="Every Onside event of this installation_id.")
@click.option("--tag-id", help="Thrad events of this tag_id (with --event-id: that one event).")
@click.option(
    "--since", help="Only what arrived at or after this time (ISO 8601, UTC), e.g. with --tag-id."
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many matches in each place.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per match, per line.")
def find(
    partner: str,
    event_id: str | None,
    installation_id: str | None,
    tag_id: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Where an event is: stored, queued, failed or refused.

    Give --event-id, --installation-id or --tag-id. Looks in SQL, in the
    queue (waiting, retrying, running), in the failed jobs and in the
    refusal log (the 4xx answers of the last INLET_REFUSALS_DAYS days), and
    prints one block per match (or one JSON line with --json).
    """
    if event_id is None and installation_id is None and tag_id is None:
        raise click.UsageError("give --event-id, --installation-id or --tag-id")
    if event_id is not None and installation_id is not None:
        raise click.UsageError("give --event-id or --installation-id, not both")
    if installation_id is not None and tag_id is not None:
        raise click.UsageError("--installation-id is Onside's, --tag-id Thrad's: give one")
    start = parse_when(since, "--since")
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors(), redis_for(settings) as redis:
        found = find_events(
            engine,
            make_queue(settings, redis),
            partner,
            event_id=event_id,
            installation_id=installation_id,
            tag_id=tag_id,
            since=start,
            limit=limit,
        )
    for number, item in enumerate(found):
        if as_json:
            click.echo(orjson.dumps(item.to_json()))
        else:
            if number:
                click.echo()
            click.echo(describe_found(item, partner))


@events.command()
@click.option(
    "--before",
    required=True,
    help="Drop the days of events received before this date (YYYY-MM-DD, UTC); "
    "a day that ends after it is kept whole.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be dropped.")
def prune(before: str, dry_run: bool) -> None:
    """Drop whole days of old events (PostgreSQL).

    No rows are deleted one by one:
    Every partition of events and thrad_events holding only events received
    before --before is dropped, and printed. SQLite has no partitions, and
    this command refuses there rather than run a bulk DELETE.
    """
    when = parse_when(before, "--before")
    assert when is not None  # --before is required
    settings = load_settings()
    with operator_errors(), engine_for(settings) as engine:
        try:
            doomed = partitions.prune(engine, when, dry_run=dry_run)
        except partitions.NotPartitioned:
            raise click.ClickException(
                "this database has no partitions (SQLite keeps every event in one table): "
                "nothing was dropped; prune needs PostgreSQL (docs/storage.md)"
            ) from None
    verb = "would drop" if dry_run else "dropped"
    for partition in doomed:
        click.echo(f"{verb} {partition.describe()}")
    rows = sum(max(p.approximate_rows, 0) for p in doomed)
    shown = iso_utc(when)
    if doomed:
        click.echo(
            f"{verb} {len(doomed)} partition(s), about {rows:,} rows received before {shown}"
        )
    else:
        click.echo(f"no partition holds only events received before {shown}: nothing {verb}")


@events.command()
def maintain() -> None:
    """Run partition maintenance now (workers run it hourly).

    Makes the coming days' partitions, drops dedup keys older than the
    window, and drops days of events older than INLET_RETENTION_DAYS if set.
    Does nothing on SQLite.
    """
    settings = load_settings()
    with operator_errors(), engine_for(settings) as engine:
        dropped = partitions.maintain(engine, settings)
    for partition in dropped:
        click.echo(f"dropped {partition.describe()}")
    click.echo(f"maintenance done: {len(dropped)} partition(s) dropped")
