"""The credential cache can't be flushed by bogus names: LRU eviction, misses kept apart
from hits, and an address already throttled costs no SQL for names the cache doesn't know."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.testclient import TestClient

from app import migrations
from app.credentials.auth import MISS, CachedLookup, CredentialStore
from app.credentials.partners import create_partner
from app.db import make_engine
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from tests.api import basic_auth
from tests.conftest import ScratchDatabase
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.services import PostgresCluster, make_settings, wait_for

FLOOD = 10_050  # the figure: just past the old cache's 10,000 entries
ATTACKER = "203.0.113.9"


def bogus(n: int) -> dict[str, str]:
    token = base64.b64encode(f"pk_bogus{n:06d}:whatever".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_a_flood_of_unknown_names_does_not_evict_a_known_credential(
    scratch_sqlite: ScratchDatabase,
) -> None:
    made = create_partner(scratch_sqlite.engine, b"key", "good")
    store = CredentialStore(scratch_sqlite.engine, b"key", ttl=0.0)
    assert store.check_basic(made.username, made.password) is not None
    for n in range(FLOOD):
        assert store.check_basic(f"pk_bogus{n:06d}", "whatever") is None
    scratch_sqlite.vanish()
    # Within the stale grace, the partner seen before the flood still gets in.
    assert store.check_basic(made.username, made.password) is not None


def test_the_least_recently_used_entry_is_evicted_and_misses_live_apart() -> None:
    table = {"a": 1, "b": 2, "c": 3}
    down = False

    def load(key: str) -> int | None:
        if down:
            raise OperationalError("SELECT", {}, Exception("database is down"))
        return table.get(key)

    cache: CachedLookup[int] = CachedLookup(load, ttl=60.0, max_hits=2, max_misses=2)
    assert cache.get("a") == 1 and cache.get("b") == 2
    assert cache.peek("a") == 1  # "a" is now the most recently used
    assert cache.get("c") == 3  # evicts "b", the least recently used
    assert cache.peek("b") is MISS and cache.peek("a") == 1 and cache.peek("c") == 3
    for n in range(10):
        assert cache.get(f"nobody{n}") is None
    assert cache.peek("nobody9") is None  # misses are cached too, in their own room
    assert cache.peek("nobody0") is MISS
    assert cache.knows("a") and cache.knows("c") and not cache.knows("nobody9")
    expired: CachedLookup[int] = CachedLookup(load, ttl=0.0, max_hits=2, max_misses=2)
    expired.get("a")
    for n in range(10):
        expired.get(f"nobody{n}")
    down = True
    assert expired.get("a") == 1  # stale grace: still there after ten misses
    with pytest.raises(SQLAlchemyError):
        expired.get("b")


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL of this test's own, to stop."""
    cluster = PostgresCluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_after_a_database_stop_a_throttled_address_gets_429_and_a_known_partner_gets_in(
    own_cluster: PostgresCluster, redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The issue's scenario without its 10,050 names (the flood is the SQLite test
    above: through the test client it takes minutes on a busy machine)."""
    url = own_cluster.create_database("inlet_cache")
    migrations.upgrade(url)
    # One app; the attacker's address comes through a trusted proxy, as behind a balancer.
    app_settings = make_settings(
        url,
        redis_server.url,
        tmp_path / "app",
        INLET_TRUSTED_PROXIES="127.0.0.1",
        INLET_AUTH_FAILURE_LIMIT="5/hour",
    )
    local = make_engine(url)
    good = create_partner(local, app_settings.secret_key, "good")
    local.dispose()
    attacker = {"X-Forwarded-For": ATTACKER}
    with TestClient(create_app(app_settings), client=("127.0.0.1", 50000)) as client:
        state = client.app.state.inlet  # type: ignore[attr-defined]
        response = client.post(URL, json={"events": [onside_event(1)]}, headers=basic_auth(good))
        assert response.status_code == 204, response.text
        statuses = [
            client.post(URL, json={"events": [onside_event(2)]}, headers={**bogus(n), **attacker})
            for n in range(6)
        ]
        assert [r.status_code for r in statuses] == [401] * 5 + [429]
        own_cluster.stop()
        # The partner's entry goes stale (its TTL passes): the next check asks SQL, which is gone.
        wait_for(
            lambda: state.credentials.check_basic_cached(good.username, good.password) is MISS,
            timeout=10,
            message="the cached credential to go stale",
        )
        response = client.post(URL, json={"events": [onside_event(3)]}, headers=basic_auth(good))
        assert response.status_code == 204, response.text
        # The throttled address's next unknown name is refused before any SQL: 429, not 503.
        for n in range(100, 105):
            response = client.post(
                URL, json={"events": [onside_event(4)]}, headers={**bogus(n), **attacker}
            )
            assert response.status_code == 429, response.text
            assert int(response.headers["retry-after"]) > 0
        # Correct credentials from that address still pass (the name is known).
        response = client.post(
            URL, json={"events": [onside_event(5)]}, headers={**basic_auth(good), **attacker}
        )
        assert response.status_code == 204, response.text
