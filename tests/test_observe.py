"""What ObserveRequests makes of a request: its log line names who made it, and
a 500 or a client that hangs up is answered, logged and counted like any other
error."""

from __future__ import annotations

import logging

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.credentials.admins import NewAdmin
from app.main import create_app
from app.settings import Settings
from tests.api import basic_auth
from tests.asgi import DISCONNECT, post_without_finishing
from tests.test_health import scrape

URL = "/attribution-api/v1/events"
SECRET = "secret-detail-9c1e"


async def fail(request: Request) -> Response:
    raise RuntimeError(f"something nobody planned for: {SECRET}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_500_carries_its_request_id_and_logs_one_traceback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    app.router.routes.append(Route("/fail", fail))
    # The test client re-raises what escapes the app, as a server would log it a
    # second time: the app must answer the 500 itself.
    with TestClient(app) as client, caplog.at_level(logging.INFO):
        response = client.get("/fail")
    assert response.status_code == 500
    assert response.content == b'{"error":"Internal server error","code":"internal_error"}'
    assert response.headers["content-type"] == "application/json"
    request_id = response.headers["x-request-id"]
    [traceback] = [r for r in caplog.records if r.exc_info]
    assert request_id in traceback.getMessage()
    assert SECRET in caplog.text  # the log has the detail; the client never does
    [access] = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.access"]
    assert (access["request_id"], access["status"]) == (request_id, 500)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_client_gone_mid_upload_is_counted_by_its_error_code(
    settings: Settings, admin: NewAdmin, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        before = scrape(client, admin)
        with caplog.at_level(logging.INFO):
            response = client.portal.call(
                post_without_finishing, app, URL, {**auth, "Content-Length": "100000"}, DISCONNECT
            )
        after = scrape(client, admin)
    assert response.status_code == 400
    assert response.json() == {"error": "Client disconnected", "code": "client_disconnected"}
    assert "client disconnected during upload" in caplog.text

    def delta(reason: str) -> float:
        key = (
            "inlet_batches_rejected_total",
            frozenset({"partner": "acme", "reason": reason}.items()),
        )
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("client_disconnected") == 1
    assert delta("http_400") == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_admin_request_is_logged_with_the_admin(
    client: TestClient, admin: NewAdmin, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="inlet.access"):
        assert client.get("/admin", headers=basic_auth(admin)).status_code == 200
        assert client.get("/admin", headers=auth).status_code == 401  # a partner's login
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.access"]
    assert [(line["status"], line.get("admin")) for line in lines] == [
        (200, "support"),
        (401, None),
    ]
