"""Where is event X? Stored, queued, failed, refused, or in none of these.

Shared by ``inlet events find`` and the admin page. One search looks in
every place an event can be, in the order it travels back from SQL:

- ``stored``: a row of ``events`` (Onside) or ``thrad_events`` (Thrad);
  ``row`` is the row as ``inlet events export`` writes it, ``job_id`` the job
  that stored it.
- ``queued``: in a job still waiting (``state`` "queued", with its
  ``position`` in the queue, 0 = next), waiting for a retry ("scheduled") or
  being run ("started"); ``age_seconds`` since it was queued.
- ``failed``: in a job of the failed registry; ``error`` is its error line.
- ``refused``: in a request the ingest endpoint answered with a 4xx (the
  refusal log, app/ops/refusals.py); ``refusal`` holds when, status, code,
  request id, and ``errors``: the error entries that concern this event (its
  own index, and those of the whole request).
- ``not_found``: none of the above. One such result, alone, when nothing matched.
  It does not prove Inlet never answered the request: the refusal log keeps
  no event ids of a request refused before its body was read or parsed, only
  the first ``refusals.MAX_EVENTS`` of a refused batch, and nothing of a 503
  (``not_found_lines`` says so to the reader).

An event may be in several places (refused, then resent and stored): every
match is listed, stored first. Jobs are matched by the partner in their meta
and by the events they carry; the refusal log cannot be searched by
installation id (it keeps event ids only).

Interface (stable; the admin page calls it)::

    find_events(engine, queue, partner, *, event_id=None, installation_id=None,
                tag_id=None, since=None, limit=50) -> list[Found]

``partner`` is the partner's name (unknown -> ``PartnerError``); exactly one
of ``event_id``, ``installation_id``, ``tag_id`` is required (``ValueError``
otherwise); ``tag_id`` may go with ``event_id`` (Thrad's key) and ``since``
(Thrad events without an event_id, found by tag and time). ``limit`` bounds
the matches of each place. Redis errors are raised (``RedisError``).

``Found.to_json()`` -> ``{"where", "source", "event_id", "tag_id",
"installation_id", "received_at", "row", "job_id", "state", "position",
"age_seconds", "error", "refusal"}``, with ``None`` for what does not apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy.engine import Engine

from app.credentials.partners import get_partner_id
from app.db import events as onside_table
from app.db import thrad_events as thrad_table
from app.onside.export import onside_export_row
from app.ops import refusals
from app.ops.failed import describe
from app.thrad.export import thrad_export_row

Where = Literal["stored", "queued", "failed", "refused", "not_found"]
_FETCH_CHUNK = 100


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; Inlet stores UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Found:
    where: Where
    source: str | None = None  # "onside" or "thrad"
    event_id: str | None = None
    tag_id: str | None = None
    installation_id: str | None = None
    received_at: datetime | None = None
    row: dict[str, Any] | None = None  # stored
    job_id: str | None = None  # stored, queued, failed
    state: str | None = None  # queued: "queued", "scheduled" (retry) or "started"
    position: int | None = None  # queued: 0 is next
    age_seconds: float | None = None  # queued
    error: str | None = None  # failed
    refusal: dict[str, Any] | None = None  # refused

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "source": self.source,
            "event_id": self.event_id,
            "tag_id": self.tag_id,
            "installation_id": self.installation_id,
            "received_at": iso(self.received_at),
            "row": self.row,
            "job_id": self.job_id,
            "state": self.state,
            "position": self.position,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "error": self.error,
            "refusal": self.refusal,
        }


@dataclass(frozen=True)
class Query:
    event_id: str | None
    installation_id: str | None
    tag_id: str | None
    since: datetime | None

    def matches(self, endpoint: str, event: Any) -> bool:
        if not isinstance(event, dict):
            return False
        if endpoint == "onside":
            if self.tag_id is not None:
                return False
            if self.event_id is not None:
                return str(event.get("event_id", "")).lower() == self.event_id.lower()
            return (
                str(event.get("installation_id", "")).lower()
                == (self.installation_id or "").lower()
            )
        if self.installation_id is not None:
            return False
        if self.event_id is not None and event.get("event_id") != self.event_id:
            return False
        return self.tag_id is None or event.get("tag_id") == self.tag_id


def _uuid(text: str | None) -> str | None:
    """The canonical form of a UUID, or None if ``text`` is not one."""
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def find_events(
    engine: Engine,
    queue: Queue,
    partner: str,
    *,
    event_id: str | None = None,
    installation_id: str | None = None,
    tag_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[Found]:
    """Every place the partner's event(s) are; ``[Found("not_found")]`` if none."""
    if sum(x is not None for x in (event_id, installation_id)) > 1 or (
        event_id is None and installation_id is None and tag_id is None
    ):
        raise ValueError("give one of event_id, installation_id or tag_id")
    if installation_id is not None and tag_id is not None:
        raise ValueError("installation_id is Onside's, tag_id Thrad's: give one")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    query = Query(event_id, installation_id, tag_id, since)
    partner_id = get_partner_id(engine, partner)
    found = [
        *_stored(engine, partner_id, query, limit),
        *_in_jobs(queue, partner, query, limit),
        *_refused(queue.connection, partner, query, limit),
    ]
    if not found:
        return [
            Found(
                "not_found",
                event_id=event_id,
                tag_id=tag_id,
                installation_id=installation_id,
            )
        ]
    return found


def _stored(engine: Engine, partner_id: int, query: Query, limit: int) -> list[Found]:
    found: list[Found] = []
    with engine.connect() as conn:
        o = onside_table.c
        onside_filter = None
        if query.tag_id is None and query.event_id is not None:
            canonical = _uuid(query.event_id)
            onside_filter = None if canonical is None else o.event_id == canonical
        elif query.installation_id is not None:
            canonical = _uuid(query.installation_id)
            onside_filter = None if canonical is None else o.installation_id == canonical
        if onside_filter is not None:
            select = sa.select(onside_table).where(o.partner_id == partner_id, onside_filter)
            if query.since is not None:
                select = select.where(o.received_at >= query.since)
            for row in conn.execute(select.order_by(o.received_at, o.id).limit(limit)):
                found.append(
                    Found(
                        "stored",
                        source="onside",
                        event_id=str(row.event_id),
                        installation_id=str(row.installation_id),
                        received_at=row.received_at,
                        row=onside_export_row(row, iso),  # type: ignore[arg-type]
                        job_id=row.job_id,
                    )
                )
        if query.installation_id is None:
            t = thrad_table.c
            select = sa.select(thrad_table).where(t.partner_id == partner_id)
            if query.event_id is not None:
                select = select.where(t.event_id == query.event_id)
            if query.tag_id is not None:
                select = select.where(t.tag_id == query.tag_id)
            if query.since is not None:
                select = select.where(t.received_at >= query.since)
            for row in conn.execute(select.order_by(t.received_at, t.id).limit(limit)):
                found.append(
                    Found(
                        "stored",
                        source="thrad",
                        event_id=row.event_id,
                        tag_id=row.tag_id,
                        received_at=row.received_at,
                        row=thrad_export_row(row, iso),  # type: ignore[arg-type]
                        job_id=row.job_id,
                    )
                )
    return found


def _fetch(queue: Queue, ids: list[str]) -> Iterator[Job]:
    for start in range(0, len(ids), _FETCH_CHUNK):
        chunk = ids[start : start + _FETCH_CHUNK]
        for job in Job.fetch_many(chunk, connection=queue.connection, serializer=queue.serializer):
            if job is not None:
                yield job


def _job_events(job: Job) -> tuple[str, list[Any], datetime | None]:
    endpoint = str((job.meta or {}).get("endpoint") or "")
    args = job.args or ()
    events = args[2] if len(args) > 2 and isinstance(args[2], list) else []
    received = None
    if len(args) > 1 and isinstance(args[1], str):
        try:
            received = datetime.fromisoformat(args[1])
        except ValueError:
            received = None
    return endpoint, events, received


def _matches_in(
    job: Job, partner: str, query: Query
) -> Iterable[tuple[str, dict[str, Any], datetime | None]]:
    if (job.meta or {}).get("partner") != partner:
        return []
    endpoint, events, received = _job_events(job)
    if query.since is not None and received is not None and received < query.since:
        return []
    return [(endpoint, e, received) for e in events if query.matches(endpoint, e)]


def _found_in_job(
    where: Where,
    endpoint: str,
    event: dict[str, Any],
    received: datetime | None,
    job: Job,
    **extra: Any,
) -> Found:
    return Found(
        where,
        source=endpoint or None,
        event_id=event.get("event_id"),
        tag_id=event.get("tag_id") if endpoint == "thrad" else None,
        installation_id=event.get("installation_id") if endpoint == "onside" else None,
        received_at=received,
        job_id=job.id,
        **extra,
    )


def _in_jobs(queue: Queue, partner: str, query: Query, limit: int) -> list[Found]:
    now = datetime.now(UTC)
    found: list[Found] = []
    waiting = queue.get_job_ids()
    position = {job_id: index for index, job_id in enumerate(waiting)}
    places: list[tuple[str, list[str]]] = [
        ("started", StartedJobRegistry(queue=queue).get_job_ids()),
        ("queued", waiting),
        ("scheduled", ScheduledJobRegistry(queue=queue).get_job_ids()),
    ]
    for state, ids in places:
        for job in _fetch(queue, ids):
            for endpoint, event, received in _matches_in(job, partner, query):
                enqueued = job.enqueued_at or job.created_at
                if enqueued is not None and enqueued.tzinfo is None:
                    enqueued = enqueued.replace(tzinfo=UTC)
                found.append(
                    _found_in_job(
                        "queued",
                        endpoint,
                        event,
                        received,
                        job,
                        state=state,
                        position=position.get(job.id) if state == "queued" else None,
                        age_seconds=(now - enqueued).total_seconds() if enqueued else None,
                    )
                )
                if len(found) >= limit:
                    return found
    failed_found = 0
    for job in _fetch(queue, FailedJobRegistry(queue=queue).get_job_ids()):
        for endpoint, event, received in _matches_in(job, partner, query):
            found.append(
                _found_in_job("failed", endpoint, event, received, job, error=describe(job).error)
            )
            failed_found += 1
            if failed_found >= limit:
                return found
    return found


def _refused(redis: Any, partner: str, query: Query, limit: int) -> list[Found]:
    if query.installation_id is not None:
        return []
    found: list[Found] = []
    for refusal in refusals.iter_refusals(redis, partner, since=query.since):
        for ref in refusal.events:
            if query.event_id is not None:
                same = ref.event_id is not None and (
                    ref.event_id == query.event_id
                    if refusal.endpoint == "thrad"
                    else ref.event_id.lower() == query.event_id.lower()
                )
                if not same:
                    continue
            if query.tag_id is not None and (
                refusal.endpoint != "thrad" or ref.tag_id != query.tag_id
            ):
                continue
            found.append(
                Found(
                    "refused",
                    source=refusal.endpoint,
                    event_id=ref.event_id,
                    tag_id=ref.tag_id,
                    received_at=refusal.when,
                    refusal={
                        "when": refusals.iso(refusal.when),
                        "request_id": refusal.request_id,
                        "status": refusal.status,
                        "code": refusal.code,
                        "message": refusal.message,
                        "index": ref.index,
                        "errors": refusal.errors_for(ref.index),
                        "errors_total": refusal.errors_total,
                    },
                )
            )
            if len(found) >= limit:
                return found
    return found


def describe_found(item: Found, partner: str) -> str:
    """A match as a few lines for a person: the verdict first, then the facts.

    ``partner`` names the partner in a NOT_FOUND's next step.
    """
    data = item.to_json()
    ident = " ".join(
        f"{key}={data[key]}"
        for key in ("event_id", "tag_id", "installation_id")
        if data[key] is not None
    )
    lines = ["  ".join(part for part in (item.where.upper(), item.source or "", ident) if part)]
    if item.where == "stored":
        lines.append(f"  received_at: {data['received_at']}  (stored by job {item.job_id or '-'})")
        lines.append(f"  row: {orjson.dumps(item.row).decode()}")
    elif item.where == "queued":
        place = {
            "queued": f"waiting in the queue at position {item.position} (0 = next)",
            "scheduled": "waiting for a retry (it failed once for a transient reason)",
            "started": "being stored by a worker right now",
        }.get(item.state or "", item.state or "")
        lines.append(f"  job {item.job_id}: {place}, queued {data['age_seconds']} s ago")
        lines.append(f"  received_at: {data['received_at']}")
    elif item.where == "failed":
        lines.append(f"  job {item.job_id} failed: {item.error}")
        lines.append(f"  next: inlet failed show {item.job_id}   (then requeue it once fixed)")
    elif item.where == "refused" and item.refusal is not None:
        r = item.refusal
        lines.append(
            f"  {r['when']}  {r['status']} {r['code']}: {r['message']}  (request {r['request_id']})"
        )
        for error in r["errors"]:
            where = "whole request" if error.get("index") is None else f"index {error['index']}"
            lines.append(f"  - {where}, {error.get('field') or '-'}: {error.get('message')}")
        if not r["errors"] and r["errors_total"]:
            lines.append(f"  (none of the {r['errors_total']} error entries kept concern it)")
    else:
        lines.extend(not_found_lines(partner))
    return "\n".join(lines)


def not_found_lines(partner: str) -> list[str]:
    """What a NOT_FOUND proves (not that Inlet never answered), and where to look next."""
    return [
        f"  in no stored row, queued job, failed job or kept refusal of {partner}",
        "  Inlet may still have answered it: the refusal log keeps no event ids of a request "
        "refused before its body was read or parsed (401, 408, 413, 415, 429), and only the "
        f"first {refusals.MAX_EVENTS:,} of a refused batch; look for the request in "
        f"`inlet refusals list --partner {partner}` (a 401: `inlet refusals unauthenticated`)",
        "  not kept at all: a 503 answer, and refusals older than INLET_REFUSALS_DAYS days or "
        "past INLET_REFUSALS_PER_PARTNER entries",
        "  ask the partner for the request's time, status and X-Request-ID from their logs",
    ]
