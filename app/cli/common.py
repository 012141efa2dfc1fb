"""What the command groups share: settings, an engine, errors, logging."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from app.credentials.partners import PartnerError
from app.db import make_engine
from app.errors import ConfigError
from app.migrations import SchemaError, require_current_schema
from app.queue import make_redis
from app.settings import Settings, database_url_from_env, parse_log_level


def setup_logging() -> None:
    try:
        level = parse_log_level(os.environ.get("INLET_LOG_LEVEL") or "INFO")
    except ValueError as exc:
        raise click.ClickException(f"invalid setting: {exc}") from None
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def load_settings(*, database: bool = True) -> Settings:
    """The settings, for a command that uses the database unless ``database=False``.

    Such a command first checks that the database answers and is migrated, so
    that from the wrong folder it says what to do in one line (and creates
    neither ./var nor an empty SQLite file). `migrate`, `web`, `worker` and
    `dev` skip the check: they make the schema or wait for the database.
    """
    try:
        if database:
            require_current_schema(database_url_from_env(os.environ))
        return Settings.from_env()
    except (ConfigError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def engine_for(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn expected failures into a one-line message and exit status 1."""
    try:
        yield
    except (PartnerError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def redis_for(settings: Settings) -> Iterator[Redis]:
    """A Redis client whose every call gives up after INLET_REDIS_TIMEOUT
    seconds (2 by default), with Redis trouble as a one-line message.

    A support person at a terminal must learn "Redis is unavailable" in
    seconds, not after a hung socket's minutes: a stopped (SIGSTOPped,
    partitioned) Redis accepts the connection and never answers.
    """
    redis = make_redis(settings.redis_url, timeout=settings.redis_timeout)
    try:
        yield redis
    except RedisError as exc:
        raise click.ClickException(f"Redis is unavailable ({type(exc).__name__}: {exc})") from None
    finally:
        redis.close()
