"""``find_events`` and ``inlet events find``: stored, queued, failed, refused, not found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from click.testing import Result
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, PartnerError, create_partner
from app.ops.find import find_events
from app.ops.refusals import MAX_EVENTS
from app.queue import make_queue
from app.settings import Settings
from tests.api import JSON
from tests.events import ONSIDE_URL, THRAD_URL, onside_event
from tests.queued import enqueue

STORED, QUEUED, FAILED, REFUSED, UNKNOWN = (
    f"550e8400-e29b-41d4-a716-{n:012d}" for n in (1, 2, 3, 4, 5)
)


@pytest.fixture
def five_places(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    failed_job: Callable[..., str],
) -> dict[str, str]:
    """One event in each place; returns the job ids."""

    def post(event: dict[str, Any]) -> int:
        body = orjson.dumps({"events": [event]})
        return client.post(ONSIDE_URL, content=body, headers={**auth, **JSON}).status_code

    assert post(onside_event(event_id=STORED)) == 204
    drain()
    failed = failed_job([onside_event(event_id=FAILED)])
    queued = enqueue(settings, redis, partner, [onside_event(event_id=QUEUED)])
    assert post(onside_event(event_id=REFUSED, event_datetime="yesterday")) == 400
    return {"failed": failed, "queued": queued}


def find(settings: Settings, redis: Redis, engine: Engine, **query: Any) -> list[Any]:
    return find_events(engine, make_queue(settings, redis), "acme", **query)


def test_each_place_is_found(
    five_places: dict[str, str], settings: Settings, redis: Redis, engine: Engine
) -> None:
    [stored] = find(settings, redis, engine, event_id=STORED)
    assert (stored.where, stored.source) == ("stored", "onside")
    assert stored.row["event_id"] == STORED and stored.job_id
    [queued] = find(settings, redis, engine, event_id=QUEUED.upper())  # UUIDs in any case
    assert (queued.where, queued.job_id, queued.state, queued.position) == (
        "queued", five_places["queued"], "queued", 0,
    )  # fmt: skip
    assert queued.age_seconds is not None and queued.age_seconds >= 0
    [failed] = find(settings, redis, engine, event_id=FAILED)
    assert (failed.where, failed.job_id) == ("failed", five_places["failed"])
    assert "OperationalError" in (failed.error or "")
    [refused] = find(settings, redis, engine, event_id=REFUSED)
    assert refused.where == "refused"
    assert (refused.refusal["status"], refused.refusal["code"]) == (400, "invalid_request")
    assert [e["field"] for e in refused.refusal["errors"]] == ["event_datetime"]
    [unknown] = find(settings, redis, engine, event_id=UNKNOWN)
    assert unknown.to_json()["where"] == "not_found"
    # By installation id: every Onside event of it, wherever it is (not the
    # refused one: the log keeps event ids only).
    found = find(settings, redis, engine, installation_id=onside_event()["installation_id"])
    assert sorted(f.where for f in found) == ["failed", "queued", "stored"]


def test_thrad_events_are_found_by_tag_and_event_id_or_by_tag_and_time(
    client: TestClient,
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
    drain: Callable[..., None],
) -> None:
    key = create_api_key(engine, settings.secret_key, partner.name, "backend")
    bearer = {"Authorization": f"Bearer {key.api_key}"}
    for body in (
        {"tag_id": "t1", "event_id": "e1", "event_name": "a"},
        {"tag_id": "t1", "event_name": "no_id"},
        {"tag_id": "t2", "event_id": "e1", "event_name": "a"},
    ):
        assert client.post(THRAD_URL, content=orjson.dumps(body), headers=bearer).status_code == 204
    drain()
    refused = b'{"tag_id": "t1", "event_id": "e2", "event_name": 1}'
    assert client.post(THRAD_URL, content=refused, headers=bearer).status_code == 400
    [one] = find(settings, redis, engine, event_id="e1", tag_id="t1")
    assert (one.where, one.source, one.tag_id, one.row["event_name"]) == (
        "stored",
        "thrad",
        "t1",
        "a",
    )
    by_tag = find(settings, redis, engine, tag_id="t1", since=one.received_at)
    assert sorted((f.where, f.event_id or "") for f in by_tag) == [
        ("refused", "e2"), ("stored", ""), ("stored", "e1"),
    ]  # fmt: skip
    assert find(settings, redis, engine, event_id="e1")[1].tag_id == "t2"


def test_bad_queries_are_refused(settings: Settings, redis: Redis, engine: Engine) -> None:
    with pytest.raises(PartnerError):
        find(settings, redis, engine, event_id=STORED)  # no partner "acme" yet
    create_partner(engine, settings.secret_key, "acme")
    with pytest.raises(ValueError):
        find(settings, redis, engine)
    with pytest.raises(ValueError):
        find(settings, redis, engine, installation_id=STORED, tag_id="t")


def test_cli_answers_in_both_formats(
    five_places: dict[str, str], inlet: Callable[..., Result]
) -> None:
    for event_id, verdict in [
        (STORED, "STORED"),
        (QUEUED, "QUEUED"),
        (FAILED, "FAILED"),
        (REFUSED, "REFUSED"),
        (UNKNOWN, "NOT_FOUND"),
    ]:
        text = inlet("events", "find", "--partner", "acme", "--event-id", event_id).stdout
        assert text.startswith(f"{verdict}  "), text
        as_json = inlet("events", "find", "--partner", "acme", "--event-id", event_id, "--json")
        assert orjson.loads(as_json.stdout)["where"] == verdict.lower()
    unknown = inlet("events", "find", "--partner", "acme", "--event-id", UNKNOWN).stdout
    assert "never received" not in unknown
    assert "in no stored row, queued job, failed job or kept refusal of acme" in unknown
    assert "`inlet refusals list --partner acme`" in unknown
    queued = inlet("events", "find", "--partner", "acme", "--event-id", QUEUED).stdout
    assert f"job {five_places['queued']}: waiting in the queue at position 0" in queued
    refused = inlet("events", "find", "--partner", "acme", "--event-id", REFUSED).stdout
    assert "400 invalid_request" in refused and "index 0, event_datetime" in refused
    failed = inlet("events", "find", "--partner", "acme", "--event-id", FAILED).stdout
    assert f"inlet failed show {five_places['failed']}" in failed
    missing = inlet("events", "find", "--partner", "acme", expect=2)
    assert "give --event-id, --installation-id or --tag-id" in missing.stderr
    nobody = inlet("events", "find", "--partner", "nobody", "--event-id", STORED, expect=1)
    assert "nobody" in nobody.stderr


def test_an_event_past_the_refusal_logs_id_cap_is_not_said_never_received(
    client: TestClient,
    auth: dict[str, str],
    partner: NewPartner,
    inlet: Callable[..., Result],
) -> None:
    """A 1,001-event batch gets 413; the log keeps the first 1,000 ids, and the
    NOT_FOUND of the 1,001st points at the refusal, with the cap."""
    assert MAX_EVENTS == 1000 and partner.name == "acme"
    batch = [onside_event(n) for n in range(1, MAX_EVENTS + 2)]
    body = orjson.dumps({"events": batch})
    assert client.post(ONSIDE_URL, content=body, headers={**auth, **JSON}).status_code == 413
    last_kept, past_cap = batch[-2]["event_id"], batch[-1]["event_id"]
    kept = inlet("events", "find", "--partner", "acme", "--event-id", last_kept).stdout
    assert kept.startswith("REFUSED  ") and "413 payload_too_large" in kept, kept
    text = inlet("events", "find", "--partner", "acme", "--event-id", past_cap).stdout
    assert text.startswith("NOT_FOUND  "), text
    assert "never received" not in text
    assert "only the first 1,000 of a refused batch" in text
    assert "`inlet refusals list --partner acme`" in text
