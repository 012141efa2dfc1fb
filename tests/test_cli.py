"""The `inlet` command, run in-process against the test databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from click.testing import Result
from starlette.testclient import TestClient

from app.credentials.partners import NewPartner
from tests.api import basic_auth
from tests.events import ONSIDE_EVENT, onside_event
from tests.events import ONSIDE_URL as URL


def test_partner_lifecycle(inlet: Callable[..., Result], client: TestClient) -> None:
    created = orjson.loads(inlet("partners", "create", "shop", "--json").stdout)
    assert set(created) == {"name", "username", "password", "api_key"}
    assert created["name"] == "shop"
    partner = NewPartner(0, "shop", created["username"], created["password"])
    assert (
        client.post(URL, json={"events": [ONSIDE_EVENT]}, headers=basic_auth(partner)).status_code
        == 204
    )

    listed = inlet("partners", "list").stdout
    assert "shop" in listed and created["username"] in listed and "active" in listed
    assert created["password"] not in listed

    assert "5/second" in inlet("partners", "set-rate-limit", "shop", "5/second").stdout
    assert "5/second" in inlet("partners", "list").stdout
    inlet("partners", "revoke", "shop")
    assert "revoked" in inlet("partners", "list").stdout


def test_create_prints_credentials_once_in_text(inlet: Callable[..., Result]) -> None:
    out = inlet("partners", "create", "textual").stdout
    assert "username: pk_" in out and "password: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("partners", "revoke", "nobody"), "no partner named 'nobody'"),
        (("partners", "set-rate-limit", "nobody", "5/second"), "no partner named 'nobody'"),
        (("partners", "create", "x", "--rate-limit", "fast"), "not a rate limit"),
        (("events", "export", "--partner", "nobody"), "no partner named 'nobody'"),
    ],
)
def test_operator_mistakes_get_a_clear_message(
    inlet: Callable[..., Result], args: tuple[str, ...], message: str
) -> None:
    result = inlet(*args, expect=1)
    assert message in result.output
    assert "Traceback" not in result.output


def test_duplicate_partner_name_is_refused(inlet: Callable[..., Result]) -> None:
    inlet("partners", "create", "twice")
    result = inlet("partners", "create", "twice", expect=1)
    assert "already exists" in result.output


def test_export_writes_json_lines_oldest_first(
    inlet: Callable[..., Result],
    client: TestClient,
    partner: NewPartner,
    auth: dict[str, str],
    drain: Callable[[], None],
) -> None:
    def event(n: int, name: str) -> dict[str, Any]:
        return onside_event(
            n,
            event_name=name,
            payload={"n": n},
            event_datetime="2026-05-05T14:00:00+02:00",
            installation_id="550E8400-E29B-41D4-A716-446655440000",
        )

    assert client.post(URL, json={"events": [event(1, "Sign_Up")]}, headers=auth).status_code == 204
    assert (
        client.post(URL, json={"events": [event(2, "PURCHASE")]}, headers=auth).status_code == 204
    )
    drain()
    lines = [
        orjson.loads(line)
        for line in inlet("events", "export", "--partner", "acme").stdout.splitlines()
    ]
    assert [line["payload"]["n"] for line in lines] == [1, 2]
    first = lines[0]
    # The five fields as sent, and what the server adds.
    assert set(first) == {*ONSIDE_EVENT, "source", "sent_event_name", "received_at"}
    assert first["source"] == "onside"
    assert first["event_name"] == "sign_up" and first["sent_event_name"] == "Sign_Up"
    assert first["event_datetime"] == "2026-05-05T12:00:00Z"
    assert first["installation_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert first["received_at"].endswith("Z")
    limited = inlet("events", "export", "--partner", "acme", "--limit", "1").stdout.splitlines()
    assert len(limited) == 1
