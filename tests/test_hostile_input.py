"""Hostile bodies: never a 500, and a 204 only for a batch that then lands in SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.api_keys import create_api_key
from app.batch import MAX_PAYLOAD_DEPTH
from app.db import events as events_table
from app.settings import Settings
from tests.test_onside_api import JSON, URL, assert_error_shape, event, queued_jobs


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
    response = client.post(URL, json={"events": [event(1, payload=payload)]}, headers=auth)
    assert response.status_code == 204, response.text
    drain()
    assert list(stored_payloads(engine).values()) == [payload]


@pytest.mark.parametrize("depth", [MAX_PAYLOAD_DEPTH + 1, 300, 1000])
def test_payload_nested_too_deep_gets_400_not_500(
    client: TestClient, auth: dict[str, str], redis: Redis, depth: int
) -> None:
    """300 levels used to pass validation and then crash the enqueue (orjson's limit is 254)."""
    body = orjson.dumps({"events": [event(1), event(2, payload={"placeholder": 0})]})
    body = body.replace(b'{"placeholder":0}', nested_text(depth))
    response = client.post(URL, content=body, headers={**auth, **JSON})
    errors = assert_error_shape(response, 400, "invalid_request")["errors"]
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
    errors = assert_error_shape(response, 400, "invalid_request")["errors"]
    assert [e["field"] for e in errors] == ["params"]
    assert queued_jobs(redis) == 0
