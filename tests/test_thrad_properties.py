"""Properties: any JSON object is either refused with a 400 naming known fields, or
accepted, and then it can be stored on both databases (no event lost after a 204)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.db import api_keys, make_engine, partners
from app.errors import InvalidRequest
from app.thrad.validate import server_fields, validate_event
from tests.thrad_strategies import FIELDS, event_bodies
from worker.thrad import insert_thrad_events

RECEIVED = datetime(2026, 5, 26, 12, 0, tzinfo=UTC)


def accept(body: dict[str, Any]) -> dict[str, Any] | None:
    """What the endpoint would queue, as the worker reads it back; None if refused."""
    try:
        event = validate_event(orjson.dumps(body))
    except InvalidRequest as exc:
        assert exc.errors and {e["field"] for e in exc.errors} <= set(FIELDS)
        return None
    queued = server_fields(
        event,
        headers={},
        ip_address="81.2.69.160",
        partner_id=1,
        api_key_id=1,
        key_label="k",
        received_at=RECEIVED,
    )
    return orjson.loads(orjson.dumps(queued))  # as RQ's JSON serializer


@given(event_bodies())
def test_every_object_is_refused_by_field_or_accepted(body: dict[str, Any]) -> None:
    queued = accept(body)
    if queued is not None:
        assert queued["channel"] == "server" and isinstance(queued["tag_id"], str)
        assert queued["params"]["integration"] == "partner_s2s"


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_every_accepted_event_can_be_stored(request: pytest.FixtureRequest, database: str) -> None:
    engine = make_engine(request.getfixturevalue(f"{database}_url"))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(event_bodies(), min_size=1, max_size=5))
    def check(bodies: list[dict[str, Any]]) -> None:
        events = [e for e in map(accept, bodies) if e is not None]
        with engine.connect() as conn, conn.begin() as transaction:
            partner_id = conn.execute(
                partners.insert()
                .values(name="prop", username="prop", password_hash=b"x")
                .returning(partners.c.id)
            ).scalar_one()
            key_id = conn.execute(
                api_keys.insert()
                .values(partner_id=partner_id, key_id="ik_prop", label="k", key_hash=b"x")
                .returning(api_keys.c.id)
            ).scalar_one()
            events = [{**e, "api_key_id": key_id} for e in events]
            inserted = insert_thrad_events(
                conn,
                partner_id=partner_id,
                received_at=RECEIVED,
                events=events,
                job_id=None,
                geoip_database=None,
            )
            keys = {(e["tag_id"], e["event_id"]) for e in events if e.get("event_id") is not None}
            without_id = sum(1 for e in events if e.get("event_id") is None)
            assert inserted == len(keys) + without_id
            transaction.rollback()

    try:
        check()
    finally:
        engine.dispose()
