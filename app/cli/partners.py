"""``inlet partners``: create, list, show, set (policies), revoke, set-rate-limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import orjson

from app.cli.common import engine_for, load_settings, operator_errors
from app.credentials import partners as service
from app.credentials.api_keys import DEFAULT_LABEL, create_api_key
from app.policy import DEFAULT, POLICY_FIELDS, PartnerPolicy, parse_changes
from app.settings import Settings


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


def _policy_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One option per policy of ``POLICY_FIELDS``: a new policy needs no CLI code.

    Plain text options, checked by the policy's own parser, so that a wrong
    value gets the same message here as anywhere else.
    """
    for spec in reversed(POLICY_FIELDS):
        metavar = "|".join((*spec.choices, DEFAULT)) if spec.choices else "VALUE"
        command = click.option(
            spec.option,
            spec.name,
            help=f"{spec.help} `{DEFAULT}`: back to the setting's default.",
            metavar=metavar,
            multiple=spec.multiple,
            default=() if spec.multiple else None,
        )(command)
    return command


@partners.command("set")
@click.argument("name")
@_policy_options
def set_(name: str, **given: Any) -> None:
    """Set some of NAME's policies; the others stay.

    Takes effect within seconds (the credential cache's lifetime).
    """
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        changes = parse_changes(given)
        if not changes:
            options = ", ".join(spec.option for spec in POLICY_FIELDS)
            raise click.UsageError(f"nothing to set: give at least one of {options}")
        service.set_policy(engine, name, changes)
        row = service.get_partner(engine, name)
    _echo_partner(row, settings, as_json=False)


@partners.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(name: str, as_json: bool) -> None:
    """Show NAME: status, rate limit, policies.

    Never its secrets.
    """
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        row = service.get_partner(engine, name)
    _echo_partner(row, settings, as_json=as_json)


def _echo_partner(row: Any, settings: Settings, *, as_json: bool) -> None:
    stored = dict(row.policy or {})
    policy = PartnerPolicy.defaults(settings).overlay(stored).as_json()
    status = "revoked" if row.revoked_at else "active"
    limit = row.rate_limit or f"{settings.rate_limit} (default)"
    if as_json:
        document = {
            "name": row.name,
            "username": row.username,
            "status": status,
            "rate_limit": limit,
            "created_at": row.created_at.isoformat(),
            # What applies now, and which of it was set for this partner.
            "policy": policy,
            "overrides": stored,
        }
        click.echo(orjson.dumps(document))
        return
    click.echo(f"name:       {row.name}")
    click.echo(f"username:   {row.username}")
    click.echo(f"status:     {status}")
    click.echo(f"rate limit: {limit}")
    click.echo("policy:")
    width = max(len(spec.option) for spec in POLICY_FIELDS)
    for spec in POLICY_FIELDS:
        source = "set" if spec.name in stored else "default"
        click.echo(f"  {spec.option:<{width}}  {_text(policy[spec.name])}  ({source})")


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "(none)"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)
