"""The ingest routes' lean dispatch (app/hotpath.py) answers exactly as Starlette's way.

Each request is sent twice to the same running app: once as a server would
(``app(scope, ...)``, the lean way for an ingest POST) and once through
Starlette's middleware and router (``Starlette.__call__``). Status, headers
(but the request's own id) and body must be the same, and the scope shows
which way each took.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.hotpath import InletApp
from app.main import create_app
from app.ops import metrics
from app.settings import Settings
from tests.asgi import http_scope
from tests.events import ONSIDE_URL, THRAD_REFERENCE_BODY, THRAD_URL, onside_event

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@pytest.fixture
def app(settings: Settings) -> Iterator[tuple[InletApp, TestClient]]:
    application = create_app(settings)
    with TestClient(application) as client:  # runs the lifespan; its loop is client.portal's
        yield application, client


async def call(
    asgi: Any, method: str, path: str, headers: dict[str, str], body: bytes, query: str = ""
) -> tuple[Answer, dict[str, Any]]:
    """One request straight to an ASGI callable: its answer, and the scope it left."""
    scope = http_scope(
        method,
        path,
        [
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
            (b"content-length", str(len(body)).encode()),
            (b"host", b"testserver"),
        ],
        query.encode(),
        client=("203.0.113.7", 50000),
    )
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    status, sent_headers, sent = 0, [], bytearray()

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, sent_headers
        if message["type"] == "http.response.start":
            status, sent_headers = message["status"], list(message.get("headers", []))
        else:
            sent.extend(message.get("body", b""))

    await asgi(scope, receive, send)
    # The request id differs between any two requests: everything else must not.
    headers_seen = [(k, v) for k, v in sent_headers if k != b"x-request-id"]
    assert len(headers_seen) == len(sent_headers) - 1, "no X-Request-ID"
    return (status, headers_seen, bytes(sent)), scope


def both_ways(
    app: tuple[InletApp, TestClient], method: str, path: str, **request: Any
) -> tuple[Answer, bool]:
    """The answer of the lean way and of Starlette's way, asserted equal; and
    whether the first went the lean way (Starlette's router leaves itself in the scope)."""
    application, client = app

    def starlette_way(scope: Any, receive: Any, send: Any) -> Any:
        scope["app"] = application
        return Starlette.__call__(application, scope, receive, send)

    lean, lean_scope = client.portal.call(call, application, method, path, *_args(**request))
    router, router_scope = client.portal.call(call, starlette_way, method, path, *_args(**request))
    assert "router" in router_scope
    assert lean == router
    return lean, "router" not in lean_scope


def _args(headers: dict[str, str], body: bytes = b"", query: str = "") -> tuple[Any, ...]:
    return headers, body, query


@pytest.fixture
def bearer(engine: Any, settings: Settings, partner: NewPartner) -> dict[str, str]:
    key = create_api_key(engine, settings.secret_key, partner.name, "k")
    return {"Authorization": f"Bearer {key.api_key}", "Content-Type": "application/json"}


def onside_body(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"events": list(events)})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_onside_route_answers_the_lean_way_as_starlettes(
    app: tuple[InletApp, TestClient], auth: dict[str, str]
) -> None:
    json = {**auth, "Content-Type": "application/json"}
    cases: list[tuple[dict[str, Any], int]] = [
        ({"headers": json, "body": onside_body(onside_event(1))}, 204),
        ({"headers": {"Content-Type": "application/json"}, "body": b"{}"}, 401),
        ({"headers": {**json, "Authorization": "Basic eDp5"}, "body": b"{}"}, 401),
        ({"headers": {**auth, "Content-Type": "text/plain"}, "body": b"{}"}, 415),
        ({"headers": json, "body": b'{"events": ['}, 400),
        ({"headers": json, "body": onside_body(onside_event(2, event_id="nope"))}, 400),
        ({"headers": json, "body": onside_body(*[onside_event(n) for n in range(1001)])}, 413),
        ({"headers": json, "body": b" " * (1024 * 1024 + 1)}, 413),
        ({"headers": json, "body": onside_body(onside_event(3)), "query": "dry_run=true"}, 200),
    ]
    for request, status in cases:
        (answered, _, _), lean = both_ways(app, "POST", ONSIDE_URL, **request)
        assert (answered, lean) == (status, True), request


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_thrad_routes_answer_the_lean_way_as_starlettes(
    app: tuple[InletApp, TestClient], bearer: dict[str, str]
) -> None:
    body = THRAD_REFERENCE_BODY.encode()
    cases: list[tuple[dict[str, Any], int]] = [
        ({"headers": bearer, "body": body}, 204),
        ({"headers": {}, "body": body}, 401),
        ({"headers": {"Authorization": "Bearer ik_nope"}, "body": body}, 401),
        ({"headers": bearer, "body": b"not json"}, 400),
        ({"headers": bearer, "body": b'{"event_name": 5}'}, 400),
        ({"headers": bearer, "body": b" " * (64 * 1024 + 1)}, 413),
        ({"headers": bearer, "body": body, "query": "dry_run=true"}, 200),
    ]
    for path in (THRAD_URL, "/api/collect"):
        for request, status in cases:
            (answered, _, _), lean = both_ways(app, "POST", path, **request)
            assert (answered, lean) == (status, True), (path, request)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_what_is_not_an_ingest_post_takes_starlettes_way(
    app: tuple[InletApp, TestClient], bearer: dict[str, str]
) -> None:
    body = THRAD_REFERENCE_BODY.encode()
    for method, path, status in [
        ("GET", THRAD_URL, 405),
        ("PUT", ONSIDE_URL, 405),
        ("POST", THRAD_URL + "/", 307),  # the slash redirect
        ("POST", "/v2/api/collect", 404),
    ]:
        (answered, _, _), lean = both_ways(app, method, path, headers=bearer, body=body)
        assert (answered, lean) == (status, False), (method, path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_lean_way_is_counted_under_its_route(
    app: tuple[InletApp, TestClient], bearer: dict[str, str], auth: dict[str, str]
) -> None:
    """The metrics read the route's template from the scope, as after the router."""
    requests = metrics.get().requests
    before = requests.labels("/api/collect", "POST", "204")._value.get()
    both_ways(app, "POST", "/api/collect", headers=bearer, body=THRAD_REFERENCE_BODY.encode())
    assert requests.labels("/api/collect", "POST", "204")._value.get() == before + 2
