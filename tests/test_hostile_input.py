"""Hostile bodies: never a 500, and a 204 only for a batch that then lands in SQL."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.db import events as events_table
from app.main import create_app
from app.onside.validate import MAX_PAYLOAD_DEPTH
from app.settings import RateLimit, Settings
from tests.api import JSON, assert_error
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.queued import queued_jobs
from tests.strategies import HostileRequest, hostile_requests


def nested(depth: int) -> dict[str, Any]:
    """A payload whose objects nest ``depth`` levels deep (the payload itself is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def nested_text(depth: int) -> bytes:
    """The same as JSON text, built without recursion so any depth can be sent."""
    return b'{"x":' * (depth - 1) + b'{"leaf":1}' + b"}" * (depth - 1)


def stored_payloads(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events_table.c.event_id, events_table.c.payload))
        return {str(r.event_id): r.payload for r in rows}


def test_payload_at_the_depth_limit_lands(
    client: TestClient, auth: dict[str, str], drain: Callable[[], None], engine: Engine
) -> None:
    payload = nested(MAX_PAYLOAD_DEPTH)
    response = client.post(URL, json={"events": [onside_event(1, payload=payload)]}, headers=auth)
    assert response.status_code == 204, response.text
    drain()
    assert list(stored_payloads(engine).values()) == [payload]


@pytest.mark.parametrize("depth", [MAX_PAYLOAD_DEPTH + 1, 300, 1000])
def test_payload_nested_too_deep_gets_400_not_500(
    client: TestClient, auth: dict[str, str], redis: Redis, depth: int
) -> None:
    """300 levels used to pass validation and then crash the enqueue (orjson's limit is 254)."""
    body = orjson.dumps({"events": [onside_event(1), onside_event(2, payload={"placeholder": 0})]})
    body = body.replace(b'{"placeholder":0}', nested_text(depth))
    response = client.post(URL, content=body, headers={**auth, **JSON})
    errors = assert_error(response, 400, "invalid_request")["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "payload")]
    assert queued_jobs(redis) == 0


def test_thrad_params_nested_too_deep_gets_400_not_500(
    client: TestClient, engine: Engine, settings: Settings, partner: Any, redis: Redis
) -> None:
    key = create_api_key(engine, settings.secret_key, partner.name, "backend")
    body = b'{"event_name": "items_added", "params": ' + nested_text(300) + b"}"
    response = client.post(
        "/v1/api/collect", content=body, headers={"Authorization": f"Bearer {key.api_key}"}
    )
    errors = assert_error(response, 400, "invalid_request")["errors"]
    assert [e["field"] for e in errors] == ["params"]
    assert queued_jobs(redis) == 0


def decoded(request: HostileRequest) -> bytes:
    encoding = request.headers.get("Content-Encoding")
    if encoding == "gzip":
        return gzip.decompress(request.body)
    if encoding == "deflate":
        return zlib.decompress(request.body)
    return request.body


def as_numbers(value: Any) -> Any:
    """JSON numbers compared by value: jsonb hands 7.1e+16 back as the integer 71000000000000000."""
    if isinstance(value, dict):
        return {k: as_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_numbers(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def test_hostile_bodies_never_500_and_every_204_lands(
    settings: Settings,
    partner: NewPartner,
    auth: dict[str, str],
    drain: Callable[[], None],
    engine: Engine,
) -> None:
    """Whatever arrives: a 4xx that queued nothing, or a 204 whose every event is in SQL."""
    unlimited = settings.replace(rate_limit=RateLimit(1_000_000, 1.0))
    landed: set[str] = set()
    seen: dict[int, int] = {}

    @hypothesis_settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=hostile_requests())
    def check(request: HostileRequest) -> None:
        response = client.post(URL, content=request.body, headers={**auth, **request.headers})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in (204, 400, 413, 415), response.text[:500]
        if response.status_code != 204:
            assert_error(response, response.status_code, response.json()["code"])
            assert queued_jobs(redis) == 0
            return
        batch = orjson.loads(decoded(request))["events"]
        drain()
        assert queued_jobs(redis) == 0
        rows = stored_payloads(engine)
        for sent in batch:
            event_id = sent["event_id"].lower()
            assert event_id in rows, f"{event_id} got a 204 but is not in SQL"
            if event_id not in landed:
                # The first copy of an id wins; later copies are duplicates.
                first = next(e for e in batch if e["event_id"].lower() == event_id)
                assert as_numbers(rows[event_id]) == as_numbers(first["payload"])
                landed.add(event_id)

    redis = Redis.from_url(settings.redis_url)
    try:
        with TestClient(create_app(unlimited)) as client:
            check()
    finally:
        redis.close()
    # The run exercised both sides: refusals and batches that landed.
    assert seen.get(204) and seen.get(400), seen
