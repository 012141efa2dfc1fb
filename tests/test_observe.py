"""What ObserveRequests makes of a request: its log line names who made it, and
a 500 or a client that hangs up is answered, logged and counted like any other
error."""

from __future__ import annotations

import logging

import orjson
import pytest
from starlette.testclient import TestClient

from app.credentials.admins import NewAdmin
from tests.conftest import admin_auth


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_admin_request_is_logged_with_the_admin(
    client: TestClient, admin: NewAdmin, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="inlet.access"):
        assert client.get("/admin", headers=admin_auth(admin)).status_code == 200
        assert client.get("/admin", headers=auth).status_code == 401  # a partner's login
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.access"]
    assert [(line["status"], line.get("admin")) for line in lines] == [
        (200, "support"),
        (401, None),
    ]
