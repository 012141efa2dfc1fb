"""Replay and export for recovery: same validation, same queue, safe to run twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.db import events as events_table
from app.db import thrad_event_keys, thrad_events
from app.main import create_app
from app.ops.replay import ONE_EVENT_PER_LINE
from app.settings import Settings
from tests.cli_runner import run_cli
from tests.events import onside_event
from tests.queued import enqueue, event_ids


def write_lines(path: Path, lines: list[bytes | dict]) -> Path:
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines
        )
    )
    return path


def replay_json(settings: Settings, path: Path, partner: str = "acme") -> dict:
    out = run_cli(settings, "replay", str(path), "--partner", partner, "--json").stdout
    return orjson.loads(out)


def test_replay_queues_valid_lines_and_rejects_the_rest_with_reasons(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    tmp_path: Path,
) -> None:
    path = write_lines(
        tmp_path / "dump.jsonl",
        [
            onside_event(1),
            onside_event(2, event_id="not-a-uuid"),
            b"{not json",
            b"",
            onside_event(3),
            onside_event(1),  # repeated in the file
            b"[1, 2]",
            onside_event(4, payload="text", event_datetime="yesterday"),
        ],
    )
    summary = replay_json(settings, path)
    assert summary["lines"] == 7
    assert (summary["accepted"], summary["duplicate"], summary["rejected"]) == (2, 1, 4)
    assert summary["reasons"] == {
        "event_id: must be a UUID version 4, e.g. 550e8400-e29b-41d4-a716-446655440000, "
        'not "not-a-uuid"': 1,
        "malformed JSON": 1,
        "must be a JSON object": 1,
        "payload: must be a JSON object, not a string; event_datetime: must be an ISO 8601 "
        'date and time, e.g. 2026-05-05T12:00:00Z, not "yesterday"': 1,
    }
    assert [e["line"] for e in summary["examples"]] == [2, 3, 7, 8]
    drain()
    assert event_ids(engine) == [onside_event(1)["event_id"], onside_event(3)["event_id"]]


def test_replay_twice_stores_nothing_twice(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    tmp_path: Path,
) -> None:
    path = write_lines(tmp_path / "dump.jsonl", [onside_event(n) for n in range(5)])
    first = replay_json(settings, path)
    second_before_drain = replay_json(settings, path)  # not stored yet: queued again
    drain()
    third = replay_json(settings, path)
    drain()
    assert (first["accepted"], first["duplicate"]) == (5, 0)
    assert second_before_drain["accepted"] == 5
    assert (third["accepted"], third["duplicate"]) == (0, 5)
    assert third["jobs"] == 0
    assert len(event_ids(engine)) == 5


def test_replay_splits_into_batches_of_the_endpoint_limit(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    tmp_path: Path,
) -> None:
    small = settings.replace(max_batch_events=2)
    path = write_lines(tmp_path / "dump.jsonl", [onside_event(n) for n in range(5)])
    summary = replay_json(small, path)
    assert (summary["accepted"], summary["jobs"]) == (5, 3)
    text = run_cli(small, "replay", str(path), "--partner", "acme").stdout
    assert "accepted:   5 (queued in 3 jobs)" in text  # not stored yet: queued again
    drain()
    assert len(event_ids(engine)) == 5


def test_export_then_replay_into_another_partner_round_trips(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    tmp_path: Path,
) -> None:
    sent = [onside_event(n, event_name=f" Sign_Up {n} ") for n in range(3)]
    write_lines(tmp_path / "in.jsonl", sent)
    replay_json(settings, tmp_path / "in.jsonl")
    drain()
    export = run_cli(settings, "events", "export", "--partner", "acme").stdout
    (tmp_path / "export.jsonl").write_text(export)
    create_partner(engine, settings.secret_key, "copy")
    summary = replay_json(settings, tmp_path / "export.jsonl", partner="copy")
    assert (summary["accepted"], summary["rejected"]) == (3, 0)
    drain()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                events_table.c.partner_id,
                events_table.c.sent_event_name,
                events_table.c.event_name,
                events_table.c.payload,
            ).order_by(events_table.c.partner_id, events_table.c.event_id)
        ).all()
    originals, copies = rows[:3], rows[3:]
    # The name as sent survives the round trip, not only the normalized one.
    assert [r[1:] for r in copies] == [r[1:] for r in originals]
    assert copies[0].sent_event_name == " Sign_Up 0 " and copies[0].event_name == "sign_up 0"


def test_replay_of_an_unknown_partner_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dump.jsonl", [onside_event(1)])
    result = run_cli(settings, "replay", str(path), "--partner", "nobody", expect=1)
    assert "no partner named 'nobody'" in result.stderr


def test_export_since_until_selects_by_receive_time(
    settings: Settings, partner: NewPartner, engine: Engine
) -> None:
    with engine.begin() as conn:
        for n, day in enumerate((4, 5, 6)):
            conn.execute(
                events_table.insert().values(
                    partner_id=partner.id,
                    event_id=onside_event(n)["event_id"],
                    event_name="x",
                    sent_event_name="x",
                    event_datetime=sa.func.now(),
                    installation_id=onside_event(n)["installation_id"],
                    payload={},
                    received_at=datetime(2026, 5, day, 12, tzinfo=UTC),
                )
            )

    def days(*args: str) -> list[str]:
        out = run_cli(settings, "events", "export", "--partner", "acme", *args).stdout
        return [orjson.loads(line)["received_at"][:10] for line in out.splitlines()]

    assert days() == ["2026-05-04", "2026-05-05", "2026-05-06"]
    assert days("--since", "2026-05-05") == ["2026-05-05", "2026-05-06"]
    assert days("--until", "2026-05-05T12:00:00Z") == ["2026-05-04"]
    assert days("--since", "2026-05-05", "--until", "2026-05-06") == ["2026-05-05"]
    bad = run_cli(settings, "events", "export", "--partner", "acme", "--since", "soon", expect=2)
    assert "--since" in bad.stderr


def test_an_exports_thrad_rows_are_replayed_once(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    tmp_path: Path,
) -> None:
    """Thrad rows of an export come back as they were (key fields, params, address),
    with and without event_id, and a second replay stores nothing twice."""
    key = create_api_key(engine, settings.secret_key, partner.name, "billing")
    with TestClient(create_app(settings), client=("203.0.113.9", 5000)) as client:
        for body in (
            {"tag_id": "t1", "event_id": "e1", "event_name": "a", "params": {"n": 1}},
            {"tag_id": "t1", "event_name": "b", "timestamp": 1748275200},
        ):
            sent = client.post(
                "/v1/api/collect",
                content=orjson.dumps(body),
                headers={"Authorization": f"Bearer {key.api_key}"},
            )
            assert sent.status_code == 204
    enqueue(settings, redis, partner, [onside_event(1)])
    drain()
    exported = run_cli(settings, "events", "export", "--partner", "acme").stdout
    before = sorted(
        (r["tag_id"], r.get("event_id") or "", r["event_name"], r["timestamp"], r["ip_address"],
         orjson.dumps(r["params"], option=orjson.OPT_SORT_KEYS))
        for r in map(orjson.loads, exported.splitlines()) if r["source"] == "thrad"
    )  # fmt: skip
    path = tmp_path / "export.jsonl"
    path.write_text(exported)
    assert replay_json(settings, path)["duplicate"] == 3  # all stored already
    with engine.begin() as conn:
        conn.execute(sa.delete(thrad_events))
        if engine.dialect.name == "postgresql":
            # The dedup keys remember every receipt within the window
            # (docs/storage.md): rows lost means their keys are gone too.
            conn.execute(sa.delete(thrad_event_keys))
    first = replay_json(settings, path)
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (2, 1, 0)
    drain()
    second = replay_json(settings, path)
    assert (second["accepted"], second["duplicate"]) == (0, 3)
    drain()
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(thrad_events)))
    after = sorted(
        (r.tag_id, r.event_id or "", r.event_name, r.event_timestamp, r.ip_address,
         orjson.dumps(r.params, option=orjson.OPT_SORT_KEYS))
        for r in rows
    )  # fmt: skip
    assert after == before and len(rows) == 2


def test_thrad_rows_need_an_api_key_of_the_partner(
    settings: Settings, redis: Redis, partner: NewPartner, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "thrad.jsonl",
        [{"source": "thrad", "event_name": "items_added", "event_id": "evt_42"}],
    )
    out = run_cli(settings, "replay", str(path), "--partner", "acme", expect=1)
    assert "no active API key" in out.stdout
    assert "every line (1) was rejected" in out.stderr


def test_a_whole_batch_on_one_line_gets_one_clear_error_and_exit_1(
    settings: Settings, redis: Redis, partner: NewPartner, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "bodies.jsonl",
        [{"events": [onside_event(1), onside_event(2)]}, b"{not json"],
    )
    out = run_cli(settings, "replay", str(path), "--partner", "acme", "--json", expect=1)
    summary = orjson.loads(out.stdout)
    assert summary["reasons"] == {ONE_EVENT_PER_LINE: 1, "malformed JSON": 1}
    assert "is required" not in out.stdout
    # One good line among bad ones: a partial replay, exit 0.
    mixed = write_lines(tmp_path / "mixed.jsonl", [onside_event(1), b"{not json"])
    assert replay_json(settings, mixed)["accepted"] == 1
