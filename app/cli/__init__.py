"""The ``inlet`` command."""

from __future__ import annotations

import click

from app.cli import admin, dev, events, failed, keys, partners, refusals, replay, schemas, serve
from app.cli.common import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inlet", prog_name="inlet", message="%(prog)s %(version)s")
def main() -> None:
    """Inlet: server-to-server event ingestion (Onside and Thrad wire formats)."""
    setup_logging()


main.add_command(partners.partners)
main.add_command(events.events)
main.add_command(keys.keys)
main.add_command(failed.failed)
main.add_command(admin.admin)
main.add_command(replay.replay)
main.add_command(refusals.refusals)
main.add_command(schemas.schemas)
for command in (serve.migrate, serve.web, serve.worker, dev.dev):
    main.add_command(command)
