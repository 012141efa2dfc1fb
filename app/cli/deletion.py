"""``inlet events delete`` and ``inlet events deletions``: deletion on request, and its audit."""

from __future__ import annotations

import getpass
from datetime import UTC

import click
import orjson
from redis.exceptions import RedisError

from app.cli.common import engine_for, load_settings, operator_errors
from app.credentials import partners as partner_service
from app.ops import deletion as service
from app.queue import make_queue, make_redis

_IDENTIFIER_OPTIONS = (
    click.option("--installation-id", help="An Onside installation_id (a UUID)."),
    click.option("--client-id", help="A Thrad client_id."),
    click.option("--session-id", help="A Thrad session_id."),
)


def _identifier(
    installation_id: str | None, client_id: str | None, session_id: str | None
) -> tuple[str, str]:
    given = [
        (kind, value)
        for kind, value in (
            ("installation_id", installation_id),
            ("client_id", client_id),
            ("session_id", session_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --installation-id, --client-id, --session-id")
    return given[0]


def _with_identifier_options(command):  # type: ignore[no-untyped-def]
    for option in reversed(_IDENTIFIER_OPTIONS):
        command = option(command)
    return command


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "unknown"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@click.command()
@click.option("--partner", required=True, help="The partner whose data to delete.")
@_with_identifier_options
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
@click.option(
    "--actor",
    help="Who asked, for the audit (default: the OS user running the command).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def delete(
    partner: str,
    installation_id: str | None,
    client_id: str | None,
    session_id: str | None,
    dry_run: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Delete one identifier's events, on request.

    Deletes everything PARTNER holds of the identifier: stored rows of both
    formats, its events in failed jobs, and (for INLET_TOMBSTONE_HOURS) its
    events still queued. Writes an audit row, never the identifier itself.
    """
    kind, value = _identifier(installation_id, client_id, session_id)
    who = (actor or "").strip() or _default_actor()
    settings = load_settings()
    redis = make_redis(settings.redis_url, timeout=10)
    try:
        with engine_for(settings) as engine, operator_errors():
            partner_id = partner_service.get_partner_id(engine, partner)
            result = service.delete_identifier(
                engine,
                make_queue(settings, redis),
                secret_key=settings.secret_key,
                tombstone_hours=settings.tombstone_hours,
                partner_id=partner_id,
                partner_name=partner,
                kind=kind,
                value=value,
                actor=who,
                dry_run=dry_run,
                # A job runs at most this long before RQ stops it.
                wait_seconds=settings.job_timeout + 5,
            )
    except RedisError as exc:
        raise click.ClickException(
            f"Redis is unavailable ({type(exc).__name__}); nothing was deleted from SQL. "
            "Run the deletion again once it is back."
        ) from None
    except service.DeletionError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        redis.close()
    if as_json:
        click.echo(orjson.dumps(result.as_dict()))
        return
    what = f"partner {partner!r}, {kind} (hash {result.identifier_hash[:12]}…)"
    if not result.found:
        click.echo(f"Nothing to delete for {what}: no stored row or failed-job event carries it.")
    else:
        verb = "Would delete" if dry_run else "Deleted"
        click.echo(
            f"{verb} for {what}: {_plural(result.onside_rows, 'Onside row')}, "
            f"{_plural(result.thrad_rows, 'Thrad row')}, "
            f"{_plural(result.failed_events, 'event')} in "
            f"{_plural(result.failed_jobs, 'failed job')}."
        )
    if dry_run:
        click.echo("Dry run: nothing was changed.")
    else:
        click.echo(
            f"Events of it still queued are dropped when they land, until "
            f"{result.tombstone_expires_at}. Audited as done by {who!r}."
        )


@click.command()
@click.option("--partner", required=True, help="The partner whose deletions to list.")
@_with_identifier_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def deletions(
    partner: str,
    installation_id: str | None,
    client_id: str | None,
    session_id: str | None,
    as_json: bool,
) -> None:
    """The audit of PARTNER's deletions, oldest first.

    With an identifier option: only that identifier's.
    """
    wanted = None
    settings = load_settings()
    with engine_for(settings) as engine, operator_errors():
        partner_id = partner_service.get_partner_id(engine, partner)
        if installation_id or client_id or session_id:
            kind, value = _identifier(installation_id, client_id, session_id)
            try:
                value = service.normalize_identifier(kind, value)
            except service.DeletionError as exc:
                raise click.ClickException(str(exc)) from None
            wanted = service.identifier_hash(settings.secret_key, partner_id, kind, value)
        rows = service.audit_rows(engine, partner_id, wanted)
    for row in rows:
        deleted_at = row.deleted_at
        if deleted_at.tzinfo is None:  # SQLite
            deleted_at = deleted_at.replace(tzinfo=UTC)
        record = {
            "deleted_at": deleted_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "actor": row.actor,
            "identifier_kind": row.identifier_kind,
            "identifier_hash": row.identifier_hash,
            "onside_rows": row.onside_rows,
            "thrad_rows": row.thrad_rows,
            "failed_events": row.failed_events,
        }
        if as_json:
            click.echo(orjson.dumps(record))
        else:
            click.echo("\t".join(str(v) for v in record.values()))
    if not rows and not as_json:
        click.echo("No deletions recorded.", err=True)
