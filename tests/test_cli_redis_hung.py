"""A hung Redis (SIGSTOPped: it accepts connections and never answers) makes every
``inlet`` command that needs it say "Redis is unavailable" within its timeout."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from app.embedded_redis import EmbeddedRedis
from app.settings import Settings
from tests.cli_runner import run_cli
from tests.services import running_redis

# Before: `inlet failed list` waited 40 s (a 10 s socket timeout, retried).
WELL_BEFORE_THE_OLD_WAIT = 8.0


@pytest.fixture
def hung_redis() -> Iterator[EmbeddedRedis]:
    with running_redis() as server:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            yield server
        finally:
            os.kill(server.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "command",
    [
        ("failed", "list"),
        ("failed", "show", "0123abcd"),
        ("refusals", "list", "--partner", "acme"),
        ("events", "find", "--partner", "acme", "--event-id", "x"),
    ],
)
def test_a_hung_redis_is_named_quickly(
    settings: Settings, hung_redis: EmbeddedRedis, command: tuple[str, ...]
) -> None:
    if command[0] == "events":
        run_cli(settings, "partners", "create", "acme")
    hung = settings.replace(redis_url=hung_redis.url, redis_timeout=0.5)
    started = time.monotonic()
    result = run_cli(hung, *command, expect=1)
    elapsed = time.monotonic() - started
    assert "Redis is unavailable (TimeoutError" in result.stderr, result.stderr
    assert elapsed < WELL_BEFORE_THE_OLD_WAIT, elapsed
