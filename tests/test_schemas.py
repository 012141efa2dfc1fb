"""Event schemas per partner (app/quality/schemas.py): set by the CLI, enforced or
warned on both formats, with each violation's index and JSON path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, PartnerError, set_policy
from app.errors import InvalidRequest
from app.main import create_app
from app.onside.validate import validate_batch
from app.quality.schemas import (
    EventSchema,
    SchemaCheck,
    SchemaFileError,
    SchemaStore,
    check_schema,
    compiled,
    delete_schema,
    json_path,
    set_schema,
)
from app.settings import Settings
from app.thrad.validate import validate_event
from tests.api import assert_error
from tests.events import ONSIDE_URL, THRAD_URL, onside_event
from tests.queued import onside_rows, queued_jobs, thrad_rows

PURCHASE = {
    "type": "object",
    "properties": {
        "amount": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
        "currency": {"enum": ["USD", "EUR"]},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
    "required": ["amount", "currency"],
}


def check(mode: str = "enforce", unknown: str = "accept") -> SchemaCheck:
    return SchemaCheck({"purchase_completed": EventSchema.of(mode, PURCHASE)}, unknown)


def batch(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"events": list(events)})


BAD = onside_event(2, payload={"amount": 9.99, "items": [{"sku": "a"}, {}], "currency": "USD"})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"type": "nope"}, '"nope" is not valid under any of the schemas'),
        ({"minimum": "x"}, '"x" is not of type "number"'),
        ({"pattern": "("}, '"(" is not a "regex"'),
        ({"$ref": "https://example.com/s.json"}, "Retrieval is disabled"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "only JSON Schema draft 2020-12"),
    ],
)
def test_a_schema_that_is_not_json_schema_is_refused(document: Any, message: str) -> None:
    with pytest.raises(SchemaFileError, match="JSON Schema") as caught:
        check_schema(document)
    assert message in str(caught.value)


def test_a_valid_schema_is_compiled_once_whatever_its_key_order() -> None:
    check_schema(PURCHASE)
    reordered = dict(reversed(list(PURCHASE.items())))
    assert compiled(reordered) is compiled(PURCHASE)
    assert compiled({"type": "object"}) is not compiled(PURCHASE)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([], "payload"),
        (["amount"], "payload.amount"),
        (["items", 1, "sku"], "payload.items[1].sku"),
        (["a.b", "c d"], 'payload["a.b"]["c d"]'),
    ],
)
def test_json_paths(path: list[str | int], expected: str) -> None:
    assert json_path("payload", path) == expected


def test_enforce_lists_each_violation_with_index_and_path() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_batch(batch(onside_event(1), BAD), 1000, schemas=check())
    errors = caught.value.errors
    assert errors is not None
    assert sorted((e["index"], e["field"]) for e in errors) == [
        (1, "payload.amount"),
        (1, "payload.items[1].sku"),
    ]
    assert "schema violations" in caught.value.message


def test_warn_accepts_and_flags_the_event() -> None:
    ok, bad = validate_batch(batch(onside_event(1), BAD), 1000, schemas=check("warn"))
    assert "violations" not in ok
    assert sorted(v["field"] for v in bad["violations"]) == [
        "payload.amount",
        "payload.items[1].sku",
    ]


def test_names_match_once_normalized() -> None:
    event = onside_event(1, event_name=" PURCHASE_Completed", payload={})
    with pytest.raises(InvalidRequest) as caught:
        validate_batch(batch(event), 1000, schemas=check())
    assert {e["field"] for e in caught.value.errors or []} == {
        "payload.amount",
        "payload.currency",
    }


@pytest.mark.parametrize(
    ("unknown", "outcome"), [("accept", None), ("warn", "flagged"), ("reject", "refused")]
)
def test_the_unknown_events_policy(unknown: str, outcome: str | None) -> None:
    event = onside_event(1, event_name="signup", payload={"x": 1})
    if outcome == "refused":
        with pytest.raises(InvalidRequest) as caught:
            validate_batch(batch(event), 1000, schemas=check(unknown=unknown))
        assert caught.value.errors == [
            {"index": 0, "field": "event_name", "message": "has no schema for this partner"}
        ]
        return
    [accepted] = validate_batch(batch(event), 1000, schemas=check(unknown=unknown))
    assert ("violations" in accepted) == (outcome == "flagged")


def test_thrad_params_are_checked_alike() -> None:
    body = {"event_name": "Purchase_Completed", "params": {"amount": "9.99", "currency": "GBP"}}
    with pytest.raises(InvalidRequest) as caught:
        validate_event(orjson.dumps(body), schemas=check())
    assert [(e["index"], e["field"]) for e in caught.value.errors or []] == [
        (None, "params.currency")
    ]
    event = validate_event(orjson.dumps(body), schemas=check("warn"))
    assert [v["field"] for v in event["violations"]] == ["params.currency"]


def write(tmp_path: Path, document: Any, name: str = "schema.json") -> str:
    path = tmp_path / name
    path.write_bytes(document if isinstance(document, bytes) else orjson.dumps(document))
    return str(path)


def test_schemas_set_list_delete(
    inlet: Callable[..., Result], partner: NewPartner, tmp_path: Path
) -> None:
    file = write(tmp_path, PURCHASE)
    out = inlet("schemas", "set", "--partner", "acme", "Purchase_Completed", file).stdout
    assert "'purchase_completed'" in out and "(warn)" in out
    inlet("schemas", "set", "--partner", "acme", "signup", file, "--mode", "enforce")
    [first, second] = [
        orjson.loads(line)
        for line in inlet("schemas", "list", "--partner", "acme", "--json").stdout.splitlines()
    ]
    assert (first["event_name"], first["mode"]) == ("purchase_completed", "warn")
    assert (second["event_name"], second["mode"]) == ("signup", "enforce")
    assert first["schema"] == PURCHASE
    # Set again: replaced, not added.
    inlet("schemas", "set", "--partner", "acme", "PURCHASE_COMPLETED", file, "--mode", "enforce")
    listed = inlet("schemas", "list", "--partner", "acme").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [
        ["purchase_completed", "enforce"],
        ["signup", "enforce"],
    ]
    inlet("schemas", "delete", "--partner", "acme", "signup")
    assert len(inlet("schemas", "list", "--partner", "acme").stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (("x",), b"{not json", "the schema file is not JSON"),
        (("x",), b'{"type": "integer", "maximum": "ten"}', '"ten" is not of type "number"'),
        (("x",), b'"just a string"', "must be a JSON object"),
        (("x", "--mode", "block"), b"{}", "--mode must be one of warn, enforce"),
        (("  ",), b"{}", "an event name must not be empty"),
    ],
)
def test_a_bad_schema_or_mode_is_refused_and_nothing_is_stored(
    inlet: Callable[..., Result],
    partner: NewPartner,
    tmp_path: Path,
    args: tuple[str, ...],
    content: bytes,
    message: str,
) -> None:
    file = write(tmp_path, content)
    name, *rest = args
    result = inlet("schemas", "set", "--partner", "acme", name, file, *rest, expect=1)
    assert message in result.output and "Traceback" not in result.output
    assert inlet("schemas", "list", "--partner", "acme", "--json").stdout == ""


def test_unknown_partner_and_missing_schema_are_named(
    inlet: Callable[..., Result], partner: NewPartner, tmp_path: Path
) -> None:
    file = write(tmp_path, PURCHASE)
    for args in (
        ("set", "--partner", "nobody", "x", file),
        ("list", "--partner", "nobody"),
        ("delete", "--partner", "nobody", "x"),
    ):
        assert "no partner named 'nobody'" in inlet("schemas", *args, expect=1).output
    result = inlet("schemas", "delete", "--partner", "acme", "x", expect=1)
    assert "has no schema for 'x'" in result.output


def test_the_store_sees_a_change_once_its_cache_expires(
    engine: Engine, partner: NewPartner
) -> None:
    cached, fresh = SchemaStore(engine, ttl=3600), SchemaStore(engine, ttl=0)
    assert cached.get(partner.id) == {} == fresh.get(partner.id)
    set_schema(engine, "acme", "purchase_completed", orjson.dumps(PURCHASE), "enforce")
    assert set(fresh.get(partner.id)) == {"purchase_completed"}
    assert cached.get(partner.id) == {}  # within the TTL: the cached answer
    delete_schema(engine, "acme", "purchase_completed")
    assert fresh.get(partner.id) == {}
    with pytest.raises(PartnerError):
        delete_schema(engine, "acme", "purchase_completed")


def test_over_http_enforce_refuses_and_warn_stores_the_violations(
    settings: Settings,
    engine: Engine,
    partner: NewPartner,
    auth: dict[str, str],
    redis: Redis,
    drain: Callable[[], None],
    inlet: Callable[..., Result],
) -> None:
    set_schema(engine, "acme", "purchase_completed", orjson.dumps(PURCHASE), "enforce")
    with TestClient(create_app(settings)) as client:
        refused = client.post(ONSIDE_URL, content=batch(onside_event(1), BAD), headers=auth)
    body = assert_error(refused, 400, "invalid_request")
    assert {(e["index"], e["field"]) for e in body["errors"]} == {
        (1, "payload.amount"),
        (1, "payload.items[1].sku"),
    }
    assert queued_jobs(redis) == 0

    set_schema(engine, "acme", "purchase_completed", orjson.dumps(PURCHASE), "warn")
    with TestClient(create_app(settings)) as client:
        sent = client.post(ONSIDE_URL, content=batch(onside_event(1), BAD), headers=auth)
    assert sent.status_code == 204
    drain()
    good, flagged = onside_rows(engine)
    assert good.violations is None
    assert {v["field"] for v in flagged.violations} == {"payload.amount", "payload.items[1].sku"}
    exported = [
        orjson.loads(line)
        for line in inlet("events", "export", "--partner", "acme").stdout.splitlines()
    ]
    assert [bool(e["violations"]) for e in exported] == [False, True]


def test_over_http_thrad_enforce_and_unknown_reject(
    settings: Settings,
    engine: Engine,
    partner: NewPartner,
    redis: Redis,
    drain: Callable[[], None],
) -> None:
    key = create_api_key(engine, settings.secret_key, "acme", "k").api_key
    bearer = {"Authorization": f"Bearer {key}"}
    set_schema(engine, "acme", "purchase_completed", orjson.dumps(PURCHASE), "enforce")
    set_policy(engine, "acme", {"unknown_events": "reject"})
    good = {"event_name": "purchase_completed", "params": {"amount": "1.00", "currency": "EUR"}}
    with TestClient(create_app(settings)) as client:
        bad = client.post(THRAD_URL, json={**good, "params": {"amount": 1}}, headers=bearer)
        unknown = client.post(THRAD_URL, json={"event_name": "page_view"}, headers=bearer)
        accepted = client.post(THRAD_URL, json=good, headers=bearer)
    assert {e["field"] for e in assert_error(bad, 400, "invalid_request")["errors"]} == {
        "params.amount",
        "params.currency",
    }
    assert assert_error(unknown, 400, "invalid_request")["errors"][0]["field"] == "event_name"
    assert accepted.status_code == 204
    assert queued_jobs(redis) == 1
    drain()
    [row] = thrad_rows(engine)
    assert row.violations is None and row.params["currency"] == "EUR"


def test_a_schema_with_internal_refs_checks_a_whole_batch_alike() -> None:
    """A batch's payloads of one name go through one call, with the schema embedded
    in an array wrapper: its own "#/..." references must still resolve against it."""
    document = {
        "$defs": {"money": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"}},
        "properties": {"amount": {"$ref": "#/$defs/money"}},
    }
    check_schema(document)
    schemas = SchemaCheck({"purchase_completed": EventSchema.of("enforce", document)}, "accept")
    good = [onside_event(n, payload={"amount": f"{n}.00"}) for n in range(5)]
    assert len(validate_batch(batch(*good), 1000, schemas=schemas)) == 5
    bad = [*good, onside_event(9, payload={"amount": "9"})]
    with pytest.raises(InvalidRequest) as caught:
        validate_batch(batch(*bad), 1000, schemas=schemas)
    assert [(e["index"], e["field"]) for e in caught.value.errors or []] == [(5, "payload.amount")]
