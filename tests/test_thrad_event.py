"""The Thrad event's shape check and the fields the server derives, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_network
from typing import Any

import orjson
import pytest

from app.errors import InvalidRequest
from app.request.client import client_address
from app.thrad.validate import derive_tag_id, server_fields, validate_event
from tests.events import THRAD_STRING_FIELDS

RECEIVED = datetime(2026, 5, 26, 16, 0, 0, tzinfo=UTC)
PROXIES = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))


def problems(body: Any) -> list[tuple[str | None, str]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidRequest) as caught:
        validate_event(raw)
    assert caught.value.errors is not None
    return [(p["field"], p["message"]) for p in caught.value.errors]


def test_only_event_name_is_required() -> None:
    assert validate_event(b'{"event_name": "items_added"}') == {"event_name": "items_added"}


def test_unknown_fields_are_ignored_and_nulls_count_as_absent() -> None:
    body = {"event_name": "x", "colour": "blue", "channel": "web", "tag_id": None, "params": None}
    assert validate_event(orjson.dumps(body)) == {"event_name": "x"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, [("event_name", "is required")]),
        ({"event_name": None}, [("event_name", "is required")]),
        ({"event_name": ""}, [("event_name", "must not be empty")]),
        ({"event_name": "  "}, [("event_name", "must not be empty")]),
        ({"event_name": 7}, [("event_name", "must be a string, not a number")]),
        *[
            ({"event_name": "x", field: 1}, [(field, "must be a string, not a number")])
            for field in THRAD_STRING_FIELDS
        ],
        (
            {"event_name": "x", "timestamp": "1748275200"},
            [("timestamp", "must be a number, not a string")],
        ),
        (
            {"event_name": "x", "timestamp": True},
            [("timestamp", "must be a number, not a boolean")],
        ),
        (
            {"event_name": "x", "view_time_ms": [1]},
            [("view_time_ms", "must be a number, not an array")],
        ),
        (
            {"event_name": "x", "consent": "yes"},
            [("consent", "must be a JSON object, not a string")],
        ),
        (
            {"event_name": "x", "consent": [True]},
            [("consent", "must be a JSON object, not an array")],
        ),
        ({"event_name": "x", "params": "a=b"}, [("params", "must be a JSON object, not a string")]),
        (
            {"event_name": "x", "params": {"k": "a\x00b"}},
            [("params", "must not contain the character \\u0000")],
        ),
        # Every problem at once, so the partner fixes them in one round trip.
        (
            {"tag_id": 1, "params": []},
            [
                ("event_name", "is required"),
                ("tag_id", "must be a string, not a number"),
                ("params", "must be a JSON object, not an array"),
            ],
        ),
    ],
)
def test_every_wrong_type_is_named(body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert problems(body) == expected


@pytest.mark.parametrize("body", [b"{", b"[]", b'"items_added"', b"null", b"1e999"])
def test_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        validate_event(body)


def test_values_are_not_checked() -> None:
    """Thrad checks shape only: odd values of the right type are accepted."""
    body = {
        "event_name": "my custom event!",
        "timestamp": -5,
        "attribution_type": "psychic",
        "view_time_ms": 0.5,
        "page_url": "not a url",
        "consent": {},
    }
    assert validate_event(orjson.dumps(body)) == body


@pytest.mark.parametrize(
    ("event", "headers", "expected"),
    [
        ({"tag_id": "tag_1", "page_url": "https://shop.example/x"}, {}, "tag_1"),
        (
            {"page_url": "https://Shop.Example:8443/cart?x=1"},
            {"origin": "https://o.example"},
            "site:shop.example",
        ),
        ({"page_url": "not a url"}, {"origin": "https://o.example"}, "site:o.example"),
        ({}, {"origin": "https://o.example", "referer": "https://r.example/p"}, "site:o.example"),
        ({}, {"origin": "null", "referer": "https://r.example/p"}, "site:r.example"),
        ({}, {"referer": "https://r.example/p"}, "site:r.example"),
        ({}, {"referer": "http://[::1"}, "site:unknown"),
        ({"tag_id": ""}, {}, "site:unknown"),
        ({}, {}, "site:unknown"),
    ],
)
def test_tag_id_fallbacks(event: dict[str, Any], headers: dict[str, str], expected: str) -> None:
    assert derive_tag_id(event, headers) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # An untrusted peer can't vouch for X-Forwarded-For: it is ignored.
        ("203.0.113.9", "81.2.69.142", "203.0.113.9"),
        # Behind a trusted proxy, the rightmost untrusted hop is the client...
        ("10.0.0.2", "81.2.69.142", "81.2.69.142"),
        ("10.0.0.2", "81.2.69.142, 10.0.0.7", "81.2.69.142"),
        # ...and whatever the client itself put further left is not believed.
        ("10.0.0.2", "6.6.6.6, 81.2.69.142", "81.2.69.142"),
        ("10.0.0.2", "garbage, 81.2.69.142", "81.2.69.142"),
        ("10.0.0.2", "81.2.69.142, garbage", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.3", "10.0.0.3"),
        ("2001:db8::1", "[2a00:1450::1]", "2a00:1450::1"),
        ("::ffff:10.0.0.2", "81.2.69.142", "81.2.69.142"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("testclient", "81.2.69.142", None),
        (None, None, None),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str | None, forwarded: str | None, expected: str | None
) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer_is_the_client() -> None:
    assert client_address("10.0.0.2", "81.2.69.142", ()) == "10.0.0.2"


def server(event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = dict(
        headers={},
        ip_address="81.2.69.142",
        partner_id=7,
        api_key_id=3,
        key_label="backend",
        received_at=RECEIVED,
    )
    options.update(kwargs)
    return server_fields(event, **options)


def test_channel_is_always_server() -> None:
    assert server({"event_name": "x", "channel": "web"})["channel"] == "server"


def test_timestamp_defaults_to_receive_time_and_is_kept_when_sent() -> None:
    assert server({"event_name": "x"})["timestamp"] == RECEIVED.timestamp() == 1779811200
    assert server({"event_name": "x", "timestamp": 1748275200})["timestamp"] == 1748275200


def test_params_are_stamped_and_the_partners_own_kept() -> None:
    params = {"content_id": "sku_123", "quantity": 2, "integration": "spoofed", "partner_id": 1}
    queued = server({"event_name": "x", "params": params})
    assert queued["params"] == {
        "content_id": "sku_123",
        "quantity": 2,
        "integration": "partner_s2s",
        "partner_id": 7,
        "api_key_label": "backend",
    }
    assert params["integration"] == "spoofed"  # the caller's dict is not changed
    assert server({"event_name": "x"})["params"] == {
        "integration": "partner_s2s",
        "partner_id": 7,
        "api_key_label": "backend",
    }


def test_each_accepted_event_gets_its_own_ingest_id() -> None:
    assert server({"event_name": "x"})["ingest_id"] != server({"event_name": "x"})["ingest_id"]
