"""``GET /openapi.json`` describes the endpoints exactly: schemathesis checks every
response against it (no 500s, status codes, headers, bodies) on the live app."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app import openapi
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, set_rate_limit
from app.errors import InvalidRequest
from app.main import create_app
from app.request.jsonchecks import beyond_utc_years
from app.settings import RateLimit, Settings
from app.thrad.validate import validate_event
from tests.asgi import post_without_finishing
from tests.thrad_strategies import edge_event_bodies

URL = "/attribution-api/v1/events"
THRAD_URLS = ["/v1/api/collect", "/api/collect"]
# Bounded so that both modes together stay well under a minute.
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 60}
# Per Thrad path (one event per request: about 1 s per 60 examples).
THRAD_EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 60}
# 200 is the answer to ?dry_run=true (nothing queued), 204 to a real request.
ERROR_STATUSES = {"200", "204", "400", "401", "408", "413", "415", "429", "503"}
# Invalid data must get one of the document's 4xx; schemathesis's default list
# lacks 413, which is this endpoint's answer to more than 1,000 events.
# Unknown query parameters are ignored, as unknown JSON fields are (a partner's
# tooling may add a cache-buster): schemathesis would otherwise send them in
# negative mode and want a 400, now that the operations declare ``dry_run``.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "413", "415"]}},
        "generation": {"allow-extra-parameters": False},
    }
)


@contextlib.contextmanager
def live_schema(settings: Settings) -> Iterator[OpenApiSchema]:
    """The document as served, bound to a live app (its lifespan runs, Redis and SQL are real)."""
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    try:
        yield schema
    finally:
        schemathesis_asgi.shutdown_lifespans()


@pytest.fixture
def api(settings: Settings) -> Iterator[OpenApiSchema]:
    # Limits no example run reaches: a 429 would be correct (the document has it), but
    # schemathesis's ignored-auth check sends a wrong password per example and wants
    # 401 every time; the failed-login throttle has tests of its own.
    with live_schema(
        settings.replace(
            rate_limit=RateLimit(1_000_000, 1.0), auth_failure_limit=RateLimit(1_000_000, 1.0)
        )
    ) as schema:
        yield schema


def test_document_is_served_and_names_every_status(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.")
    operation = document["paths"][URL]["post"]
    assert set(operation["responses"]) == ERROR_STATUSES
    assert operation["security"] == [{"basicAuth": []}]
    assert document["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    for path in THRAD_URLS:
        operation = document["paths"][path]["post"]
        assert set(operation["responses"]) == ERROR_STATUSES
        assert operation["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for name in ("TooManyRequests", "Unavailable"):
        assert document["components"]["responses"][name]["headers"]["Retry-After"]["required"]


def holds_a_time_beyond_utc_years(body: Any) -> bool:
    events = body.get("events") if isinstance(body, dict) else None
    return isinstance(events, list) and any(
        isinstance(e, dict)
        and isinstance(e.get("event_datetime"), str)
        and beyond_utc_years(e["event_datetime"])
        for e in events
    )


def test_a_date_time_beyond_the_years_utc_can_hold_is_refused_by_name(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Valid RFC 3339, but before year 1 once in UTC: a 400 that says so."""
    events = [
        {
            "event_id": "550e8400-e29b-41d4-a716-446655440000",
            "event_name": "purchase",
            "event_datetime": when,
            "installation_id": "550e8400-e29b-41d4-a716-446655440001",
            "payload": {},
        }
        for when in ("0001-01-01T00:00:01+02:00", "9999-12-31T23:00:00-01:30")
    ]
    response = client.post(URL, json={"events": events}, headers=auth)
    assert response.status_code == 400
    assert [e["message"] for e in response.json()["errors"]] == [
        "must fall between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC,"
        ' not "0001-01-01T00:00:01+02:00"',
        "must fall between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC,"
        ' not "9999-12-31T23:00:00-01:30"',
    ]
    # At the edge, but inside: accepted.
    events[0]["event_datetime"] = "0001-01-01T02:00:00+02:00"
    assert client.post(URL, json={"events": events[:1]}, headers=auth).status_code == 204


def run_examples(
    operation: Any, mode: GenerationMode, count: int, headers: dict[str, str]
) -> list[int]:
    """Send ``count`` generated requests, each response checked by schemathesis; their statuses."""
    statuses: list[int] = []

    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        # The one rule the document states in words alone (JSON Schema has no
        # bound on a date-time): its 400 is tested on its own, above.
        strategy = strategy.filter(lambda case: not holds_a_time_beyond_utc_years(case.body))

    @hypothesis_settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=headers)
        statuses.append(response.status_code)

    check()
    # Shown with `pytest -s`: what the run exercised.
    print(f"{operation.path} {mode}: {dict(sorted(Counter(statuses).items()))}")
    return statuses


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_onside_endpoint_conforms_to_the_document(
    api: OpenApiSchema, auth: dict[str, str], mode: GenerationMode
) -> None:
    statuses = run_examples(api[URL]["POST"], mode, EXAMPLES[mode], auth)
    # The run reached the endpoint's logic, not only its front door.
    expected = {204} if mode is GenerationMode.POSITIVE else {400}
    assert expected <= set(statuses), statuses


@pytest.fixture
def bearer(engine: Engine, settings: Settings, partner: NewPartner) -> dict[str, str]:
    key = create_api_key(engine, settings.secret_key, partner.name, "schemathesis")
    return {"Authorization": f"Bearer {key.api_key}"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("mode", list(THRAD_EXAMPLES), ids=str)
@pytest.mark.parametrize("path", THRAD_URLS)
def test_thrad_endpoint_conforms_to_the_document(
    api: OpenApiSchema, bearer: dict[str, str], mode: GenerationMode, path: str
) -> None:
    statuses = run_examples(api[path]["POST"], mode, THRAD_EXAMPLES[mode], bearer)
    if mode is GenerationMode.POSITIVE:
        # Whatever the document calls valid is accepted (a 400 here means the
        # document allows more than the endpoint does); on ?dry_run=true only
        # checked (200).
        assert 204 in statuses and set(statuses) <= {200, 204}, statuses
    else:
        assert 400 in statuses, statuses


# What random examples rarely or never reach, each answer checked against
# the document: (Authorization, extra headers, body) -> status, and the
# exact `error` for a 401 (Thrad's bodies), else the `code`.
_EVENT = {"event_name": "items_added"}
# The shape of a key, but no such key.
WRONG_KEY = "Bearer ik_0123456789abcdef_" + "x" * 43
THRAD_REFUSALS = {
    "no key": (None, {}, _EVENT, 401, "Missing bearer token"),
    "basic credentials": ("Basic YTpi", {}, _EVENT, 401, "Missing bearer token"),
    "wrong key": (WRONG_KEY, {}, _EVENT, 401, "Invalid API key"),
    "over 64 KiB": (
        "key",
        {},
        {**_EVENT, "params": {"pad": "x" * 65536}},
        413,
        "payload_too_large",
    ),
    "brotli": ("key", {"Content-Encoding": "br"}, _EVENT, 415, "unsupported_media_type"),
    "not gzip": ("key", {"Content-Encoding": "gzip"}, _EVENT, 400, "invalid_request"),
}
# Only the checks of the response against the document: schemathesis's
# ignored-auth check would send more requests of its own.
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def send_and_check(
    schema: OpenApiSchema, headers: dict[str, str], body: Any, server_error: bool = False
) -> Any:
    """One request from a hand-made case; the response must conform to the document."""
    case = schema[THRAD_URLS[0]]["POST"].Case(body=body, media_type="application/json")
    response = case.call(headers=headers)
    checks = CONFORMANCE if server_error else [not_a_server_error, *CONFORMANCE]
    case.validate_response(response, checks=checks)
    return response


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("authorization", "headers", "body", "status", "expected"),
    list(THRAD_REFUSALS.values()),
    ids=list(THRAD_REFUSALS),
)
def test_thrad_refusals_conform_to_the_document(
    api: OpenApiSchema,
    bearer: dict[str, str],
    authorization: str | None,
    headers: dict[str, str],
    body: Any,
    status: int,
    expected: str,
) -> None:
    if authorization == "key":
        headers = {**headers, **bearer}
    elif authorization is not None:
        headers = {**headers, "Authorization": authorization}
    response = send_and_check(api, headers, body)
    assert response.status_code == status, response.text
    assert expected in (response.json()["error"], response.json()["code"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_thrad_rate_limit_conforms_to_the_document(
    api: OpenApiSchema, bearer: dict[str, str], engine: Engine, partner: NewPartner
) -> None:
    set_rate_limit(engine, partner.name, "1/minute")
    assert send_and_check(api, bearer, _EVENT).status_code == 204
    limited = send_and_check(api, bearer, _EVENT)
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_thrad_failed_login_throttle_conforms_to_the_document(settings: Settings) -> None:
    wrong = {"Authorization": WRONG_KEY}
    with live_schema(settings.replace(auth_failure_limit=RateLimit(1, 60.0))) as schema:
        assert send_and_check(schema, wrong, _EVENT).status_code == 401
        throttled = send_and_check(schema, wrong, _EVENT)
    assert (throttled.status_code, throttled.json()["code"]) == (429, "too_many_failed_logins")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_thrad_queue_outage_conforms_to_the_document(
    settings: Settings, bearer: dict[str, str]
) -> None:
    # A port nothing listens on: Redis refuses at once, and the key check is SQL.
    with live_schema(settings.replace(redis_url="redis://127.0.0.1:9")) as schema:
        response = send_and_check(schema, bearer, _EVENT, server_error=True)
    assert (response.status_code, response.json()["code"]) == (503, "unavailable")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_thrad_body_timeout_conforms_to_the_document(
    settings: Settings, bearer: dict[str, str]
) -> None:
    app = create_app(settings.replace(body_timeout=0.2))
    with TestClient(app) as client:
        response = client.portal.call(post_without_finishing, app, THRAD_URLS[0], bearer)
    schema = schemathesis.openapi.from_dict(openapi.document())
    case = schema[THRAD_URLS[0]]["POST"].Case(body=_EVENT, media_type="application/json")
    case.validate_response(response, checks=[not_a_server_error, *CONFORMANCE])
    assert (response.status_code, response.json()["code"]) == (408, "request_timeout")


THRAD_EVENT_VALIDATOR = jsonschema_rs.validator_for(
    {"$ref": "#/components/schemas/ThradEvent", "components": openapi.document()["components"]}
)


def _accepted(body: dict[str, Any]) -> bool:
    try:
        validate_event(orjson.dumps(body))
    except InvalidRequest:
        return False
    return True


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(body=edge_event_bodies)
def test_thrad_event_schema_accepts_exactly_what_the_endpoint_accepts(body: dict[str, Any]) -> None:
    """The schema, read by a non-Python validator, agrees with validate_event both ways."""
    assert THRAD_EVENT_VALIDATOR.is_valid(body) == _accepted(body), body
