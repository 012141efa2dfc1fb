"""``inlet keys``: Bearer API keys for the Thrad endpoint (create, list, revoke)."""

from __future__ import annotations

import click
import orjson

from app.cli.common import engine_for, load_settings, operator_errors
from app.credentials import api_keys as service


@click.group()
def keys() -> None:
    """Manage partners' API keys (Thrad's Events API)."""


@keys.command()
@click.argument("partner")
@click.option(
    "--label",
    default=service.DEFAULT_LABEL,
    show_default=True,
    help="What the key is for; stamped into every event it sends.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key as one JSON object.")
def create(partner: str, label: str, as_json: bool) -> None:
    """Give PARTNER a new API key (shown this once only)."""
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        new = service.create_api_key(engine, settings.secret_key, partner, label)
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "partner": partner,
                    "key_id": new.key_id,
                    "label": new.label,
                    "api_key": new.api_key,
                }
            )
        )
        return
    click.echo(f"API key {new.key_id} ({new.label!r}) for {partner!r}; shown this once only:")
    click.echo(f"  {new.api_key}")


@keys.command("list")
@click.argument("partner")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(partner: str, as_json: bool) -> None:
    """List PARTNER's keys: id, label, status (never the secrets)."""
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        rows = service.list_api_keys(engine, partner)
    if rows and not as_json:
        click.echo("key_id\tlabel\tstatus\tcreated_at")
    for row in rows:
        status = "revoked" if row.revoked_at else "active"
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "key_id": row.key_id,
                        "label": row.label,
                        "status": status,
                        "created_at": row.created_at.isoformat(),
                    }
                )
            )
        else:
            click.echo(f"{row.key_id}\t{row.label}\t{status}\t{row.created_at:%Y-%m-%d %H:%M}")
    if not rows and not as_json:
        click.echo(f"No API keys for {partner!r}: `inlet keys create {partner}`.", err=True)


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke an API key; it stops working within seconds.

    KEY_ID as `inlet keys list` shows it.
    """
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        service.revoke_api_key(engine, key_id)
    click.echo(f"API key {key_id} revoked.")
