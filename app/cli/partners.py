"""``inlet partners``: create, list, revoke, set-rate-limit."""

from __future__ import annotations

import click
import orjson

from app.cli.common import engine_for, load_settings, operator_errors
from app.credentials import partners as service
from app.credentials.api_keys import DEFAULT_LABEL, create_api_key


@click.group()
def partners() -> None:
    """Manage partners and their Basic-auth credentials."""


@partners.command()
@click.argument("name")
@click.option(
    "--rate-limit", help="This partner's own limit, e.g. 100/second (default: INLET_RATE_LIMIT)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as one JSON object.")
def create(name: str, rate_limit: str | None, as_json: bool) -> None:
    """Create a partner and print its credentials.

    They are shown this once only.
    """
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        new = service.create_partner(engine, settings.secret_key, name, rate_limit)
        # Its first Bearer key for the Thrad endpoint; `inlet keys` makes more.
        key = create_api_key(engine, settings.secret_key, new.name, DEFAULT_LABEL)
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "name": new.name,
                    "username": new.username,
                    "password": new.password,
                    "api_key": key.api_key,
                }
            )
        )
        return
    click.echo(f"Partner {new.name!r} created. Its credentials are shown this once only:")
    click.echo(f"  username: {new.username}")
    click.echo(f"  password: {new.password}")
    click.echo(f"  api key:  {key.api_key}  (Bearer, label {key.label!r})")


@partners.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(as_json: bool) -> None:
    """List partners (never their secrets)."""
    settings = load_settings()
    with engine_for(settings) as engine:
        rows = service.list_partners(engine)
    if rows and not as_json:
        click.echo("name\tusername\trate_limit\tstatus\tcreated_at")
    for row in rows:
        limit = row.rate_limit or f"{settings.rate_limit} (default)"
        status = "revoked" if row.revoked_at else "active"
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "name": row.name,
                        "username": row.username,
                        "rate_limit": limit,
                        "status": status,
                        "created_at": row.created_at.isoformat(),
                    }
                )
            )
        else:
            click.echo(
                f"{row.name}\t{row.username}\t{limit}\t{status}\t{row.created_at:%Y-%m-%d %H:%M}"
            )
    if not rows and not as_json:
        click.echo("No partners yet: `inlet partners create NAME`.", err=True)


@partners.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a partner; its requests fail within seconds."""
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        service.revoke_partner(engine, name)
    click.echo(f"Partner {name!r} revoked.")


@partners.command("set-rate-limit")
@click.argument("name")
@click.argument("limit")
def set_rate_limit(name: str, limit: str) -> None:
    """Set NAME's own request limit, like 5/second or 300/minute.

    LIMIT `default` goes back to INLET_RATE_LIMIT.
    """
    settings = load_settings()
    value = None if limit.strip().lower() == "default" else limit
    with engine_for(settings) as engine, operator_errors():
        stored = service.set_rate_limit(engine, name, value)
    click.echo(f"Partner {name!r}: rate limit {stored or f'{settings.rate_limit} (default)'}.")
