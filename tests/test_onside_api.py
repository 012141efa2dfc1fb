"""The Onside endpoint over HTTP: every status code, and what each leaves behind."""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.testclient import TestClient

from app.credentials.auth import MISS, CredentialStore
from app.credentials.partners import NewPartner, create_partner, revoke_partner, set_rate_limit
from app.main import create_app
from app.settings import Settings
from tests.api import JSON, assert_error, basic_auth
from tests.conftest import ScratchDatabase
from tests.events import ONSIDE_EVENT, ONSIDE_REFERENCE_BODY, onside_event
from tests.events import ONSIDE_URL as URL
from tests.queued import onside_rows, queued_jobs
from tests.services import wait_for


def test_reference_example_is_accepted_and_lands(
    client: TestClient,
    auth: dict[str, str],
    redis: Redis,
    drain: Callable[[], None],
    engine: Engine,
) -> None:
    response = client.post(URL, content=ONSIDE_REFERENCE_BODY, headers={**auth, **JSON})
    assert response.status_code == 204
    assert response.content == b""
    assert queued_jobs(redis) == 1
    drain()
    [row] = onside_rows(engine)
    assert row.event_name == "purchase_completed"
    assert row.payload == {"currency": "USD", "amount": "9.99"}
    assert str(row.event_id) == "550e8400-e29b-41d4-a716-446655440000"


def test_event_names_are_normalized_and_kept_as_sent(
    client: TestClient, auth: dict[str, str], drain: Callable[[], None], engine: Engine
) -> None:
    batch = {
        "events": [
            onside_event(1, event_name="Purchase_Completed"),
            onside_event(2, event_name="PURCHASE_COMPLETED"),
        ]
    }
    assert client.post(URL, json=batch, headers=auth).status_code == 204
    drain()
    rows = onside_rows(engine)
    assert [r.event_name for r in rows] == ["purchase_completed", "purchase_completed"]
    assert [r.sent_event_name for r in rows] == ["Purchase_Completed", "PURCHASE_COMPLETED"]


def test_duplicate_event_id_lands_once(
    client: TestClient, auth: dict[str, str], drain: Callable[[], None], engine: Engine
) -> None:
    """Sent twice in one batch and again in a second batch: one row."""
    assert (
        client.post(
            URL, json={"events": [onside_event(1), onside_event(1)]}, headers=auth
        ).status_code
        == 204
    )
    assert (
        client.post(
            URL, json={"events": [onside_event(1), onside_event(2)]}, headers=auth
        ).status_code
        == 204
    )
    drain()
    assert sorted(str(r.event_id)[-2:] for r in onside_rows(engine)) == ["01", "02"]


# -- 401 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + "bm8tY29sb24=",  # "no-colon"
        "Basic " + "dW5rbm93bjpzZWNyZXQ=",  # "unknown:secret"
    ],
)
def test_missing_or_malformed_credentials_get_401(
    client: TestClient, partner: NewPartner, redis: Redis, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post(URL, json={"events": [ONSIDE_EVENT]}, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith('Basic realm="inlet"')
    assert queued_jobs(redis) == 0


def test_wrong_password_gets_401(client: TestClient, partner: NewPartner, redis: Redis) -> None:
    wrong = NewPartner(partner.id, partner.name, partner.username, partner.password[:-1] + "x")
    response = client.post(URL, json={"events": [ONSIDE_EVENT]}, headers=basic_auth(wrong))
    assert_error(response, 401, "unauthorized")
    assert "password" not in response.text and partner.password not in response.text
    assert queued_jobs(redis) == 0


def test_revoked_credential_stops_working_within_seconds(
    client: TestClient, partner: NewPartner, auth: dict[str, str], engine: Engine
) -> None:
    assert client.post(URL, json={"events": [onside_event(1)]}, headers=auth).status_code == 204
    revoke_partner(engine, partner.name)
    revoked_at = time.monotonic()
    wait_for(
        lambda: (
            client.post(URL, json={"events": [onside_event(2)]}, headers=auth).status_code == 401
        ),
        timeout=10,
        interval=0.2,
        message="revocation to take effect",
    )
    assert time.monotonic() - revoked_at < 5


# -- 400 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "index", "field"),
    [
        (b"{", None, None),
        (b'{"events": "nope"}', None, "events"),
        (
            orjson.dumps({"events": [onside_event(1), onside_event(2, event_id="not-a-uuid")]}),
            1,
            "event_id",
        ),
        (orjson.dumps({"events": [onside_event(1, installation_id="x")]}), 0, "installation_id"),
        (orjson.dumps({"events": [onside_event(1, payload="x")]}), 0, "payload"),
        (orjson.dumps({"events": [onside_event(1, event_datetime="soon")]}), 0, "event_datetime"),
        (orjson.dumps({"events": [onside_event(1, event_name="")]}), 0, "event_name"),
        (orjson.dumps({"events": [onside_event(1, payload={"a": "\x00"})]}), 0, "payload"),
    ],
)
def test_invalid_batches_get_400_and_queue_nothing(
    client: TestClient,
    auth: dict[str, str],
    redis: Redis,
    body: bytes,
    index: int | None,
    field: str | None,
) -> None:
    response = client.post(URL, content=body, headers={**auth, **JSON})
    errors = assert_error(response, 400, "invalid_request")["errors"]
    assert {"index": index, "field": field} == {k: errors[0][k] for k in ("index", "field")}
    assert queued_jobs(redis) == 0


def test_one_bad_event_rejects_the_whole_batch(
    client: TestClient,
    auth: dict[str, str],
    redis: Redis,
    drain: Callable[[], None],
    engine: Engine,
) -> None:
    batch = {"events": [onside_event(n) for n in range(10)] + [onside_event(10, event_id="bad")]}
    response = client.post(URL, json=batch, headers=auth)
    assert response.json()["errors"] == [
        {"index": 10, "field": "event_id", "message": response.json()["errors"][0]["message"]}
    ]
    drain()
    assert onside_rows(engine) == []


# -- 413 ---------------------------------------------------------------------


def test_more_than_1000_events_gets_413(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    response = client.post(
        URL, json={"events": [onside_event(n) for n in range(1001)]}, headers=auth
    )
    assert_error(response, 413, "payload_too_large")
    assert queued_jobs(redis) == 0


def test_body_over_1_mib_gets_413_from_content_length(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    big = orjson.dumps({"events": [onside_event(1, payload={"pad": "x" * (1024 * 1024)})]})
    response = client.post(URL, content=big, headers={**auth, **JSON})
    assert_error(response, 413, "payload_too_large")
    assert queued_jobs(redis) == 0


def test_chunked_body_over_1_mib_gets_413(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": [{"payload": {"pad": "'
        for _ in range(40):
            yield b"x" * 32768
        yield b'"}}]}'

    response = client.post(URL, content=chunks(), headers={**auth, **JSON})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")
    assert queued_jobs(redis) == 0


def test_a_batch_just_under_the_limit_is_accepted(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    body = orjson.dumps({"events": [onside_event(1, payload={"pad": ""})]})
    pad = 1024 * 1024 - len(body)
    body = orjson.dumps({"events": [onside_event(1, payload={"pad": "x" * pad})]})
    assert len(body) == 1024 * 1024
    assert client.post(URL, content=body, headers={**auth, **JSON}).status_code == 204


def test_gzip_body_is_accepted(
    client: TestClient, auth: dict[str, str], drain: Callable[[], None], engine: Engine
) -> None:
    body = gzip.compress(orjson.dumps({"events": [onside_event(n) for n in range(50)]}))
    response = client.post(URL, content=body, headers={**auth, **JSON, "Content-Encoding": "gzip"})
    assert response.status_code == 204
    drain()
    assert len(onside_rows(engine)) == 50


def test_gzip_bomb_gets_413(client: TestClient, auth: dict[str, str], redis: Redis) -> None:
    """10 KB on the wire, 10 MB inflated: refused at the limit, not inflated."""
    bomb = gzip.compress(b'{"events": [' + b" " * (10 * 1024 * 1024) + b"]}")
    assert len(bomb) < 20_000
    response = client.post(URL, content=bomb, headers={**auth, **JSON, "Content-Encoding": "gzip"})
    assert_error(response, 413, "payload_too_large")
    assert queued_jobs(redis) == 0


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b'{"events": []}')[:-12]])
def test_broken_gzip_gets_400(
    client: TestClient, auth: dict[str, str], redis: Redis, body: bytes
) -> None:
    response = client.post(URL, content=body, headers={**auth, **JSON, "Content-Encoding": "gzip"})
    assert_error(response, 400, "invalid_request")
    assert queued_jobs(redis) == 0


def _batch(*numbers: int) -> bytes:
    return orjson.dumps({"events": [onside_event(n) for n in numbers]})


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(_batch(1)) + gzip.compress(_batch(2))),
        ("gzip", gzip.compress(_batch(1)) + b"GARBAGE"),
        ("deflate", zlib.compress(_batch(1)) + b"GARBAGE"),
    ],
    ids=["two-gzip-members", "gzip-then-garbage", "deflate-then-garbage"],
)
def test_compressed_body_with_trailing_data_gets_400(
    client: TestClient, auth: dict[str, str], redis: Redis, encoding: str, body: bytes
) -> None:
    """Only the first member would be read: the rest of the body must not vanish unseen."""
    response = client.post(
        URL, content=body, headers={**auth, **JSON, "Content-Encoding": encoding}
    )
    error = assert_error(response, 400, "invalid_request")
    assert "after the end of the compressed data" in error["error"]
    assert queued_jobs(redis) == 0


def test_gzip_body_without_content_encoding_is_named(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    response = client.post(URL, content=gzip.compress(_batch(1)), headers={**auth, **JSON})
    error = assert_error(response, 400, "invalid_request")
    assert "this looks gzip-compressed: send Content-Encoding: gzip" in error["error"]
    assert "UTF-8" not in str(error)
    assert queued_jobs(redis) == 0


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Content-Type": "text/plain"}, "unsupported_media_type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "unsupported_media_type"),
        ({"Content-Encoding": "br"}, "unsupported_media_type"),
    ],
)
def test_unsupported_media_gets_415(
    client: TestClient, auth: dict[str, str], redis: Redis, headers: dict[str, str], code: str
) -> None:
    response = client.post(
        URL, content=orjson.dumps({"events": [ONSIDE_EVENT]}), headers={**auth, **headers}
    )
    assert_error(response, 415, code)
    assert queued_jobs(redis) == 0


def test_an_unsupported_encoding_is_told_every_one_accepted(
    client: TestClient, auth: dict[str, str]
) -> None:
    """gzip and deflate bodies are both read: the 415 names both."""
    response = client.post(
        URL,
        content=orjson.dumps({"events": [ONSIDE_EVENT]}),
        headers={**auth, "Content-Encoding": "br"},
    )
    error = assert_error(response, 415, "unsupported_media_type")
    assert "use gzip, deflate or none" in error["error"]


# -- 429 ---------------------------------------------------------------------


def test_rate_limit_gets_429_with_retry_after(
    client: TestClient, partner: NewPartner, auth: dict[str, str], engine: Engine, redis: Redis
) -> None:
    set_rate_limit(engine, partner.name, "2/minute")
    statuses = [
        client.post(URL, json={"events": [onside_event(n)]}, headers=auth) for n in range(3)
    ]
    assert [r.status_code for r in statuses] == [204, 204, 429]
    assert_error(statuses[2], 429, "rate_limited")
    assert 1 <= int(statuses[2].headers["retry-after"]) <= 30
    assert queued_jobs(redis) == 2


def test_rate_limit_counters_stay_out_of_the_append_only_file(
    client: TestClient, partner: NewPartner, auth: dict[str, str], engine: Engine, redis: Redis
) -> None:
    """A request's one durable write is its group's: the limiter's own SET is not fsynced."""
    set_rate_limit(engine, partner.name, "2/minute")
    persistence = redis.info("persistence")
    assert persistence["aof_enabled"] == 1
    aof = Path(redis.config_get("dir")["dir"], "appendonly.aof")
    start = persistence["aof_current_size"]
    codes = [client.post(URL, json={"events": [onside_event(n)]}, headers=auth) for n in range(3)]
    assert [r.status_code for r in codes] == [204, 204, 429]
    assert redis.keys("inlet:ratelimit:*"), "the limiter kept no counter: the test proves nothing"
    written = aof.read_bytes()[start:]
    assert b"rq:job:" in written, "the AOF is not where Redis appends: the test proves nothing"
    assert b"inlet:ratelimit:" not in written


def test_rate_limit_is_shared_by_every_web_process(
    settings: Settings, engine: Engine, redis: Redis
) -> None:
    """Two apps (as two uvicorn processes would be) draw on one budget in Redis."""
    limited = create_partner(engine, settings.secret_key, "limited", rate_limit="3/minute")
    other = create_partner(engine, settings.secret_key, "other")
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        codes = [
            c.post(URL, json={"events": [onside_event(n)]}, headers=basic_auth(limited)).status_code
            for n, c in enumerate([one, two, one, two])
        ]
        assert codes == [204, 204, 204, 429]
        # Another partner has its own budget.
        assert (
            two.post(URL, json={"events": [onside_event(9)]}, headers=basic_auth(other)).status_code
            == 204
        )


def test_default_rate_limit_comes_from_settings(
    settings: Settings, partner: NewPartner, auth: dict[str, str]
) -> None:
    with TestClient(
        create_app(settings.replace(rate_limit=settings.rate_limit.parse("1/hour")))
    ) as c:
        assert c.post(URL, json={"events": [onside_event(1)]}, headers=auth).status_code == 204
        assert c.post(URL, json={"events": [onside_event(2)]}, headers=auth).status_code == 429


# -- 503 ---------------------------------------------------------------------


def test_redis_down_gets_503_quickly_and_no_204(
    settings: Settings, partner: NewPartner, auth: dict[str, str], tmp_path: Any
) -> None:
    down = settings.replace(redis_url=f"unix://{tmp_path}/nothing-here.sock")
    with TestClient(create_app(down)) as c:
        started = time.monotonic()
        response = c.post(URL, json={"events": [ONSIDE_EVENT]}, headers=auth)
        elapsed = time.monotonic() - started
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"]
    assert elapsed < 5


def test_redis_out_of_memory_gets_503_and_nothing_half_queued(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    assert client.post(URL, json={"events": [onside_event(1)]}, headers=auth).status_code == 204

    def queue_keys() -> list[bytes]:
        # The rate-limit key lives ~10 ms at 100/second: on a busy machine it
        # expires between the two snapshots, which says nothing about the queue.
        return sorted(k for k in redis.keys("*") if not k.startswith(b"inlet:ratelimit:"))

    before = queue_keys()
    assert before  # the first batch's job is there
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", "1")
    try:
        batch = {"events": [onside_event(n, payload={"pad": "x" * 500}) for n in range(100)]}
        response = client.post(URL, json=batch, headers=auth)
    finally:
        redis.config_set("maxmemory", "0")
    assert_error(response, 503, "unavailable")
    assert queue_keys() == before


# -- routing -----------------------------------------------------------------


def test_unknown_path_gets_json_404(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")


def test_wrong_method_gets_json_405(client: TestClient) -> None:
    assert_error(client.get(URL), 405, "method_not_allowed")
    assert_error(client.put(URL, json={}), 405, "method_not_allowed")


# -- the database unreachable from the web tier -------------------------------


def test_credentials_that_cannot_be_checked_get_503_not_500(
    settings: Settings, partner: NewPartner, auth: dict[str, str], redis: Redis
) -> None:
    """A web process that never saw the partner, with the database gone: 503, nothing queued."""
    gone = settings.replace(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none")
    with TestClient(create_app(gone)) as c:
        basic = c.post(URL, json={"events": [ONSIDE_EVENT]}, headers=auth)
        bearer = c.post(
            "/v1/api/collect",
            json={"event_name": "x"},
            headers={"Authorization": "Bearer ik_0123456789abcdef_" + "x" * 43},
        )
    for response in (basic, bearer):
        assert_error(response, 503, "unavailable")
        assert response.headers["retry-after"]
    assert queued_jobs(redis) == 0


def test_a_credential_seen_recently_survives_a_database_outage(
    scratch_sqlite: ScratchDatabase,
) -> None:
    """Within the stale grace, a cached credential keeps working when SQL fails."""
    local = scratch_sqlite.engine
    made = create_partner(local, b"key", "cached")
    warm = CredentialStore(local, b"key", ttl=0.0)
    assert warm.check_basic(made.username, made.password) is not None
    scratch_sqlite.vanish()
    assert warm.check_basic(made.username, made.password) is not None
    assert warm.check_basic(made.username, "wrong") is None
    cold = CredentialStore(local, b"key")
    with pytest.raises(SQLAlchemyError):
        cold.check_basic(made.username, made.password)


def test_a_nul_in_basic_credentials_is_a_401_not_a_503(
    client: TestClient, partner: NewPartner, redis: Redis
) -> None:
    """PostgreSQL refuses U+0000 in a query: that must not read as "database down"."""
    token = base64.b64encode(f"{partner.username}\x00:{partner.password}".encode()).decode()
    response = client.post(
        URL, json={"events": [ONSIDE_EVENT]}, headers={"Authorization": f"Basic {token}"}
    )
    assert_error(response, 401, "unauthorized")
    assert queued_jobs(redis) == 0


def test_cached_basic_check_answers_only_from_a_fresh_entry(
    engine: Engine, settings: Settings, partner: NewPartner
) -> None:
    """The event-loop check never does I/O: a miss or a stale entry says MISS."""
    store = CredentialStore(engine, settings.secret_key)
    assert store.check_basic_cached(partner.username, partner.password) is MISS
    found = store.check_basic(partner.username, partner.password)
    assert found is not None
    assert store.check_basic_cached(partner.username, partner.password) == found
    assert store.check_basic_cached(partner.username, partner.password + "x") is None
    expiring = CredentialStore(engine, settings.secret_key, ttl=0.0)
    expiring.check_basic(partner.username, partner.password)
    assert expiring.check_basic_cached(partner.username, partner.password) is MISS
