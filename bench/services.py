"""Real services for the benchmark: PostgreSQL with production durability, and Redis.

Unlike the test cluster (fsync off for speed), the benchmark's PostgreSQL
keeps fsync and synchronous_commit on: a drain figure must include what
durability costs. Redis is the embedded one with `appendfsync always`, as
``make run`` and a production deploy use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from app import migrations
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.db import make_engine
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings
from tests.services import running_cluster, running_redis

SECRET_KEY = "bench-secret-key-of-at-least-32-characters"
# The bench measures throughput, not the per-partner limit: a limit nobody
# reaches still costs its one Redis call per request.
RATE_LIMIT = "1000000/second"


# The tests' cluster (tests/services.py), configured as production would be:
# durable, and with the memory and WAL room of a real server.
DURABLE_CONFIG = {
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "50",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
}


@dataclass
class Stack:
    settings: Settings
    redis: EmbeddedRedis
    partner: NewPartner
    api_key: str  # the partner's Bearer key, for Thrad's endpoint
    root: Path


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


@contextmanager
def stack(pg_config: dict[str, str] | None = None) -> Iterator[Stack]:
    """PostgreSQL (migrated), Redis, and a partner with a limit nobody reaches.

    ``pg_config`` overrides settings of DURABLE_CONFIG (the scale run's small cache).
    """
    with ExitStack() as stack_:
        root = Path(tempfile.mkdtemp(prefix="inlet-bench-"))
        # Registered first, so it runs last: Redis's AOF alone can reach a GB.
        stack_.callback(shutil.rmtree, root, True)
        cluster = stack_.enter_context(running_cluster({**DURABLE_CONFIG, **(pg_config or {})}))
        url = cluster.create_database("inlet_bench")
        migrations.upgrade(url)
        # Nothing drains the queue during an ingest run, so Redis holds every
        # body sent (a GB or more) and its automatic AOF rewrites would fork
        # and copy all of it mid-measurement. Production workers keep the
        # queue short; here the rewrite runs between measurements instead.
        # Durability is unchanged: appendfsync always.
        redis = stack_.enter_context(
            running_redis(root / "redis", extra_config={"auto-aof-rewrite-percentage": "0"})
        )
        settings = Settings.from_env(
            {
                "DATABASE_URL": url,
                "REDIS_URL": redis.url,
                "INLET_DATA_DIR": str(root),
                "INLET_SECRET_KEY": SECRET_KEY,
                "INLET_LOG_LEVEL": "WARNING",
                "PORT": "0",
            }
        )
        engine = make_engine(url)
        try:
            partner = create_partner(engine, settings.secret_key, "bench", RATE_LIMIT)
            api_key = create_api_key(engine, settings.secret_key, "bench", "bench").api_key
        finally:
            engine.dispose()
        yield Stack(settings, redis, partner, api_key, root)


def environ(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    return {**os.environ, **settings.to_environ(), **extra}
