"""Below the endpoints: batches put straight on the queue, failed jobs, and what was stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine

from app import queue as q
from app.credentials.partners import NewPartner
from app.db import events as events_table
from app.db import thrad_events
from app.settings import Settings

RECEIVED_AT = datetime(2026, 5, 5, 12, 0, 1, tzinfo=UTC)


class Owner(Protocol):
    """A partner as a job names it (a NewPartner, or the partner of a key)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


def enqueue(
    settings: Settings,
    redis: Redis,
    partner: Owner,
    events: list[dict[str, Any]],
    *,
    endpoint: q.Endpoint = "onside",
    received_at: datetime = RECEIVED_AT,
    count_accepted: bool = False,
) -> str:
    """Queue one batch as the endpoint would (no validation); return the job id."""
    return q.enqueue_batch(
        q.make_queue(settings, redis),
        settings,
        endpoint=endpoint,
        partner_id=partner.id,
        partner_name=partner.name,
        events=events,
        received_at=received_at,
        count_accepted=count_accepted,
    )


def unreachable(settings: Settings) -> Settings:
    """The same settings with a database nobody listens on."""
    return settings.replace(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none")


def fail_for_real(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    events: list[dict[str, Any]],
) -> str:
    """Queue a batch; run it on a worker whose database is unreachable until it fails for good."""
    quick = settings.replace(retry_delays=(0, 0))
    job_id = enqueue(quick, redis, partner, events)
    drain(unreachable(quick))
    return job_id


def queued_jobs(redis: Redis) -> int:
    return len(redis.keys("rq:job:*"))


def onside_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(events_table).order_by(events_table.c.id)))


def thrad_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(thrad_events).order_by(thrad_events.c.id)))


def event_ids(engine: Engine) -> list[str]:
    """The stored Onside event ids, sorted."""
    with engine.connect() as conn:
        return sorted(str(v) for v in conn.execute(sa.select(events_table.c.event_id)).scalars())
