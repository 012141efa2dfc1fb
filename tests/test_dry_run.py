"""``?dry_run=true`` on both endpoints: validated exactly as for real, 200 with what
was found, nothing queued or stored, counted against the rate limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, set_rate_limit
from app.main import create_app
from app.quality.dryrun import wants_dry_run
from app.quality.schemas import set_schema
from app.settings import Settings
from tests.api import assert_error
from tests.events import ONSIDE_URL, THRAD_URL, onside_event
from tests.queued import onside_rows, queued_jobs, thrad_rows

SCHEMA = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "string"}}}


@pytest.fixture
def bearer(engine: Engine, settings: Settings, partner: NewPartner) -> dict[str, str]:
    return {
        "Authorization": "Bearer "
        + create_api_key(engine, settings.secret_key, "acme", "k").api_key
    }


def test_a_valid_batch_gets_200_and_nothing_is_queued(
    client: TestClient,
    auth: dict[str, str],
    redis: Redis,
    drain: Callable[[], None],
    engine: Engine,
) -> None:
    body = {"events": [onside_event(1), onside_event(2)]}
    response = client.post(ONSIDE_URL + "?dry_run=true", json=body, headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"valid": True, "events": 2, "warnings": []}
    assert queued_jobs(redis) == 0
    drain()
    assert onside_rows(engine) == []
    # false is a real request.
    assert client.post(ONSIDE_URL + "?dry_run=false", json=body, headers=auth).status_code == 204
    assert queued_jobs(redis) == 1


def test_warnings_name_each_flag_by_index(
    settings: Settings, engine: Engine, partner: NewPartner, auth: dict[str, str], redis: Redis
) -> None:
    set_schema(engine, "acme", "purchase_completed", orjson.dumps(SCHEMA), "warn")
    ahead = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    body = {
        "events": [
            onside_event(1, payload={"amount": "1"}),
            onside_event(2, payload={"amount": 1}, event_datetime=ahead),
        ]
    }
    with TestClient(create_app(settings)) as client:
        response = client.post(ONSIDE_URL + "?dry_run=TRUE", json=body, headers=auth)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["valid"] is True and answer["events"] == 2
    assert sorted((w["index"], w["field"]) for w in answer["warnings"]) == [
        (1, "event_datetime"),
        (1, "payload.amount"),
    ]
    assert queued_jobs(redis) == 0


def test_an_invalid_batch_gets_the_usual_400(
    settings: Settings, engine: Engine, partner: NewPartner, auth: dict[str, str], redis: Redis
) -> None:
    set_schema(engine, "acme", "purchase_completed", orjson.dumps(SCHEMA), "enforce")
    body = {"events": [onside_event(1, payload={}), {"event_name": "x"}]}
    with TestClient(create_app(settings)) as client:
        shape = client.post(ONSIDE_URL + "?dry_run=1", json=body, headers=auth)
        schema = client.post(
            ONSIDE_URL + "?dry_run=1", json={"events": [onside_event(1, payload={})]}, headers=auth
        )
        unauthenticated = client.post(ONSIDE_URL + "?dry_run=true", json=body)
    assert {e["index"] for e in assert_error(shape, 400, "invalid_request")["errors"]} == {1}
    assert assert_error(schema, 400, "invalid_request")["errors"] == [
        {"index": 0, "field": "payload.amount", "message": '"amount" is a required property'}
    ]
    assert_error(unauthenticated, 401, "unauthorized")
    assert queued_jobs(redis) == 0


@pytest.mark.parametrize(
    ("value", "dry"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_every_spelling_the_error_names_is_accepted(value: str, dry: bool) -> None:
    """The 400 says "true, false, 1 or 0 (in any case)": each of them parses."""
    request = Request({"type": "http", "query_string": f"dry_run={value}".encode()})
    assert wants_dry_run(request) is dry


@pytest.mark.parametrize(
    "query", ["dry_run=yes", "dry_run=on", "dry_run=2", "dry_run=", "dry_run=true&dry_run=true"]
)
def test_a_bad_dry_run_value_is_a_400(
    client: TestClient,
    auth: dict[str, str],
    bearer: dict[str, str],
    redis: Redis,
    query: str,
) -> None:
    onside = client.post(f"{ONSIDE_URL}?{query}", json={"events": [onside_event(1)]}, headers=auth)
    thrad = client.post(f"{THRAD_URL}?{query}", json={"event_name": "x"}, headers=bearer)
    for response in (onside, thrad):
        body = assert_error(response, 400, "invalid_request")
        assert body["error"] == (
            "The dry_run query parameter must be true, false, 1 or 0 (in any case), given once"
        )
        assert body["errors"] == [
            {
                "index": None,
                "field": "dry_run",
                "message": "must be true, false, 1 or 0 (in any case), given once",
            }
        ]
    assert queued_jobs(redis) == 0


def test_thrad_dry_run(
    client: TestClient,
    bearer: dict[str, str],
    redis: Redis,
    drain: Callable[[], None],
    engine: Engine,
) -> None:
    ahead = datetime.now(UTC).timestamp() + 3 * 86400
    event: dict[str, Any] = {"event_name": "x", "timestamp": ahead}
    response = client.post(THRAD_URL + "?dry_run=true", json=event, headers=bearer)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["valid"], answer["events"]) == (True, 1)
    assert [(w["index"], w["field"]) for w in answer["warnings"]] == [(None, "timestamp")]
    refused = client.post("/api/collect?dry_run=true", json={"event_name": 5}, headers=bearer)
    assert assert_error(refused, 400, "invalid_request")["errors"][0]["field"] == "event_name"
    assert queued_jobs(redis) == 0
    drain()
    assert thrad_rows(engine) == []


def test_a_dry_run_counts_against_the_rate_limit(
    engine: Engine,
    settings: Settings,
    partner: NewPartner,
    auth: dict[str, str],
    bearer: dict[str, str],
    redis: Redis,
) -> None:
    set_rate_limit(engine, "acme", "2/minute")
    body = {"events": [onside_event(1)]}
    with TestClient(create_app(settings)) as client:
        first = client.post(ONSIDE_URL + "?dry_run=true", json=body, headers=auth)
        second = client.post(THRAD_URL + "?dry_run=true", json={"event_name": "x"}, headers=bearer)
        third = client.post(ONSIDE_URL + "?dry_run=true", json=body, headers=auth)
        real = client.post(ONSIDE_URL, json=body, headers=auth)
    assert (first.status_code, second.status_code) == (200, 200)
    assert_error(third, 429, "rate_limited")
    assert_error(real, 429, "rate_limited")
    assert queued_jobs(redis) == 0
