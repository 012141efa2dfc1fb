"""Failed authentication, counted per client address and shared through Redis.

Past ``INLET_AUTH_FAILURE_LIMIT`` failures in a window, an address that keeps
sending wrong credentials gets 429 with ``Retry-After`` (the rest of the
window) instead of 401, from every web process alike.

Correct credentials are never refused by this, from any address. The
decision: a partner's secret is 256 random bits, so no rate of guessing
threatens it, and the throttle's job is to make a misbehaving client back
off and to keep a flood of bad attempts visible. Refusing the address
outright would hand a denial of service to anyone who shares the partner's
egress address (a NAT gateway), or to the partner's own server that still
has an old password. Only failures touch Redis; a good request costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.errors import TooManyFailedLogins
from app.request.client import client_address, forwarded_for
from app.request.ratelimit import retry_after
from app.settings import IPNetwork, RateLimit

log = logging.getLogger("inlet.auth")

# INCR the window's counter, start the window on the first failure, and say
# how long it has left: one atomic round trip.
_COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


class AuthFailureThrottle:
    def __init__(self, redis: Redis, limit: RateLimit, prefix: str = "inlet:authfail:"):
        self._redis = redis
        self._script = redis.register_script(_COUNT_FAILURE)
        self._limit = limit
        self._prefix = prefix

    @property
    def limit(self) -> RateLimit:
        return self._limit

    def failed(self, address: str | None) -> float:
        """Count one failure from ``address``; return 0, or the seconds it must wait.

        Redis trouble fails open (the caller answers 401): the throttle must
        never be the reason a request gets a 5xx.
        """
        if address is None:
            return 0.0
        window_ms = int(self._limit.period * 1000)
        try:
            count, ttl_ms = self._script(keys=[self._prefix + address], args=[window_ms])
        except RedisError as exc:
            log.warning("auth failure not counted, redis unavailable: %s", type(exc).__name__)
            return 0.0
        if int(count) <= self._limit.limit:
            return 0.0
        if int(count) == self._limit.limit + 1:
            log.warning(
                "too many failed logins from %s: throttled for %.0f s", address, ttl_ms / 1000
            )
        return max(int(ttl_ms), 1) / 1000

    def waiting(self, address: str | None) -> float:
        """The seconds ``address`` must still wait if it is over its limit, else 0.

        Counts nothing; Redis trouble fails open, as in ``failed``.
        """
        if address is None:
            return 0.0
        key = self._prefix + address
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            count, ttl_ms = pipe.execute()
        except RedisError as exc:
            log.warning("auth throttle not read, redis unavailable: %s", type(exc).__name__)
            return 0.0
        if count is None or int(count) <= self._limit.limit:
            return 0.0
        return max(int(ttl_ms), 1) / 1000


def client_key(request: Request, trusted_proxies: Iterable[IPNetwork]) -> str:
    """The client's address, through trusted proxies only (INLET_TRUSTED_PROXIES).

    A peer that is no IP address (a Unix socket) is counted under its name,
    or as "unknown": wrong credentials share one count, right ones still pass.
    """
    peer = request.client.host if request.client else None
    address = client_address(peer, forwarded_for(request.headers), tuple(trusted_proxies))
    return address or peer or "unknown"


def _too_many(wait: float) -> TooManyFailedLogins:
    return TooManyFailedLogins(
        f"Too many failed authentications from this address; retry in {retry_after(wait)} s",
        headers={"Retry-After": retry_after(wait)},
    )


async def refuse_if_throttled(
    throttle: AuthFailureThrottle, request: Request, trusted_proxies: Iterable[IPNetwork]
) -> None:
    """Raise the 429 if the client's address is already over its limit; count nothing.

    Asked before a SQL lookup of a name the credential cache doesn't know:
    an address already refused can't make the database work for each new
    bogus name it tries (nor fill the cache with them).
    """
    wait = await run_in_threadpool(throttle.waiting, client_key(request, trusted_proxies))
    if wait > 0:
        raise _too_many(wait)


async def count_failed_login(
    throttle: AuthFailureThrottle, request: Request, trusted_proxies: Iterable[IPNetwork]
) -> None:
    """Count a failed authentication; raise the 429 once the address is over its limit.

    The caller raises its own 401 when this returns.
    """
    wait = await run_in_threadpool(throttle.failed, client_key(request, trusted_proxies))
    if wait > 0:
        raise _too_many(wait)
