"""The one place a Redis client is made: plain Redis, TLS, a Unix socket, or
the primary that Sentinel names.

``REDIS_URL`` takes redis-py's own schemes (``redis://``, ``rediss://``,
``unix://``) and one more, which redis-py has no URL for::

    redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE_NAME[/DB]

For that one the URL is parsed here and redis-py's ``Sentinel`` does the
rest: ``master_for`` gives a client whose connections ask the Sentinels for
the primary's address each time they (re)connect, and drop a connection that
finds its server demoted to a replica (``ReadOnlyError``). So after a
failover every process follows the new primary on its next call, without a
restart. The user and password authenticate to the Redis servers; the
Sentinels are asked without credentials (they hold no data: keep them on the
private network).

Bad URLs are refused at start-up (``Settings.from_env``) with a message that
names what is wrong and never repeats the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from redis import Redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379
SCHEMES = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME)


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def redacted(url: str) -> str:
    """The URL with its password (if any) replaced, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}"


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{where}: the port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def _sentinel_address(text: str) -> tuple[str, int]:
    where = "REDIS_URL (redis+sentinel)"
    if text.startswith("["):  # [IPv6]:port
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host:
            raise ValueError(f"{where}: unclosed '[' in the Sentinel address {text!r}")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{where}: expected ':PORT' after [{host}] in {text!r}")
        return host, _port(rest[1:], where) if rest else DEFAULT_SENTINEL_PORT
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, ""
    if not host:
        raise ValueError(f"{where}: a Sentinel address has no host: {text!r}")
    return host, _port(port, where) if colon else DEFAULT_SENTINEL_PORT


def parse_sentinel_url(url: str) -> SentinelURL:
    """``redis+sentinel://...`` -> its parts; ValueError naming the problem (never the password)."""
    where = "REDIS_URL (redis+sentinel)"
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"{where}: must start with {SENTINEL_SCHEME}")
    rest = url[len(SENTINEL_SCHEME) :]
    if "?" in rest or "#" in rest:
        raise ValueError(f"{where}: takes no query string or fragment")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:
            # A lone word before @ is most likely a password missing its colon:
            # say so without repeating it.
            raise ValueError(f"{where}: credentials must be USER:PASSWORD@ or :PASSWORD@")
    if not hosts:
        raise ValueError(f"{where}: no Sentinel address (expected HOST:PORT[,HOST:PORT...])")
    sentinels = tuple(_sentinel_address(part) for part in hosts.split(","))
    parts = path.split("/") if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or not parts[0]:
        raise ValueError(f"{where}: no service name (expected .../SERVICE_NAME[/DB])")
    if len(parts) > 2:
        raise ValueError(f"{where}: expected .../SERVICE_NAME[/DB], got {len(parts)} path parts")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"{where}: the database must be a number, not {parts[1]!r}")
        db = int(parts[1])
    return SentinelURL(sentinels, unquote(parts[0]), db, username, password)


def check_redis_url(url: str) -> str:
    """Refuse a REDIS_URL that no client could be made from; return it unchanged."""
    if not url.startswith(SCHEMES):
        raise ValueError(
            f"REDIS_URL must start with one of {', '.join(SCHEMES)}, not {redacted(url)!r}"
        )
    if url.startswith(SENTINEL_SCHEME):
        parse_sentinel_url(url)
        return url
    try:
        parse_url(url)
    except ValueError as exc:
        # redis-py's messages name the field, not the password; the URL is redacted anyway.
        raise ValueError(f"REDIS_URL {redacted(url)!r}: {exc}") from None
    return url


def _client_options(timeout: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"health_check_interval": 30}
    if timeout is not None:
        options.update(
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One retry for a connection found broken (Redis restarted, or
            # failed over, since the last call: the retry asks Sentinel again);
            # none for a timeout, which would double the wait of a request
            # whose Redis has stopped answering.
            retry=RedisRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
    return options


class _SentinelPrimary(Redis):
    """The primary's client; closing it also closes its connections to the Sentinels."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            pool = self.connection_pool
            if isinstance(pool, SentinelConnectionPool):
                pool.sentinel_manager.close()


def make_redis(url: str, timeout: float | None = None) -> Redis:
    """A Redis client for ``url``, every call bounded by ``timeout`` when given.

    The web tier passes a short timeout: when Redis is down, stuck or failing
    over, the partner gets a quick 503 instead of a hung request. Every
    process (web, worker, CLI, admin) gets its client here.
    """
    options = _client_options(timeout)
    if not url.startswith(SENTINEL_SCHEME):
        return Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    if "socket_timeout" not in sentinel_options:
        # Without a timeout a Sentinel that stops answering would hang
        # discovery, and with it every reconnection, forever.
        sentinel_options = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_options)
    return sentinel.master_for(
        parsed.service_name,
        redis_class=_SentinelPrimary,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )


class _PinnedPool:
    """A connection pool that hands out one borrowed connection and never takes it back.

    ``WAIT`` counts the replicas that hold every write *its own connection*
    made, so it must follow the MULTI/EXEC on the same connection. redis-py's
    pipeline takes a connection from its pool for ``execute`` and returns it
    in ``reset`` (the end of ``execute``), so a ``WAIT`` sent through the
    client afterwards may go out on another connection, and inside the
    MULTI it would not block at all. A client over this pool sends the
    transaction, any check after it and the ``WAIT`` on one connection; the
    caller gives the connection back to the real pool at the end.
    """

    def __init__(self, pool: Any, connection: Any) -> None:
        self._pool = pool
        self._connection = connection

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._connection

    def release(self, connection: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class OneConnection:
    """Pipelines and commands that all go out on one connection of a client's pool.

    Made per write, so it builds pipelines directly: a whole ``Redis`` client
    costs about 0.2 ms to construct, a pipeline next to nothing.
    """

    def __init__(self, redis: Redis, connection: Any) -> None:
        self._pool = _PinnedPool(redis.connection_pool, connection)
        self._callbacks = redis.response_callbacks
        self.connection = connection

    def pipeline(self, transaction: bool = True) -> Pipeline:
        return Pipeline(self._pool, self._callbacks, transaction, None)  # type: ignore[arg-type]

    def exists(self, key: str) -> bool:
        with self.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            return bool(pipe.execute()[0])


@contextmanager
def one_connection(redis: Redis) -> Iterator[OneConnection]:
    """Borrow one connection of ``redis``'s pool for a write and its WAIT."""
    pool = redis.connection_pool
    connection = pool.get_connection()
    try:
        yield OneConnection(redis, connection)
    except BaseException:
        # A reply may still be on its way (a WAIT that timed out): never hand
        # the pool a connection whose next read would return it. redis-py's
        # Sentinel connections don't disconnect on a failed read themselves.
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


class ReplicasNotConfirmed(RedisError):
    """Fewer replicas than required confirmed a write in time: it may be on the
    primary alone, where a failover could lose it."""


def wait_for_replicas(client: OneConnection, replicas: int, timeout_ms: int) -> int:
    """``WAIT replicas timeout_ms`` on ``client``'s (single) connection; raise
    ReplicasNotConfirmed when fewer confirm; return how many did.

    The reply is read with its own timeout (the wait plus the socket's), so a
    replica timeout longer than INLET_REDIS_TIMEOUT is not taken for a dead Redis.
    """
    connection = client.connection
    socket_timeout = connection.socket_timeout or 1.0
    connection.send_command("WAIT", replicas, timeout_ms)
    acknowledged = int(connection.read_response(timeout=timeout_ms / 1000 + socket_timeout))
    if acknowledged < replicas:
        raise ReplicasNotConfirmed(
            f"{acknowledged} of {replicas} replicas confirmed the write within {timeout_ms} ms"
        )
    return acknowledged
