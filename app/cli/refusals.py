"""``inlet refusals``: the 4xx answers of the ingest endpoints, for support."""

from __future__ import annotations

import click
import orjson

from app.cli.common import load_settings, redis_for
from app.cli.events import parse_when
from app.ops import refusals as service

_COLUMNS = ("when", "status", "code", "request_id", "endpoint", "client", "events", "message")


@click.group()
def refusals() -> None:
    """Refused ingest requests (4xx): list, count."""


def _echo(found: list[service.Refusal], as_json: bool, empty: str) -> None:
    if as_json:
        for refusal in found:
            click.echo(orjson.dumps(refusal.to_json()))
        return
    if not found:
        click.echo(empty, err=True)
        return
    click.echo("\t".join(_COLUMNS))
    for refusal in found:
        row = refusal.to_json()
        row["events"] = len(refusal.events)
        click.echo("\t".join(str(row[key] if row[key] is not None else "-") for key in _COLUMNS))
        for error in refusal.errors[:5]:
            where = "request" if error.get("index") is None else f"index {error['index']}"
            click.echo(f"\t  {where}, {error.get('field') or '-'}: {error.get('message')}")
        if refusal.errors_total > 5:
            click.echo(f"\t  ... {refusal.errors_total - 5} more (--json shows up to 200)")


@refusals.command("list")
@click.option("--partner", required=True, help="The partner whose refused requests to list.")
@click.option("--since", help="Only refusals at or after this time (ISO 8601, UTC).")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with all errors.")
def list_(partner: str, since: str | None, limit: int, as_json: bool) -> None:
    """A partner's refused requests, newest first.

    Each with its first errors.
    Kept INLET_REFUSALS_DAYS days, at most INLET_REFUSALS_PER_PARTNER per
    partner. Refusals without valid credentials are under `inlet refusals
    unauthenticated`.
    """
    start = parse_when(since, "--since")
    settings = load_settings(database=False)
    with redis_for(settings) as redis:
        found = service.list_refusals(redis, partner, since=start, limit=limit)
    _echo(found, as_json, f"No refusals kept for {partner}.")


@refusals.command()
@click.option("--client", help="Only refusals of this client address.")
@click.option("--since", help="Only refusals at or after this time (ISO 8601, UTC).")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def unauthenticated(client: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Refusals without a partner (401), by client address.

    401s and failed-login 429s.
    They are kept apart from the partners' refusals, with the client address
    but without any part of the body.
    """
    start = parse_when(since, "--since")
    settings = load_settings(database=False)
    with redis_for(settings) as redis:
        found = service.list_unauthenticated(redis, client=client, since=start, limit=limit)
    _echo(found, as_json, "No unauthenticated refusals kept.")


@refusals.command()
@click.option("--partner", help="Only this partner (else every partner, and unauthenticated).")
@click.option("--since", help="Count from this time (ISO 8601, UTC; to the hour).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def counts(partner: str | None, since: str | None, as_json: bool) -> None:
    """Refusals by partner and error code.

    Over the days the log keeps (INLET_REFUSALS_DAYS), counted by the hour.
    """
    start = parse_when(since, "--since")
    settings = load_settings(database=False)
    with redis_for(settings) as redis:
        table = service.counts_by_code(
            redis, partner=partner, since=start, retention_days=settings.refusals_days
        )
    if as_json:
        click.echo(orjson.dumps(table))
        return
    if not table:
        click.echo("No refusals counted.", err=True)
        return
    click.echo("partner\tcode\tcount")
    for who, by_code in table.items():
        for code, count in by_code.items():
            click.echo(f"{who}\t{code}\t{count}")
