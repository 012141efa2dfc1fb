"""The refusal log: every 4xx of an ingest endpoint is kept per partner, bounded,
without credentials or payloads; 401s apart, by client address."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.main import create_app
from app.ops import refusals, stats
from app.quality.schemas import set_schema
from app.settings import Settings
from tests.api import JSON, assert_error, basic_auth
from tests.events import ONSIDE_URL, THRAD_URL, onside_event

# The log lives in Redis: one database is enough.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SECRET_VALUE = "very-private-payload-4471"


def every_value(redis: Redis) -> bytes:
    """Everything the refusal log holds in Redis, as one byte string."""
    out = b""
    for key in redis.scan_iter(f"{refusals.PREFIX}*"):
        kind = redis.type(key)
        if kind == b"stream":
            for entry_id, fields in redis.xrange(key):
                out += entry_id + b"".join(k + v for k, v in fields.items())
        elif kind == b"hash":
            out += b"".join(k + v for k, v in redis.hgetall(key).items())
    return out


@SQLITE
def test_a_refused_batch_is_kept_with_its_event_ids_and_errors(
    client: TestClient, auth: dict[str, str], partner: NewPartner, redis: Redis
) -> None:
    events = [
        onside_event(0, payload={"card": SECRET_VALUE}),
        onside_event(1),
        onside_event(2, event_id="not-a-uuid"),
    ]
    response = client.post(
        ONSIDE_URL, content=orjson.dumps({"events": events}), headers={**auth, **JSON}
    )
    assert_error(response, 400, "invalid_request")
    [refusal] = refusals.list_refusals(redis, partner.name)
    assert refusal.request_id == response.headers["x-request-id"]
    assert (refusal.status, refusal.code, refusal.endpoint) == (400, "invalid_request", "onside")
    assert refusal.errors == response.json()["errors"]
    assert [e.event_id for e in refusal.events] == [e["event_id"] for e in events]
    assert refusal.errors_for(2) and not refusal.errors_for(0)
    assert refusal.client is None  # Starlette's test client's peer, "testclient", is no address
    # The excerpt shows the shape, never a value.
    assert refusal.excerpt.startswith('{"events":[{"event_name":"*","payload":{"card":"*"}')
    stored = every_value(redis)
    assert SECRET_VALUE.encode() not in stored
    assert partner.password.encode() not in stored
    assert b"purchase_completed" not in stored  # a value, even a harmless one
    assert refusals.counts_by_code(redis) == {partner.name: {"invalid_request": 1}}


# A schema of every common keyword, each of which the payload below breaks.
STRICT = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "maxLength": 5, "pattern": "^[0-9]+$", "format": "email"},
        "card": {"enum": ["x"]},
        "pin": {"type": "integer", "maximum": 5, "multipleOf": 7},
        "tags": {"type": "array", "maxItems": 1, "uniqueItems": True},
        "nested": {"type": "object", "maxProperties": 0, "additionalProperties": False},
        "other": {"const": "y"},
        "kind": {"type": "integer"},
    },
}
SECRETS = {
    "email": SECRET_VALUE + "@example.com",
    "card": "4111 1111 1111 1111",
    "pin": 4111111111,
    "tags": [SECRET_VALUE, SECRET_VALUE],
    "nested": {"a": SECRET_VALUE},
    "other": SECRET_VALUE,
    "kind": SECRET_VALUE,
}


@SQLITE
@pytest.mark.parametrize("dry_run", [False, True])
def test_schema_violations_name_the_field_and_the_limit_never_the_value(
    settings: Settings,
    engine: Engine,
    auth: dict[str, str],
    partner: NewPartner,
    redis: Redis,
    dry_run: bool,
) -> None:
    """The validator's own messages quote the value ('"jane@x.io" is longer than 5
    characters'): not in a 400, nor the refusal log, nor a dry run's warnings."""
    mode = "warn" if dry_run else "enforce"
    set_schema(engine, partner.name, "purchase_completed", orjson.dumps(STRICT), mode)
    event = onside_event(0, payload=SECRETS)
    url = ONSIDE_URL + ("?dry_run=true" if dry_run else "")
    with TestClient(create_app(settings)) as client:
        response = client.post(url, content=orjson.dumps({"events": [event]}), headers=auth)
    found = response.json()["warnings" if dry_run else "errors"]
    assert response.status_code == (200 if dry_run else 400), response.text
    assert len(found) >= 10, "few violations: proves little"
    assert {v["field"].split(".")[1].split("[")[0] for v in found} == set(SECRETS)
    assert "is longer than 5 characters" in {v["message"] for v in found}
    for secret in (SECRET_VALUE, "4111", "example.com"):
        assert secret not in response.text
        assert secret.encode() not in every_value(redis)


@SQLITE
def test_a_refused_thrad_event_keeps_its_tag_and_event_id(
    client: TestClient, engine: Engine, settings: Settings, partner: NewPartner, redis: Redis
) -> None:
    key = create_api_key(engine, settings.secret_key, partner.name, "backend")
    body = {"tag_id": "tag_1", "event_id": "evt_9", "event_name": 42, "user_id": SECRET_VALUE}
    response = client.post(
        THRAD_URL, content=orjson.dumps(body), headers={"Authorization": f"Bearer {key.api_key}"}
    )
    assert_error(response, 400, "invalid_request")
    [refusal] = refusals.list_refusals(redis, partner.name)
    assert (refusal.endpoint, refusal.code) == ("thrad", "invalid_request")
    assert [(e.tag_id, e.event_id) for e in refusal.events] == [("tag_1", "evt_9")]
    assert refusal.errors and refusal.errors[0]["field"] == "event_name"
    stored = every_value(redis)
    assert SECRET_VALUE.encode() not in stored and key.api_key.encode() not in stored


@SQLITE
def test_unparsable_and_oversized_bodies_are_kept_without_event_ids(
    settings: Settings, auth: dict[str, str], partner: NewPartner, redis: Redis
) -> None:
    small = settings.replace(max_body_bytes=2048)
    with TestClient(create_app(small)) as client:
        assert_error(
            client.post(ONSIDE_URL, content=b'{"events": [', headers={**auth, **JSON}),
            400,
            "invalid_request",
        )
        assert_error(
            client.post(ONSIDE_URL, content=b"[" * 3000, headers={**auth, **JSON}),
            413,
            "payload_too_large",
        )
    too_large, not_json = refusals.list_refusals(redis, partner.name)
    assert (too_large.status, not_json.status) == (413, 400)
    assert too_large.events == [] and not_json.events == []
    assert not_json.excerpt == '{"events": ['
    assert too_large.excerpt == ""  # the body was never read


@SQLITE
def test_a_body_over_the_container_cap_is_never_parsed_for_its_ids(
    settings: Settings, auth: dict[str, str], partner: NewPartner, redis: Redis
) -> None:
    """Parsing it is the cost the cap exists to avoid: the entry keeps no ids."""
    capped = settings.replace(max_json_containers=100)
    body = orjson.dumps({"events": [onside_event(0, payload={"a": [[]] * 200})]})
    with TestClient(create_app(capped)) as client:
        response = client.post(ONSIDE_URL, content=body, headers={**auth, **JSON})
    assert_error(response, 413, "too_many_json_containers")
    [refusal] = refusals.list_refusals(redis, partner.name)
    assert refusal.code == "too_many_json_containers"
    assert refusal.events == []  # valid JSON with an event id, yet not parsed
    assert refusal.excerpt.startswith('{"events":[{')


@SQLITE
def test_401s_are_kept_apart_by_client_address_without_any_body(
    settings: Settings, partner: NewPartner, redis: Redis
) -> None:
    wrong = {**basic_auth(partner), **JSON}
    wrong["Authorization"] = "Basic " + "QUJDOmRlZg=="  # ABC:def
    with TestClient(create_app(settings), client=("203.0.113.7", 5000)) as client:
        body = orjson.dumps({"events": [onside_event(0, payload={"x": SECRET_VALUE})]})
        assert_error(client.post(ONSIDE_URL, content=body, headers=wrong), 401, "unauthorized")
        assert_error(client.post(THRAD_URL, content=body), 401, "unauthorized")
    assert refusals.list_refusals(redis, partner.name) == []
    thrad, onside = refusals.list_unauthenticated(redis, client="203.0.113.7")
    assert (onside.endpoint, thrad.endpoint) == ("onside", "thrad")
    assert onside.partner is None and onside.events == [] and onside.excerpt == ""
    assert thrad.message == "Missing bearer token"
    assert refusals.list_unauthenticated(redis, client="198.51.100.1") == []
    stored = every_value(redis)
    assert SECRET_VALUE.encode() not in stored and b"QUJDOmRlZg" not in stored
    assert refusals.counts_by_code(redis) == {refusals.UNAUTHENTICATED: {"unauthorized": 2}}


@SQLITE
def test_refusals_arriving_together_are_each_kept_and_counted(
    settings: Settings, partner: NewPartner, redis: Redis
) -> None:
    """Refusals of one moment share a write (app/observe.py): none is lost or
    counted twice, and each keeps its own request id, partner and events."""
    good = {**basic_auth(partner), **JSON}
    wrong = {**good, "Authorization": "Basic " + "QUJDOmRlZg=="}
    sent: dict[str, str] = {}  # request id -> the event id its batch named
    with TestClient(create_app(settings)) as client:

        def refused(n: int) -> tuple[int, str, str]:
            event = onside_event(n, event_id=f"not-a-uuid-{n}")
            response = client.post(
                ONSIDE_URL,
                content=orjson.dumps({"events": [event]}),
                headers=wrong if n % 4 == 0 else good,
            )
            return response.status_code, response.headers["x-request-id"], event["event_id"]

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(refused, range(40)))
    assert sorted({status for status, _, _ in answers}) == [400, 401]
    sent = {rid: event_id for status, rid, event_id in answers if status == 400}
    kept = refusals.list_refusals(redis, partner.name)
    assert {r.request_id: [e.event_id for e in r.events] for r in kept} == {
        rid: [event_id] for rid, event_id in sent.items()
    }
    assert len(refusals.list_unauthenticated(redis)) == 10
    assert refusals.counts_by_code(redis) == {
        partner.name: {"invalid_request": 30},
        refusals.UNAUTHENTICATED: {"unauthorized": 10},
    }
    hour = stats.last_hour(redis)
    assert hour[partner.name].rejected == {"invalid_request": 30}
    assert hour[stats.UNKNOWN_PARTNER].rejected == {"unauthorized": 10}


@SQLITE
def test_many_refusals_written_at_once_trim_and_count_once_a_stream(
    settings: Settings, redis: Redis
) -> None:
    fields = refusals.entry_for(
        request_id="r", endpoint="onside", status=400, code="invalid_request",
        message="m", errors=[], client="127.0.0.1",
    )  # fmt: skip
    entries = [("acme", fields)] * 3 + [("zenith", fields | {"code": "payload_too_large"})]
    pipe = redis.pipeline(transaction=False)
    refusals.add_many(pipe, settings, entries)
    # Four entries; a trim and a TTL for each of the two streams; one count
    # for each partner and code, and the counts' TTL.
    assert [args[0] for args, _ in pipe.command_stack] == (
        ["XADD"] * 4 + ["XTRIM", "EXPIRE"] * 2 + ["HINCRBY"] * 2 + ["EXPIRE"]
    )
    pipe.execute()
    assert redis.xlen(refusals.partner_key("acme")) == 3
    assert refusals.counts_by_code(redis) == {
        "acme": {"invalid_request": 3},
        "zenith": {"payload_too_large": 1},
    }


@SQLITE
def test_the_log_is_bounded_in_count_and_in_time(settings: Settings, redis: Redis) -> None:
    bounded = settings.replace(refusals_per_partner=100, refusals_days=1)
    fields = refusals.entry_for(
        request_id="r", endpoint="onside", status=400, code="invalid_request",
        message="m", errors=[], client="127.0.0.1",
    )  # fmt: skip
    pipe = redis.pipeline(transaction=False)
    refusals.add_many(pipe, bounded, [("acme", fields)] * 1000)
    pipe.execute()
    key = refusals.partner_key("acme")
    # "MAXLEN ~" trims whole nodes of 100 entries: never far over the bound.
    assert 100 <= redis.xlen(key) <= 200
    assert 0 < redis.ttl(key) <= 86400
    # A day later, what was written before is trimmed (all but the newest node's).
    pipe = redis.pipeline(transaction=False)
    refusals.add_many(pipe, bounded, [("acme", fields | {"request_id": "later"})])
    refusals.add_many(pipe, bounded, [("acme", fields)], now=time.time() + 86400 + 60)
    pipe.execute()
    assert redis.xlen(key) <= 101


@SQLITE
def test_a_refusal_is_still_answered_when_redis_is_gone(
    settings: Settings, partner: NewPartner
) -> None:
    """Nobody listens on the Redis port: the 401 stays a 401 (the entry is lost)."""
    gone = settings.replace(redis_url="redis://127.0.0.1:9/0", redis_timeout=0.5)
    with TestClient(create_app(gone)) as client:
        response = client.post(ONSIDE_URL, content=b"{}", headers={"Authorization": "Basic eDp5"})
    assert response.status_code in (401, 503), response.text


def test_redacted_excerpt_masks_every_value() -> None:
    body = b'{"events": [{"event_id": "abc", "n": 12.5, "ok": true, "x\\u0000": null}], \x01}'
    assert refusals.redacted_excerpt(body) == (
        '{"events": [{"event_id": "*", "n": #, "ok": true, "*": null}], ?}'
    )
    # Not JSON: one "?" for the run, so not even the values' lengths show.
    assert refusals.redacted_excerpt(b"token=s3cr3t&x=1") == "?"
    assert refusals.redacted_excerpt(b"password=nullvoid42&pin=1234") == "?"
    assert len(refusals.redacted_excerpt(b'{"a": "' + b"x" * 5000)) <= refusals.EXCERPT_CHARS


@pytest.mark.parametrize(
    ("body", "excerpt"),
    [
        # Data used as keys: an email, a card number, an id.
        (
            b'{"by_email": {"alice@example.com": 1, "4111111111111111": 2,'
            b' "ac9f3e10-5d2b-4c1e-9a7f-20261128aaaa": 3}}',
            '{"by_email": {"*": #, "*": #, "*": #}}',
        ),
        # A string before a colon that is not where a key goes.
        (b'{"email" "bob@x.io": 1}', '{"*" "*": #}'),
        (b'"secret": 1', '"*": #'),
        (b"[1, -2.5e3, null, true]", "[#, #, null, true]"),
    ],
)
def test_redacted_excerpt_keeps_no_value_even_where_a_key_could_be(
    body: bytes, excerpt: str
) -> None:
    assert refusals.redacted_excerpt(body) == excerpt


@SQLITE
def test_cli_lists_refusals_and_counts(
    client: TestClient, auth: dict[str, str], partner: NewPartner, inlet: object
) -> None:
    events = [onside_event(0, event_id="not-a-uuid")]
    client.post(ONSIDE_URL, content=orjson.dumps({"events": events}), headers={**auth, **JSON})
    client.post(THRAD_URL, content=b"{}")
    run = inlet  # the fixture: inlet(*args, expect=0)
    text = run("refusals", "list", "--partner", partner.name).stdout  # type: ignore[operator]
    header, row, error = text.splitlines()[:3]
    assert header.split("\t")[:3] == ["when", "status", "code"]
    assert row.split("\t")[1:3] == ["400", "invalid_request"]
    assert "index 0, event_id" in error
    lines = run("refusals", "list", "--partner", partner.name, "--json").stdout.splitlines()  # type: ignore[operator]
    assert orjson.loads(lines[0])["events"] == [{"index": 0, "event_id": "not-a-uuid"}]
    later = run("refusals", "list", "--partner", partner.name, "--since", "2999-01-01")  # type: ignore[operator]
    assert later.stdout == "" and "No refusals" in later.stderr
    unauth = run("refusals", "unauthenticated", "--json").stdout  # type: ignore[operator]
    assert orjson.loads(unauth)["code"] == "unauthorized"
    counted = orjson.loads(run("refusals", "counts", "--json").stdout)  # type: ignore[operator]
    assert counted == {
        partner.name: {"invalid_request": 1},
        refusals.UNAUTHENTICATED: {"unauthorized": 1},
    }
