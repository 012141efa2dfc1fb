"""Clock guards (app/quality/clock.py): events dated too far ahead or too long ago
are accepted, clamped with the original kept, or refused, per partner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from click.testing import Result
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner, set_policy
from app.errors import InvalidRequest
from app.main import create_app
from app.onside.validate import _accept_fast, validate_batch, validate_events
from app.policy import PartnerPolicy
from app.quality.clock import ClockGuard
from app.thrad.validate import validate_event
from tests.api import assert_error
from tests.events import ONSIDE_URL, THRAD_URL, onside_event
from tests.queued import onside_rows, queued_jobs, thrad_rows

RECEIVED = datetime(2026, 5, 26, 12, 0, tzinfo=UTC)
FUTURE = "2026-05-28T12:00:00Z"  # two days ahead: past the default day
SOON = "2026-05-27T11:00:00Z"  # 23 hours ahead: within it
OLD = "2026-01-01T00:00:00Z"


def guard(**policy: Any) -> ClockGuard:
    return ClockGuard.for_request(PartnerPolicy(**policy), RECEIVED)


def batch(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"events": list(events)})


def test_a_future_event_is_clamped_by_default_and_keeps_its_time() -> None:
    events = [onside_event(1, event_datetime=FUTURE), onside_event(2, event_datetime=SOON)]
    clamped, kept = validate_batch(batch(*events), 1000, clock=guard())
    assert clamped["event_datetime"] == RECEIVED.isoformat()
    assert clamped["original_event_datetime"] == "2026-05-28T12:00:00+00:00"
    assert kept["event_datetime"] == "2026-05-27T11:00:00+00:00"
    assert "original_event_datetime" not in kept


@pytest.mark.parametrize("field_policy", ["future", "too_old"])
def test_accept_keeps_the_time_as_sent(field_policy: str) -> None:
    clock = guard(**{field_policy: "accept"}, max_age_days=30)
    [event] = validate_batch(batch(onside_event(1, event_datetime=FUTURE)), 1000, clock=clock)
    [old] = validate_batch(batch(onside_event(2, event_datetime=OLD)), 1000, clock=clock)
    kept = event if field_policy == "future" else old
    assert "original_event_datetime" not in kept
    assert kept["event_datetime"] in ("2026-05-28T12:00:00+00:00", "2026-01-01T00:00:00+00:00")


def test_reject_names_each_event_by_index() -> None:
    events = [
        onside_event(1),
        onside_event(2, event_datetime=FUTURE),
        onside_event(3, event_datetime=OLD),
    ]
    clock = guard(future="reject", too_old="reject", max_age_days=30)
    with pytest.raises(InvalidRequest) as caught:
        validate_batch(batch(*events), 1000, clock=clock)
    errors = caught.value.errors
    assert errors is not None
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "event_datetime"),
        (2, "event_datetime"),
    ]
    assert "172800 s after" in errors[0]["message"]
    assert "more than 30 days before" in errors[1]["message"]


def test_no_age_limit_unless_one_is_set() -> None:
    ancient = onside_event(1, event_datetime="1999-01-01T00:00:00Z")
    [event] = validate_batch(batch(ancient), 1000, clock=guard(too_old="reject"))
    assert event["event_datetime"] == "1999-01-01T00:00:00+00:00"


def test_the_fast_and_slow_paths_clamp_alike_and_leave_the_sent_event_alone() -> None:
    """The fast path may hand a batch to the slow path after clamping: the sent
    events must still hold their own times then."""
    raw = [
        onside_event(1, event_datetime=FUTURE),
        onside_event(2, event_datetime="2026-05-28T14:00:00+02:00"),
        onside_event(3, event_datetime=OLD),
    ]
    clock = guard(max_age_days=30)
    sent = orjson.loads(orjson.dumps(raw))
    fast = _accept_fast(raw, clock)
    assert raw == sent
    assert fast == validate_events(raw, clock=clock)
    assert fast is not None
    assert [e.get("original_event_datetime") for e in fast] == [
        "2026-05-28T12:00:00+00:00",
        "2026-05-28T12:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
    ]


def test_thrad_timestamps_are_guarded_alike() -> None:
    ahead = RECEIVED.timestamp() + 2 * 86400
    event = validate_event(orjson.dumps({"event_name": "x", "timestamp": ahead}), guard())
    assert event["timestamp"] == RECEIVED.timestamp()
    assert event["original_timestamp"] == ahead
    with pytest.raises(InvalidRequest) as caught:
        validate_event(
            orjson.dumps({"event_name": "x", "timestamp": 1.5}),
            guard(too_old="reject", max_age_days=1),
        )
    assert caught.value.errors == [
        {"index": None, "field": "timestamp", "message": caught.value.errors[0]["message"]}
    ]
    kept = validate_event(orjson.dumps({"event_name": "x", "timestamp": 1.5}), guard())
    assert kept["timestamp"] == 1.5 and "original_timestamp" not in kept


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_a_clamped_onside_event_lands_and_exports_with_its_original_time(
    client: TestClient,
    auth: dict[str, str],
    drain: Callable[[], None],
    engine: Engine,
    inlet: Callable[..., Result],
) -> None:
    sent = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    before = datetime.now(UTC)
    body = {"events": [onside_event(1, event_datetime=sent.isoformat())]}
    assert client.post(ONSIDE_URL, json=body, headers=auth).status_code == 204
    drain()
    [row] = onside_rows(engine)
    assert row.original_event_datetime.replace(tzinfo=UTC) == sent
    assert before <= row.event_datetime.replace(tzinfo=UTC) <= datetime.now(UTC)
    [line] = inlet("events", "export", "--partner", "acme").stdout.splitlines()
    exported = orjson.loads(line)
    assert exported["original_event_datetime"].startswith(sent.strftime("%Y-%m-%dT%H:%M:%S"))
    assert exported["violations"] is None


def test_a_partner_that_rejects_gets_a_400_and_nothing_is_queued(
    client: TestClient,
    auth: dict[str, str],
    partner: NewPartner,
    engine: Engine,
    redis: Any,
) -> None:
    set_policy(engine, "acme", {"future": "reject"})
    body = {"events": [onside_event(1), onside_event(2, event_datetime=_iso(timedelta(days=2)))]}
    # A new app: its credential cache has not seen the partner yet.
    response = client.post(ONSIDE_URL, json=body, headers=auth)
    error = assert_error(response, 400, "invalid_request")
    assert [(e["index"], e["field"]) for e in error["errors"]] == [(1, "event_datetime")]
    assert queued_jobs(redis) == 0


def test_a_clamped_thrad_event_lands_with_its_original_timestamp(
    client: TestClient,
    partner: NewPartner,
    engine: Engine,
    settings: Any,
    drain: Callable[[], None],
) -> None:
    key = create_api_key(engine, settings.secret_key, "acme", "k").api_key
    bearer = {"Authorization": f"Bearer {key}"}
    ahead = datetime.now(UTC).timestamp() + 5 * 86400
    before = datetime.now(UTC).timestamp()
    response = client.post(THRAD_URL, json={"event_name": "x", "timestamp": ahead}, headers=bearer)
    assert response.status_code == 204
    drain()
    [row] = thrad_rows(engine)
    assert row.original_timestamp == ahead
    assert before <= row.event_timestamp <= datetime.now(UTC).timestamp()

    set_policy(engine, "acme", {"future": "reject"})
    # Not the cached partner: a fresh client is a fresh credential cache.
    with TestClient(create_app(settings)) as fresh:
        refused = fresh.post(
            THRAD_URL, json={"event_name": "y", "timestamp": ahead}, headers=bearer
        )
    error = assert_error(refused, 400, "invalid_request")
    assert error["errors"][0]["field"] == "timestamp"


def test_limits_beyond_what_a_datetime_holds_are_no_limits() -> None:
    clock = guard(future="reject", too_old="reject", max_future_seconds=10**15, max_age_days=10**9)
    body = batch(
        onside_event(1, event_datetime="9999-12-31T23:59:59Z"),
        onside_event(2, event_datetime="0001-01-01T00:00:00Z"),
    )
    assert len(validate_batch(body, 1000, clock=clock)) == 2
    event = validate_event(orjson.dumps({"event_name": "x", "timestamp": 1e300}), clock)
    assert event["timestamp"] == 1e300


def test_export_then_replay_keeps_the_original_time(
    client: TestClient,
    auth: dict[str, str],
    drain: Callable[[], None],
    engine: Engine,
    settings: Any,
    tmp_path: Any,
    inlet: Callable[..., Result],
) -> None:
    sent = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    body = {"events": [onside_event(1, event_datetime=sent.isoformat())]}
    assert client.post(ONSIDE_URL, json=body, headers=auth).status_code == 204
    drain()
    export = tmp_path / "export.jsonl"
    export.write_text(inlet("events", "export", "--partner", "acme").stdout)
    create_partner(engine, settings.secret_key, "copy")
    inlet("replay", "--partner", "copy", str(export))
    drain()
    original, copy = onside_rows(engine)
    assert copy.original_event_datetime == original.original_event_datetime
    assert copy.event_datetime == original.event_datetime
