"""The per-partner request limit, shared by every web process through Redis.

GCRA (the generic cell rate algorithm): one key per partner holding the
"theoretical arrival time" of the next request. A limit of N per period
allows a burst of N and then one request every period/N; a refused request
learns exactly how long to wait. One script call, atomic, on Redis's clock
(so web processes on different hosts agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import NoScriptError

from app.settings import RateLimit

# The counters are kept in memory only: REPL_NONE keeps the script's SET out
# of the AOF (and away from replicas), so with `appendfsync always` a
# request's rate-limit call does not wait for an fsync of its own, and the
# group's write is its one durable write. The key has no expiry either: Redis
# writes a DEL to the AOF for every key that expires, an fsync again (one key
# per partner stays in memory, a few dozen bytes; a stale one counts as
# "no recent request"). What that costs: after Redis restarts, or fails over
# to a replica, every partner starts with a full burst again. (pcall: where
# effects replication is off, the SET is durable as before.)
_GCRA = """
pcall(redis.set_repl, redis.REPL_NONE)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - burst - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', new_tat))
return 0
"""


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str = "inlet:ratelimit:"):
        self._redis = redis
        self._script = redis.register_script(_GCRA)
        self._prefix = prefix

    def hit(self, key: str, limit: RateLimit) -> float:
        """Count one request; return 0 if allowed, else the seconds to wait."""
        return self.hit_many([(key, limit)])[0]

    def hit_many(self, hits: Sequence[tuple[str, RateLimit]]) -> list[float]:
        """Count several requests in one round trip (a pipeline of script
        calls, each atomic, in order); return each one's wait as ``hit`` does."""
        try:
            return self._pipeline(hits)
        except NoScriptError:
            # Redis restarted (or flushed its scripts): none of the calls ran.
            self._redis.script_load(_GCRA)
            return self._pipeline(hits)

    def _pipeline(self, hits: Sequence[tuple[str, RateLimit]]) -> list[float]:
        # EVALSHA directly: redis-py's Script in a pipeline asks SCRIPT EXISTS
        # first, a second round trip on every call.
        pipe = self._redis.pipeline(transaction=False)
        for key, limit in hits:
            interval_us = limit.period * 1_000_000 / limit.limit
            burst_us = limit.period * 1_000_000
            pipe.evalsha(self._script.sha, 1, self._prefix + key, interval_us, burst_us)
        return [float(wait_us) / 1_000_000 for wait_us in pipe.execute()]


def retry_after(wait_seconds: float) -> str:
    """``Retry-After`` takes whole seconds; never tell a client 0."""
    return str(max(1, math.ceil(wait_seconds)))
