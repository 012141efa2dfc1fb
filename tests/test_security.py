"""Security properties: constant-time credential checks, partner isolation, and
secrets that never reach logs, error bodies, exports or Redis."""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import random
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import Result
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.auth import CredentialStore
from app.credentials.partners import NewPartner, create_partner
from app.db import events as events_table
from app.main import create_app
from app.settings import RateLimit, Settings
from tests.api import basic_auth
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.services import TEST_SECRET_KEY

# -- (a) timing ------------------------------------------------------------------

ROUNDS = 7
CALLS_PER_ROUND = 3000  # per case, interleaved in random order
# Generous: the point is that no case skips the work another does (an unknown
# username that returned before hashing would be ~2x faster), not nanoseconds.
TOLERANCE = 0.15
# A busy machine can disturb one measurement as a whole; a real difference
# shows in every one of them, so it still fails.
ATTEMPTS = 3
# A case doing twice a near miss's work: a measurement that can't tell it
# apart could not have told an early return apart either, and doesn't count.
CONTROL = "twice the work (control)"


def last_char_changed(password: str) -> str:
    return password[:-1] + ("A" if password[-1] != "A" else "B")


def median_ratios(calls: dict[str, Callable[[], object]], reference: str) -> dict[str, float]:
    """Per case, the median over rounds of its median call time over the reference's.

    Each round interleaves every case in random order and compares within
    itself, so a neighbour that slows the machine for a while slows every
    case of that round alike; the median over rounds drops a round that a
    burst hit unevenly.
    """
    ratios: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        samples: dict[str, list[int]] = {name: [] for name in calls}
        order = list(calls) * CALLS_PER_ROUND
        random.shuffle(order)
        for name in order:
            call = calls[name]
            started = time.perf_counter_ns()
            call()
            samples[name].append(time.perf_counter_ns() - started)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, value in medians.items():
            ratios[name].append(value / medians[reference])
    return {name: statistics.median(values) for name, values in ratios.items()}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_credential_check_takes_the_same_time_for_near_misses_and_strangers(
    engine: Engine, settings: Settings, partner: NewPartner
) -> None:
    """Measured, not assumed: medians of many in-process calls of check_basic."""
    # A long cache: every call does the same work (the lookup is a dict hit), so
    # what is compared is the hashing and the comparison themselves.
    store = CredentialStore(engine, settings.secret_key, ttl=3600)
    cases = {
        "near miss": (partner.username, last_char_changed(partner.password)),
        "random password": (
            partner.username,
            base64.urlsafe_b64encode(random.randbytes(32)).decode()[:43],
        ),
        "unknown username": ("pk_" + "0" * 24, last_char_changed(partner.password)),
        "right": (partner.username, partner.password),
    }
    assert store.check_basic(*cases["right"]) is not None
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(store.check_basic, *credentials)
        for name, credentials in cases.items()
    }
    near_miss = calls["near miss"]
    calls[CONTROL] = lambda: (near_miss(), near_miss())
    for call in calls.values():
        call()  # warm the cache
    measured = []
    for _ in range(ATTEMPTS):
        ratios = median_ratios(calls, "near miss")
        measured.append({name: round(ratio, 3) for name, ratio in ratios.items()})
        print("check_basic time over a near miss's:", measured[-1])
        resolved = ratios[CONTROL] >= 1 + 3 * TOLERANCE
        if resolved and all(abs(ratios[name] - 1) <= TOLERANCE for name in cases):
            return
    raise AssertionError(
        f"credential checks differ in time by more than {TOLERANCE:.0%} (or the measurement "
        f"could not even see twice the work) in all {ATTEMPTS} attempts: {measured}"
    )


# -- (c) isolation ---------------------------------------------------------------


def rows_of(engine: Engine, partner_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        result = conn.execute(
            sa.select(events_table.c.event_id, events_table.c.payload).where(
                events_table.c.partner_id == partner_id
            )
        )
        return {str(r.event_id): r.payload for r in result}


def test_a_partner_cannot_overwrite_or_deduplicate_away_anothers_events(
    client: TestClient, engine: Engine, settings: Settings, drain: Callable[[], None]
) -> None:
    a = create_partner(engine, settings.secret_key, "partner-a")
    b = create_partner(engine, settings.secret_key, "partner-b")
    ids = [onside_event(n)["event_id"] for n in range(3)]
    batch_b = {"events": [onside_event(n, payload={"owner": "b"}) for n in range(3)]}
    batch_a = {"events": [onside_event(n, payload={"owner": "a"}) for n in range(3)]}
    assert client.post(URL, json=batch_b, headers=basic_auth(b)).status_code == 204
    drain()
    # A sends B's ids, twice, after B's landed: A gets its own rows, B's stay as they were.
    assert client.post(URL, json=batch_a, headers=basic_auth(a)).status_code == 204
    assert client.post(URL, json=batch_a, headers=basic_auth(a)).status_code == 204
    drain()
    assert rows_of(engine, b.id) == {i: {"owner": "b"} for i in ids}
    assert rows_of(engine, a.id) == {i: {"owner": "a"} for i in ids}


def test_export_shows_only_one_partners_rows(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    drain: Callable[[], None],
    inlet: Callable[..., Result],
) -> None:
    a = create_partner(engine, settings.secret_key, "partner-a")
    b = create_partner(engine, settings.secret_key, "partner-b")
    client.post(
        URL, json={"events": [onside_event(1, payload={"owner": "a"})]}, headers=basic_auth(a)
    )
    client.post(
        URL,
        json={
            "events": [
                onside_event(1, payload={"owner": "b"}),
                onside_event(2, payload={"owner": "b"}),
            ]
        },
        headers=basic_auth(b),
    )
    drain()
    exported = [
        orjson.loads(line)
        for line in inlet("events", "export", "--partner", "partner-a").stdout.splitlines()
    ]
    assert [e["payload"] for e in exported] == [{"owner": "a"}]
    exported = [
        orjson.loads(line)
        for line in inlet("events", "export", "--partner", "partner-b").stdout.splitlines()
    ]
    assert [e["payload"] for e in exported] == [{"owner": "b"}, {"owner": "b"}]


# -- (d) secrets -----------------------------------------------------------------


def redis_contents(redis: Redis) -> bytes:
    """Every value of every key, with RQ's zlib-compressed job data inflated."""
    parts: list[bytes] = []
    for key in redis.keys("*"):
        kind = redis.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [redis.get(key) or b""]
        elif kind == b"hash":
            for field, value in redis.hgetall(key).items():
                values += [field, value]
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(redis.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":  # the refusal log
            for _, fields in redis.xrange(key):
                values += [*fields.keys(), *fields.values()]
        for value in values:
            parts.append(value)
            with contextlib.suppress(zlib.error):
                parts.append(zlib.decompress(value))
        parts.append(key)
    return b"\n".join(parts)


def test_secrets_never_reach_logs_error_bodies_exports_or_redis(
    settings: Settings,
    engine: Engine,
    partner: NewPartner,
    auth: dict[str, str],
    redis: Redis,
    drain: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
    inlet: Callable[..., Result],
) -> None:
    near = NewPartner(
        partner.id, partner.name, partner.username, last_char_changed(partner.password)
    )
    secrets = {
        "password": partner.password.encode(),
        "near-miss password": near.password.encode(),
        "Basic token": auth["Authorization"].split()[1].encode(),
        "near-miss token": basic_auth(near)["Authorization"].split()[1].encode(),
        "secret key": TEST_SECRET_KEY.encode(),
    }
    seen: list[bytes] = []
    caplog.set_level(logging.DEBUG)
    throttled = settings.replace(auth_failure_limit=RateLimit(2, 60.0))
    with TestClient(create_app(throttled)) as client:
        for headers, body in [
            (auth, {"events": [onside_event(1)]}),  # 204
            (auth, {"events": [onside_event(2, event_id="bad")]}),  # 400
            (basic_auth(near), {"events": [onside_event(3)]}),  # 401
            (basic_auth(near), {"events": [onside_event(3)]}),  # 401
            (basic_auth(near), {"events": [onside_event(3)]}),  # 429
        ]:
            response = client.post(URL, json=body, headers=headers)
            seen.append(response.content + str(response.headers).encode())
    assert b"too_many_failed_logins" in seen[-1]
    # Job data as queued, before the worker takes it.
    seen.append(redis_contents(redis))
    drain()
    seen.append(redis_contents(redis))
    seen.append(inlet("events", "export", "--partner", partner.name).stdout.encode())
    seen.append(inlet("partners", "list", "--json").stdout.encode())
    seen.append("\n".join(r.getMessage() for r in caplog.records).encode())
    assert any(b"550e8400" in s for s in seen)  # the captures did capture something
    # The refused requests were kept in the refusal log, which was searched too.
    assert b"inlet:refusals:partner:" in seen[-5] and b"inlet:refusals:unauthenticated" in seen[-5]
    for name, secret in secrets.items():
        for capture in seen:
            assert secret not in capture, f"the {name} leaked: {capture[:300]!r}"
