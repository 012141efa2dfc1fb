"""``inlet migrate``, ``inlet web``, ``inlet worker``: what the Procfile runs."""

from __future__ import annotations

from typing import Any

import click

from app import migrations
from app.cli.common import load_settings
from app.errors import ConfigError
from app.request.head import head_protocol
from app.settings import Settings


@click.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic upgrade head)."""
    settings = load_settings(database=False)
    try:
        # Connect once first: an unreachable database is one line, not a traceback.
        migrations.current_revisions(settings.database_url)
    except migrations.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    migrations.upgrade(settings.database_url)
    click.echo("Database schema is up to date.", err=True)


@click.command()
def web() -> None:
    """Serve the HTTP API with uvicorn on HOST:PORT.

    WEB_CONCURRENCY processes.
    """
    import uvicorn

    settings = load_settings(database=False)
    uvicorn.run("app.main:create_app", factory=True, **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `inlet web` runs uvicorn; the benchmark's floors run on the same options."""
    return dict(
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        # Inlet decides itself which X-Forwarded-For to believe (trusted
        # proxies only); uvicorn must not rewrite the client address.
        proxy_headers=False,
        server_header=False,
        # httptools, with the request head bounded in size, count and time.
        http=head_protocol(settings),
        access_log=False,
        # An idle keep-alive connection is closed after this; a trickled body
        # is cut off by INLET_BODY_TIMEOUT in the app (uvicorn has no body deadline).
        timeout_keep_alive=settings.keep_alive_timeout,
        log_level=settings.log_level.lower(),
    )


@click.command()
@click.option("--burst", is_flag=True, help="Stop once the queue is empty.")
def worker(burst: bool) -> None:
    """Run a worker: take batches off the queue and store them."""
    from worker.runner import run_worker

    settings = load_settings(database=False)
    try:
        run_worker(settings, burst=burst)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
