"""A partner's latest accepted events, both formats: stored rows and batches still queued.

For the admin page's live view, where support watches a partner's test send
arrive. "Accepted" is what got a 204: either stored already (SQL, newest
``received_at`` first) or waiting in the queue (its job's events). Reads use
the ``(partner_id, received_at, id)`` index of each table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from sqlalchemy.engine import Engine

from app.db import events, partners, thrad_events

# The waiting jobs looked at, from the head of the queue: enough for a test send.
QUEUE_SCAN = 200


@dataclass(frozen=True)
class Recent:
    state: str  # "stored" or "queued"
    format: str  # "onside" or "thrad"
    received_at: datetime | None
    event_id: str | None
    event_name: str | None
    installation_id: str | None = None  # Onside
    tag_id: str | None = None  # Thrad
    job_id: str | None = None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def stored(engine: Engine, partner: str, limit: int) -> list[Recent] | None:
    """The partner's newest ``limit`` stored events; None when there is no such partner."""
    with engine.connect() as conn:
        partner_id = conn.execute(
            sa.select(partners.c.id).where(partners.c.name == partner)
        ).scalar()
        if partner_id is None:
            return None
        onside = conn.execute(
            sa.select(
                events.c.received_at,
                events.c.event_id,
                events.c.event_name,
                events.c.installation_id,
                events.c.job_id,
            )
            .where(events.c.partner_id == partner_id)
            .order_by(events.c.received_at.desc(), events.c.id.desc())
            .limit(limit)
        ).all()
        thrad = conn.execute(
            sa.select(
                thrad_events.c.received_at,
                thrad_events.c.event_id,
                thrad_events.c.event_name,
                thrad_events.c.tag_id,
                thrad_events.c.job_id,
            )
            .where(thrad_events.c.partner_id == partner_id)
            .order_by(thrad_events.c.received_at.desc(), thrad_events.c.id.desc())
            .limit(limit)
        ).all()
    found = [
        Recent(
            "stored",
            "onside",
            _aware(r.received_at),
            str(r.event_id),
            r.event_name,
            installation_id=str(r.installation_id),
            job_id=r.job_id,
        )
        for r in onside
    ] + [
        Recent(
            "stored",
            "thrad",
            _aware(r.received_at),
            r.event_id,
            r.event_name,
            tag_id=r.tag_id,
            job_id=r.job_id,
        )
        for r in thrad
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    found.sort(key=lambda r: r.received_at or epoch, reverse=True)
    return found[:limit]


def queued(queue: Queue, partner: str, limit: int) -> list[Recent]:
    """The partner's events in jobs waiting at the head of the queue (first QUEUE_SCAN jobs)."""
    ids = queue.get_job_ids(0, QUEUE_SCAN)  # (offset, length)
    jobs = Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)
    found: list[Recent] = []
    for job in jobs:
        if job is None or (job.meta or {}).get("partner") != partner:
            continue
        endpoint = str(job.meta.get("endpoint") or "")
        batch: list[Any] = job.args[2] if len(job.args) > 2 else []
        received = _aware(job.enqueued_at)
        for event in batch:
            if not isinstance(event, dict):
                continue
            found.append(
                Recent(
                    "queued",
                    "thrad" if endpoint == "thrad" else "onside",
                    received,
                    event.get("event_id"),
                    event.get("event_name"),
                    installation_id=event.get("installation_id"),
                    tag_id=event.get("tag_id"),
                    job_id=job.id,
                )
            )
    epoch = datetime.min.replace(tzinfo=UTC)
    found.sort(key=lambda r: r.received_at or epoch, reverse=True)
    return found[:limit]
