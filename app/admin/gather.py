"""What a page reads from Redis and the database, every read bounded in time.

A hung Redis (or database) must not hang the page: each read runs in a
thread that the page stops waiting for (anyio's ``abandon_on_cancel``) once
its time is up; the thread itself ends at its socket timeout
(INLET_REDIS_TIMEOUT). The page first asks both services the ``/readyz``
questions, for at most CHECK_SECONDS, and only then reads from the ones that
answered: a hung Redis costs the page one CHECK_SECONDS, not a timeout per
command. Whatever could not be read is None, and the page says why.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.ops.health import CHECKS, failure_message
from app.state import AppState

log = logging.getLogger("inlet.admin")

# A healthy Redis answers PING in well under a millisecond, a database's probe
# in a few: a second is ample, and is how long a page waits for a hung one.
CHECK_SECONDS = 1.0
REDIS, DATABASE = "redis", "database"


@dataclass
class Health:
    """The ``/readyz`` facts: per service, None when ready, else what is wrong."""

    problems: dict[str, str | None] = field(default_factory=dict)

    def ok(self, service: str) -> bool:
        return self.problems.get(service) is None


@dataclass(frozen=True)
class Read:
    """One read of the page: which service it needs, and the blocking call."""

    service: str
    call: Callable[[], Any]


async def _bounded(call: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """(True, value), or (False, the exception or "timeout")."""
    with anyio.move_on_after(seconds):
        try:
            return True, await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except Exception as exc:  # reported on the page, never a 500
            return False, exc
    return False, "timeout"


async def health(state: AppState) -> Health:
    """Ask Redis and the database what ``/readyz`` asks, at the same time."""
    found = Health()

    async def check(name: str, probe: Callable[[AppState], None]) -> None:
        ok, outcome = await _bounded(functools.partial(probe, state), CHECK_SECONDS)
        if ok:
            found.problems[name] = None
        elif outcome == "timeout":
            found.problems[name] = f"does not answer within {CHECK_SECONDS:g} s"
        else:
            found.problems[name] = failure_message(outcome)
        if not ok:
            log.warning("admin page: %s %s", name, found.problems[name])

    async with anyio.create_task_group() as group:
        for name, probe in CHECKS:
            group.start_soon(check, name, probe)
    return found


async def gather(state: AppState, found: Health, reads: dict[str, Read]) -> dict[str, Any]:
    """Run ``reads`` at once, each for at most INLET_REDIS_TIMEOUT; those whose
    service did not answer the health check are not tried. A read that fails
    or times out gives None."""
    results: dict[str, Any] = {name: None for name in reads}

    async def run(name: str, read: Read) -> None:
        ok, outcome = await _bounded(read.call, state.settings.redis_timeout)
        if ok:
            results[name] = outcome
        elif isinstance(outcome, RedisError | SQLAlchemyError) or outcome == "timeout":
            log.warning("admin page: %s not read: %s", name, type(outcome).__name__)
        else:
            raise outcome

    async with anyio.create_task_group() as group:
        for name, read in reads.items():
            if found.ok(read.service):
                group.start_soon(run, name, read)
    return results
