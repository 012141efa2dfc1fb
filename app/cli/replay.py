"""``inlet replay FILE.jsonl --partner P``: re-ingest a JSON Lines file safely."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import click
import orjson

from app.cli.common import engine_for, load_settings, operator_errors
from app.cli.failed import queue_for
from app.credentials import partners as partners_service
from app.ops import metrics
from app.ops.replay import Replayer, ReplaySummary, replay_lines


def _size(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, ValueError):
        return None


def print_summary(summary: ReplaySummary) -> None:
    click.echo(f"lines read: {summary.lines}")
    click.echo(f"accepted:   {summary.accepted} (queued in {len(summary.jobs)} jobs)")
    click.echo(f"duplicate:  {summary.duplicate} (already stored, or repeated in the file)")
    click.echo(f"rejected:   {summary.rejected}")
    for reason, count in summary.reasons.most_common():
        click.echo(f"  {count:>8}  {reason}")
    if summary.examples:
        click.echo("first rejected lines:")
        for number, reason in summary.examples:
            click.echo(f"  line {number}: {reason}")


@click.command()
@click.argument("file", type=click.File("rb"))
@click.option("--partner", required=True, help="The partner the events belong to.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def replay(file: BinaryIO, partner: str, as_json: bool) -> None:
    """Re-ingest events from a JSON Lines FILE.

    One event per line; FILE `-` is stdin.
    Each line goes through the endpoint's own validation and the queue: an
    Onside event, or a row of `inlet events export` (Onside or Thrad). Safe
    to run twice: events already stored for the partner are counted as
    duplicates and not queued again. Exits 1 when every line was rejected.
    """
    settings = load_settings()
    metrics.configure(settings.metrics_dir)
    with engine_for(settings) as engine, operator_errors(), queue_for(settings) as queue:
        partner_id = partners_service.get_partner_id(engine, partner)
        replayer = Replayer(engine, queue, settings, partner_id, partner)
        size = _size(file)
        if sys.stderr.isatty() and size:
            with click.progressbar(length=size, label="replaying", file=sys.stderr) as bar:
                summary = replay_lines(replayer, file, bar.update)
        else:
            summary = replay_lines(replayer, file)
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()))
    else:
        print_summary(summary)
    if summary.lines and summary.rejected == summary.lines:
        # A script must not take "nothing was replayed" for success.
        raise click.ClickException(f"every line ({summary.lines}) was rejected; nothing was queued")
