"""``inlet admin``: the support staff's own credentials for /admin and /metrics."""

from __future__ import annotations

import click
import orjson

from app.cli.common import engine_for, load_settings
from app.credentials import admins as service


@click.group()
def admin() -> None:
    """Manage admin users (never partners) for the /admin page."""


@admin.command()
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as one JSON object.")
def create(username: str, as_json: bool) -> None:
    """Create an admin user with a generated password.

    The password is printed this once only.
    """
    settings = load_settings()
    with engine_for(settings) as engine:
        try:
            new = service.create_admin(engine, settings.secret_key, username)
        except service.AdminError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps({"username": new.username, "password": new.password}))
        return
    click.echo(f"Admin {new.username!r} created. The password is shown this once only:")
    click.echo(f"  username: {new.username}")
    click.echo(f"  password: {new.password}")


@admin.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(as_json: bool) -> None:
    """List admin users (never their passwords)."""
    settings = load_settings()
    with engine_for(settings) as engine:
        rows = service.list_admins(engine)
    if rows and not as_json:
        click.echo("username\tcreated_at")
    for row in rows:
        if as_json:
            click.echo(
                orjson.dumps({"username": row.username, "created_at": row.created_at.isoformat()})
            )
        else:
            click.echo(f"{row.username}\t{row.created_at:%Y-%m-%d %H:%M}")
    if not rows and not as_json:
        click.echo("No admin users yet: `inlet admin create NAME`.", err=True)


@admin.command()
@click.argument("username")
def delete(username: str) -> None:
    """Delete an admin user; the page refuses it within seconds."""
    settings = load_settings()
    with engine_for(settings) as engine:
        try:
            service.delete_admin(engine, username)
        except service.AdminError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Admin {username!r} deleted.")
