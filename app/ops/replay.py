"""Replay: re-ingest events from a JSON Lines file through the same validation and queue.

Each line is one event, in the Onside shape or as ``inlet events export``
writes it (whose ``sent_event_name`` is the name as the partner sent it).
Each line is validated alone, with the endpoint's own validator, so one bad
line is rejected with its reason and the rest go on. Valid events are
queued in batches as the endpoint would queue them. An event already stored
for the partner, or seen earlier in the file, is counted as a duplicate and
not queued; the worker's ON CONFLICT DO NOTHING catches any that landed in
between, so running a replay twice stores nothing twice.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from rq import Queue
from sqlalchemy.engine import Engine

from app import queue as q
from app.db import events as events_table
from app.errors import ApiError
from app.onside.contract import QueuedOnsideEvent
from app.onside.validate import validate_batch
from app.ops import metrics, stats
from app.request.jsonchecks import parse_datetime
from app.settings import Settings

MAX_EXAMPLES = 20


@dataclass
class ReplaySummary:
    lines: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[int, str]] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)

    def reject(self, line_number: int, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line_number, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "reasons": dict(self.reasons.most_common()),
            "examples": [{"line": n, "reason": r} for n, r in self.examples],
            "jobs": len(self.jobs),
        }


def check_line(line: bytes) -> tuple[QueuedOnsideEvent | None, str | None]:
    """One line -> (the event as the endpoint would queue it, None) or (None, reason)."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, "malformed JSON"
    if not isinstance(raw, dict):
        return None, "must be a JSON object"
    if raw.get("source") == "thrad":
        # Say so plainly rather than list the Onside fields a Thrad row lacks.
        return None, "a Thrad event (source: thrad): replay takes Onside events only"
    if isinstance(raw.get("sent_event_name"), str):
        # An export: replay the name as the partner sent it, not the normalized one.
        raw = {**raw, "event_name": raw["sent_event_name"]}
    try:
        [event] = validate_batch(orjson.dumps({"events": [raw]}), 1)
    except ApiError as exc:
        problems = exc.errors or [{"field": None, "message": exc.message}]
        reasons = [
            f"{p['field']}: {p['message']}" if p.get("field") else str(p["message"])
            for p in problems
        ]
        return None, "; ".join(reasons)
    # An export's clamped event: keep the time it was sent with (a replay has
    # no clock guard of its own: the row comes back as it was stored). Its
    # violations are not carried: a hand-written line could put anything there.
    original = raw.get("original_event_datetime")
    parsed = parse_datetime(original) if isinstance(original, str) else None
    if parsed is not None:
        event["original_event_datetime"] = parsed.isoformat()
    return event, None


def _stored_ids(engine: Engine, partner_id: int, ids: list[str]) -> set[str]:
    t = events_table
    query = sa.select(t.c.event_id).where(t.c.partner_id == partner_id, t.c.event_id.in_(ids))
    with engine.connect() as conn:
        return {str(uuid.UUID(str(value))) for value in conn.execute(query).scalars()}


class Replayer:
    """Feeds lines in; queues a batch whenever one is full. Call ``finish`` at the end."""

    def __init__(
        self, engine: Engine, queue: Queue, settings: Settings, partner_id: int, partner_name: str
    ) -> None:
        self.engine, self.queue, self.settings = engine, queue, settings
        self.partner_id, self.partner_name = partner_id, partner_name
        self.summary = ReplaySummary()
        self._pending: list[QueuedOnsideEvent] = []
        # Ids seen earlier in this file: 16-byte ints rather than strings, to
        # keep a replay of millions of lines within tens of MB.
        self._seen: set[int] = set()

    def feed(self, line_number: int, line: bytes) -> None:
        if not line.strip():
            return
        self.summary.lines += 1
        event, reason = check_line(line)
        if event is None:
            self.summary.reject(line_number, reason or "invalid")
            return
        key = uuid.UUID(event["event_id"]).int
        if key in self._seen:
            self.summary.duplicate += 1
            return
        self._seen.add(key)
        self._pending.append(event)
        if len(self._pending) >= self.settings.max_batch_events:
            self._flush()

    def finish(self) -> ReplaySummary:
        self._flush()
        return self.summary

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        stored = _stored_ids(self.engine, self.partner_id, [e["event_id"] for e in pending])
        fresh = [e for e in pending if e["event_id"] not in stored]
        self.summary.duplicate += len(pending) - len(fresh)
        if not fresh:
            return
        job_id = q.enqueue_batch(
            self.queue,
            self.settings,
            endpoint="onside",
            partner_id=self.partner_id,
            partner_name=self.partner_name,
            events=fresh,
            received_at=datetime.now(UTC),
            extra_meta={"source": "replay"},
        )
        self.summary.jobs.append(job_id)
        self.summary.accepted += len(fresh)
        metrics.get().events_accepted.labels(self.partner_name, "replay").inc(len(fresh))
        stats.record(self.queue.connection, self.partner_name, stats.ACCEPTED, len(fresh))


def replay_lines(
    replayer: Replayer, lines: Iterable[bytes], progress: Callable[[int], None] | None = None
) -> ReplaySummary:
    """Feed every line; ``progress`` gets the bytes read, for a progress bar."""
    for number, line in enumerate(lines, start=1):
        replayer.feed(number, line)
        if progress is not None:
            progress(len(line))
    return replayer.finish()
