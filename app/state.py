"""What the web tier holds for its lifetime: made in the lifespan, closed there."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app import queue as q
from app.credentials.api_keys import ApiKeyStore
from app.credentials.auth import MISS, CredentialStore, Miss, Partner
from app.credentials.throttle import (
    AuthFailureThrottle,
    count_failed_login,
    refuse_if_throttled,
)
from app.db import make_engine
from app.errors import RateLimited, ServiceUnavailable, Unauthorized
from app.groupcommit import Coalescer
from app.observe import Refused, write_refusals
from app.policy import PartnerPolicy
from app.quality.schemas import SchemaCheck, SchemaStore
from app.queue import Submission, enqueue_group
from app.redis_client import ReplicasNotConfirmed
from app.request.ratelimit import RateLimiter, retry_after
from app.settings import RateLimit, Settings

log = logging.getLogger("inlet.state")
T = TypeVar("T")

# What a partner is told to wait when Redis can't take its batch.
UNAVAILABLE_RETRY_AFTER = "5"


def queue_unavailable() -> ServiceUnavailable:
    # Connection refused, timeout, OOM (noeviction): nothing was queued.
    return ServiceUnavailable(
        "The queue is unavailable; nothing was accepted. Retry later.",
        headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
    )


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    redis: Redis
    queue: Queue
    credentials: CredentialStore
    limiter: RateLimiter
    api_keys: ApiKeyStore
    auth_throttle: AuthFailureThrottle
    group_commit: Coalescer[Submission, str]
    rate_limits: Coalescer[tuple[str, RateLimit], float]
    refusal_writes: Coalescer[Refused, None]
    schemas: SchemaStore

    @classmethod
    def open(cls, settings: Settings) -> AppState:
        engine = make_engine(settings.database_url)
        redis = q.make_redis(settings.redis_url, timeout=settings.redis_timeout)
        queue = q.make_queue(settings, redis)
        limiter = RateLimiter(redis)
        wait = settings.group_wait_ms / 1000
        policy_defaults = PartnerPolicy.defaults(settings)
        return cls(
            settings=settings,
            engine=engine,
            redis=redis,
            queue=queue,
            credentials=CredentialStore(
                engine, settings.secret_key, policy_defaults=policy_defaults
            ),
            limiter=limiter,
            api_keys=ApiKeyStore(engine, settings.secret_key, policy_defaults=policy_defaults),
            auth_throttle=AuthFailureThrottle(redis, settings.auth_failure_limit),
            group_commit=Coalescer(
                functools.partial(enqueue_group, queue, settings),
                max_size=settings.group_max_events,
                wait_seconds=wait,
                size=lambda submission: len(submission.events),
                name="group commit",
            ),
            rate_limits=Coalescer(
                limiter.hit_many, max_size=1000, wait_seconds=wait, name="rate-limit batch"
            ),
            # Counted and logged after the answer: they share a thread hop and
            # a round trip, as the rate limit's hits do.
            refusal_writes=Coalescer(
                functools.partial(write_refusals, redis, settings),
                max_size=1000,
                wait_seconds=wait,
                name="refusal log",
            ),
            schemas=SchemaStore(engine),
        )

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()

    async def run_redis(self, call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking Redis call off the event loop; Redis trouble -> 503."""
        try:
            return await run_in_threadpool(functools.partial(call, *args, **kwargs))
        except RedisError as exc:
            log.warning("redis unavailable: %s: %s", type(exc).__name__, exc)
            raise queue_unavailable() from None

    async def commit(self, submission: Submission) -> str:
        """Queue a request's events with its group; return, once they are durably
        queued, the id of the job that carries them.

        Redis trouble -> 503 to every request of the group (the group
        logged it once): nothing was queued.
        """
        try:
            return await self.group_commit.submit(submission)
        except ReplicasNotConfirmed:
            # Queued on the primary, perhaps, but not yet where a failover
            # keeps it: the partner resends and the dedup key absorbs a copy.
            raise ServiceUnavailable(
                "The batch is not yet confirmed on enough Redis replicas. Retry later; "
                "resending is safe.",
                headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
            ) from None
        except RedisError:
            raise queue_unavailable() from None

    async def authenticate(
        self,
        request: Request,
        check: Callable[..., T | None],
        cached: Callable[..., T | None | Miss],
        *args: str,
        refusal: Unauthorized,
        known: Callable[..., bool] | None = None,
    ) -> T:
        """Check credentials: from the cache on the event loop when it can
        answer, else in a thread (SQL). The database unreachable -> 503
        (nothing accepted); no match -> the failure counts toward the
        client's failed-login limit, then ``refusal``.

        A name that ``known`` says was never found before, from an address
        already over its failed-login limit, gets the 429 without a SQL
        lookup. The trade-off: behind an address shared with an attacker, a
        partner this process has not seen yet waits out the window (a
        minute by default); one it has seen always gets in.
        """
        found = cached(*args)
        if found is MISS and known is not None and not known(*args):
            await refuse_if_throttled(self.auth_throttle, request, self.settings.trusted_proxies)
        try:
            if found is MISS:
                found = await run_in_threadpool(check, *args)
        except SQLAlchemyError as exc:
            log.warning("credential lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "Credentials cannot be checked right now; nothing was accepted. Retry later.",
                headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
            ) from None
        if found is None:
            await count_failed_login(self.auth_throttle, request, self.settings.trusted_proxies)
            raise refusal
        return found

    async def schema_check(self, partner: Partner) -> SchemaCheck | None:
        """What the partner's events are checked against beyond their shape: its
        schemas and its unknown-events policy; None when that checks nothing.

        From the cache on the event loop when it can answer, else in a thread.
        """
        found = self.schemas.cached(partner.id)
        if found is MISS:
            try:
                found = await run_in_threadpool(self.schemas.get, partner.id)
            except SQLAlchemyError as exc:
                log.warning("schema lookup failed: %s", type(exc).__name__)
                raise ServiceUnavailable(
                    "Event schemas cannot be read right now; nothing was accepted. Retry later.",
                    headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
                ) from None
        assert not isinstance(found, Miss)
        unknown = partner.policy.unknown_events
        if not found and unknown == "accept":
            return None
        return SchemaCheck(found, unknown)

    async def enforce_rate_limit(self, partner: Partner) -> None:
        limit = partner.rate_limit or self.settings.rate_limit
        try:
            # The hits of one loop turn share a pipeline (see app/groupcommit.py).
            wait = await self.rate_limits.submit((f"partner:{partner.id}", limit))
        except RedisError:
            raise queue_unavailable() from None
        if wait > 0:
            raise RateLimited(
                f"Rate limit of {limit} exceeded; retry in {retry_after(wait)} s",
                headers={"Retry-After": retry_after(wait)},
            )
