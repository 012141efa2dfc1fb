"""``inlet schemas``: set, list, delete a partner's event schemas."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from app.cli.common import engine_for, load_settings, operator_errors
from app.quality import schemas as service


@click.group()
def schemas() -> None:
    """Manage partners' event schemas (JSON Schema).

    A schema checks an Onside event's payload or a Thrad event's params.
    """


@schemas.command("set")
@click.option("--partner", required=True, help="The partner's name.")
@click.option(
    "--mode",
    default=service.DEFAULT_MODE,
    show_default=True,
    help="enforce: a violation refuses the request (400); warn: the event is "
    "accepted and stored with its violations.",
)
@click.argument("event_name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def set_(partner: str, mode: str, event_name: str, file: Path) -> None:
    """Set PARTNER's schema for EVENT_NAME from FILE.

    FILE holds a JSON Schema, draft 2020-12.
    The name is normalized as stored (case-folded); a bad schema is refused
    with the validator's message. Web processes use it within seconds.
    """
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        name = service.set_schema(engine, partner, event_name, file.read_bytes(), mode.lower())
    click.echo(f"Partner {partner!r}: schema for {name!r} set ({mode.lower()}).")


@schemas.command("list")
@click.option("--partner", required=True, help="The partner's name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, schema included.")
def list_(partner: str, as_json: bool) -> None:
    """List PARTNER's event schemas."""
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        rows = service.list_schemas(engine, partner)
    for row in rows:
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "event_name": row.event_name,
                        "mode": row.mode,
                        "schema": row.schema,
                        "updated_at": row.updated_at.isoformat(),
                    }
                )
            )
        else:
            click.echo(f"{row.event_name}\t{row.mode}\t{row.updated_at:%Y-%m-%d %H:%M}")
    if not rows and not as_json:
        click.echo(f"Partner {partner!r} has no event schemas.", err=True)


@schemas.command()
@click.option("--partner", required=True, help="The partner's name.")
@click.argument("event_name")
def delete(partner: str, event_name: str) -> None:
    """Delete PARTNER's schema for EVENT_NAME."""
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        name = service.delete_schema(engine, partner, event_name)
    click.echo(f"Partner {partner!r}: schema for {name!r} deleted.")
