"""Per-partner counts for the last hour, shared by every process through Redis.

Prometheus counters can't answer "in the last hour" on their own (they need
a Prometheus server to difference them), and the admin page must work
without one. So each process also adds to one Redis hash per minute; the
page reads the last 60. Recording is best effort: a count lost while Redis
is away never fails a request or a job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger("inlet.stats")

PREFIX = "inlet:stats:"
# Whose requests a partner was not known for (no or bad credentials) count as.
UNKNOWN_PARTNER = "(unknown)"
WINDOW_MINUTES = 60
# Kept a little longer than the window, then Redis drops them by itself.
TTL_SECONDS = 2 * 3600

ACCEPTED = "accepted"  # events queued by the web tier (or a replay)
REJECTED = "rejected"  # ingest requests refused, by reason (the error code)
FAILED = "failed"  # events in jobs that failed for good (no retry left)


def _minute(now: float) -> int:
    return int(now // 60)


def record(
    redis: Redis,
    partner: str | None,
    kind: str,
    amount: int = 1,
    reason: str = "",
    now: float | None = None,
) -> None:
    """Add ``amount`` to this minute's count of ``kind`` for ``partner``."""
    if amount <= 0:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        add(pipe, partner, kind, amount, reason, now)
        pipe.execute()
    except RedisError as exc:
        log.debug("stats not recorded: %s", type(exc).__name__)


def add(
    pipe: Pipeline,
    partner: str | None,
    kind: str,
    amount: int = 1,
    reason: str = "",
    now: float | None = None,
) -> int:
    """Queue what ``record`` writes on ``pipe`` (the caller executes it); return
    how many commands were queued (0 when there is nothing to add).

    The ingest endpoints put their accepted count in the transaction that
    queues the job: no write, round trip or fsync of its own per request.
    """
    if amount <= 0:
        return 0
    key = f"{PREFIX}{_minute(time.time() if now is None else now)}"
    pipe.hincrby(key, orjson.dumps([partner or UNKNOWN_PARTNER, kind, reason]), amount)
    pipe.expire(key, TTL_SECONDS)
    return 2


@dataclass
class PartnerHour:
    """One partner's last hour; ``per_minute`` is oldest first."""

    accepted: int = 0
    failed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    per_minute: list[dict[str, int]] = field(
        default_factory=lambda: [
            {ACCEPTED: 0, REJECTED: 0, FAILED: 0} for _ in range(WINDOW_MINUTES)
        ]
    )

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def last_hour(redis: Redis, now: float | None = None) -> dict[str, PartnerHour]:
    """Every partner seen in the last 60 minutes (the current one included)."""
    current = _minute(time.time() if now is None else now)
    minutes = range(current - WINDOW_MINUTES + 1, current + 1)
    pipe = redis.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(f"{PREFIX}{minute}")
    hashes: list[dict[Any, Any]] = pipe.execute()
    partners: dict[str, PartnerHour] = {}
    for slot, counts in enumerate(hashes):
        for member, value in counts.items():
            partner, kind, reason = orjson.loads(member)
            hour = partners.setdefault(partner, PartnerHour())
            amount = int(value)
            if kind == ACCEPTED:
                hour.accepted += amount
            elif kind == FAILED:
                hour.failed += amount
            elif kind == REJECTED:
                hour.rejected[reason] = hour.rejected.get(reason, 0) + amount
            else:
                continue
            hour.per_minute[slot][kind] += amount
    return dict(sorted(partners.items()))
