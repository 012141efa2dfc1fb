"""``inlet failed``: see what failed, why, for whom; requeue or delete it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import orjson
from rq import Queue

from app.cli.common import load_settings, redis_for
from app.ops import failed as service
from app.ops.causes import KIND_MEANING, verdict
from app.queue import make_queue
from app.settings import Settings


@contextmanager
def queue_for(settings: Settings) -> Iterator[Queue]:
    """The queue (every Redis call bounded by INLET_REDIS_TIMEOUT), with Redis
    and failed-job problems as one-line messages."""
    with redis_for(settings) as redis:
        try:
            yield make_queue(settings, redis)
        except service.FailedJobError as exc:
            raise click.ClickException(str(exc)) from None


def _when(value: object) -> str:
    return str(value or "-")


@click.group()
def failed() -> None:
    """Jobs that failed for good: list, show, requeue, delete."""


@failed.command("list")
@click.option("--partner", help="Only this partner's failed jobs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(partner: str | None, as_json: bool) -> None:
    """One line per failed job, most recent failure first."""
    settings = load_settings(database=False)
    with queue_for(settings) as queue:
        jobs = service.list_failed(queue, partner)
    columns = (
        "job_id",
        "partner",
        "endpoint",
        "events",
        "first_failure",
        "last_failure",
        "attempts",
        "error",
    )
    if jobs and not as_json:
        click.echo("\t".join(columns))
    for job in jobs:
        row = job.as_dict()
        if as_json:
            click.echo(orjson.dumps(row))
        else:
            click.echo("\t".join(_when(row[key]) for key in columns))
    if not jobs and not as_json:
        click.echo("No failed jobs.", err=True)


@failed.command()
@click.argument("job_id")
@click.option(
    "--events",
    "count",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many of the batch's events to print.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as one JSON object.")
def show(job_id: str, count: int, as_json: bool) -> None:
    """One failed job: its metadata, full traceback and first events.

    JOB_ID may be the start of the id (as `inlet failed list` prints it), as
    long as only one failed job starts with it.
    """
    settings = load_settings(database=False)
    with queue_for(settings) as queue:
        job, events = service.show_failed(queue, job_id, count)
    cause = verdict(job.error)
    if as_json:
        meta = dict(job.meta)
        click.echo(
            orjson.dumps(
                {
                    **job.as_dict(),
                    "verdict": {"kind": cause.kind, "cause": cause.cause, "action": cause.action},
                    "requests": meta.pop("requests", None) or [],
                    "meta": meta,
                    "traceback": job.traceback,
                    "first_events": events,
                }
            )
        )
        return
    # What the admin page's failed-job view opens with (app/ops/causes.py).
    click.echo(KIND_MEANING[cause.kind])
    click.echo(f"{'cause:':15} {cause.cause}")
    click.echo(f"{'what to do:':15} {cause.action}\n")
    for key, value in job.as_dict().items():
        click.echo(f"{key + ':':15} {_when(value)}")
    meta = dict(job.meta)
    requests = meta.pop("requests", None) or []
    if requests:
        # Group commit puts many partner requests in one job: each is named
        # by the X-Request-ID its response carried, as the partner logged it.
        click.echo(f"\n{len(requests)} request{'s' if len(requests) != 1 else ''}:")
        for request in requests:
            carried = int(request.get("events") or 0)
            click.echo(
                f"  {request.get('request_id') or '(no id)'}  received "
                f"{_when(request.get('received_at'))}  "
                f"{carried} event{'s' if carried != 1 else ''}"
            )
    click.echo("\nmeta:")
    click.echo(orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    click.echo("\ntraceback:")
    click.echo(job.traceback.rstrip() or "(none recorded)")
    click.echo(f"\nfirst {len(events)} of {job.events} events:")
    for event in events:
        click.echo(orjson.dumps(event))


@failed.command()
@click.argument("job_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Every failed job (of --partner, if given).")
@click.option("--partner", help="With --all: only this partner's jobs.")
def requeue(job_id: str | None, all_: bool, partner: str | None) -> None:
    """Put a failed job (or --all) back on the queue.

    JOB_ID may be the unambiguous start of the id. Rows land once, whatever
    part of the batch landed before.
    """
    if bool(job_id) == all_:
        raise click.UsageError("give either a JOB_ID or --all")
    if partner and not all_:
        raise click.UsageError("--partner goes with --all")
    settings = load_settings(database=False)
    retries = len(settings.retry_delays)
    with queue_for(settings) as queue:
        if job_id:
            job_id = service.resolve_prefix(queue, job_id)
            service.requeue(queue, job_id, retries)
            click.echo(f"Requeued {job_id}.")
        else:
            done = service.requeue_all(queue, retries, partner)
            click.echo(f"Requeued {len(done)} failed job{'s' if len(done) != 1 else ''}.")


@failed.command()
@click.argument("job_id")
def delete(job_id: str) -> None:
    """Drop a failed job and its batch for good.

    JOB_ID may be the unambiguous start of the id; the whole id deleted is
    printed. Export or replay first if unsure: it cannot be undone.
    """
    settings = load_settings(database=False)
    with queue_for(settings) as queue:
        job_id = service.resolve_prefix(queue, job_id)
        service.delete(queue, job_id)
    click.echo(f"Deleted {job_id}.")
