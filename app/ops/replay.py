"""Replay: re-ingest events from a JSON Lines file through the same validation and queue.

Each line is one event, in the Onside shape or as ``inlet events export``
writes it (whose ``sent_event_name`` is the name as the partner sent it).
An export's Thrad rows (``"source": "thrad"``) are replayed as Thrad events:
the fields a partner sends are validated by the Thrad endpoint's validator,
the stored ``ip_address`` is kept (the worker enriches it again), and the
event is queued under the partner's API key whose label the row's
``params.api_key_label`` names (else the partner's newest active key).
Each line is validated alone, with the endpoint's own validator, so one bad
line is rejected with its reason and the rest go on. Valid events are
queued in batches as the endpoint would queue them. An event already stored
for the partner, or seen earlier in the file, is counted as a duplicate and
not queued; the worker's ON CONFLICT DO NOTHING catches any that landed in
between, so running a replay twice stores nothing twice.

Thrad events without an ``event_id`` have no idempotency key of their own:
such a line counts as already stored when a stored row of the partner
without event_id has the same tag_id, event_name and timestamp, and its
queued ``ingest_id`` is derived from the line (UUID 5), so a file replayed
twice lands it once.
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
from app.db import api_keys as api_keys_table
from app.db import events as events_table
from app.db import thrad_events as thrad_table
from app.errors import ApiError
from app.onside.contract import QueuedOnsideEvent
from app.onside.validate import validate_batch
from app.ops import metrics, stats
from app.request.jsonchecks import parse_datetime
from app.settings import Settings
from app.thrad.contract import SENT_FIELDS, QueuedThradEvent
from app.thrad.validate import server_fields, validate_event

# The namespace of the ingest ids replay derives for Thrad events without event_id.
_REPLAY_NAMESPACE = uuid.UUID("6f1c1f0e-3b7e-4f1e-9a51-7d1c0b1f5e11")
ONE_EVENT_PER_LINE = (
    'one event per line: this line holds a whole batch ({"events": [...]}); '
    "write each event of it on a line of its own"
)

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
    if "events" in raw and "event_name" not in raw:
        # A request body pasted as a line: say so, rather than list the five
        # fields an Onside event needs.
        return None, ONE_EVENT_PER_LINE
    if isinstance(raw.get("sent_event_name"), str):
        # An export: replay the name as the partner sent it, not the normalized one.
        raw = {**raw, "event_name": raw["sent_event_name"]}
    try:
        [event] = validate_batch(orjson.dumps({"events": [raw]}), 1)
    except ApiError as exc:
        return None, _reasons(exc)
    # An export's clamped event: keep the time it was sent with (a replay has
    # no clock guard of its own: the row comes back as it was stored). Its
    # violations are not carried: a hand-written line could put anything there.
    original = raw.get("original_event_datetime")
    parsed = parse_datetime(original) if isinstance(original, str) else None
    if parsed is not None:
        event["original_event_datetime"] = parsed.isoformat()
    return event, None


def _reasons(exc: ApiError) -> str:
    problems = exc.errors or [{"field": None, "message": exc.message}]
    return "; ".join(
        f"{p['field']}: {p['message']}" if p.get("field") else str(p["message"]) for p in problems
    )


def check_thrad_line(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """An export's Thrad row -> (the fields a partner sends, validated, None) or (None, reason)."""
    sent = {field: raw[field] for field in SENT_FIELDS if raw.get(field) is not None}
    params = sent.get("params")
    if isinstance(params, dict):
        # The server's stamps go back on when it is queued again.
        sent["params"] = {
            k: v
            for k, v in params.items()
            if k not in ("integration", "partner_id", "api_key_label")
        }
    try:
        return validate_event(orjson.dumps(sent)), None
    except ApiError as exc:
        return None, _reasons(exc)


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
        self._thrad_pending: list[QueuedThradEvent] = []
        self._thrad_seen: set[tuple[Any, ...]] = set()
        self._keys: list[Any] | None = None  # the partner's API keys, read on first need

    def feed(self, line_number: int, line: bytes) -> None:
        if not line.strip():
            return
        self.summary.lines += 1
        if b"thrad" in line:  # cheap: only lines that may be Thrad rows are parsed twice
            try:
                raw = orjson.loads(line)
            except orjson.JSONDecodeError:
                raw = None
            if isinstance(raw, dict) and raw.get("source") == "thrad":
                self._feed_thrad(line_number, raw)
                return
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
        self._flush_thrad()
        return self.summary

    def _api_key(self, label: Any) -> Any:
        """The partner's key of that label, else its newest active key, else None."""
        if self._keys is None:
            t = api_keys_table
            query = (
                sa.select(t.c.id, t.c.label, t.c.revoked_at)
                .where(t.c.partner_id == self.partner_id)
                .order_by(t.c.id.desc())
            )
            with self.engine.connect() as conn:
                self._keys = list(conn.execute(query))
        active = [key for key in self._keys if key.revoked_at is None]
        named = [key for key in active if key.label == label]
        return (named or active or [None])[0]

    def _feed_thrad(self, line_number: int, raw: dict[str, Any]) -> None:
        sent, reason = check_thrad_line(raw)
        if sent is None:
            self.summary.reject(line_number, reason or "invalid")
            return
        params = raw.get("params")
        key = self._api_key(params.get("api_key_label") if isinstance(params, dict) else None)
        if key is None:
            self.summary.reject(
                line_number,
                "the partner has no active API key to replay Thrad events under "
                "(inlet keys create PARTNER --label LABEL)",
            )
            return
        address = raw.get("ip_address")
        event = server_fields(
            sent,
            headers={},
            ip_address=address if isinstance(address, str) else None,
            partner_id=self.partner_id,
            api_key_id=key.id,
            key_label=key.label,
            received_at=datetime.now(UTC),
        )
        if "event_id" in event:
            dedup: tuple[Any, ...] = ("id", event["tag_id"], event["event_id"])
        else:
            dedup = ("none", event["tag_id"], event["event_name"], float(event["timestamp"]))
            canonical = orjson.dumps(sent, option=orjson.OPT_SORT_KEYS).decode()
            event["ingest_id"] = str(
                uuid.uuid5(_REPLAY_NAMESPACE, f"{self.partner_id}:{canonical}")
            )
        if dedup in self._thrad_seen:
            self.summary.duplicate += 1
            return
        self._thrad_seen.add(dedup)
        self._thrad_pending.append(event)
        if len(self._thrad_pending) >= self.settings.max_batch_events:
            self._flush_thrad()

    def _stored_thrad(self, pending: list[QueuedThradEvent]) -> set[tuple[Any, ...]]:
        t = thrad_table.c
        tags = sorted({e["tag_id"] for e in pending})
        query = sa.select(t.tag_id, t.event_id, t.event_name, t.event_timestamp).where(
            t.partner_id == self.partner_id, t.tag_id.in_(tags)
        )
        with_ids = [e["event_id"] for e in pending if "event_id" in e]
        names = sorted({e["event_name"] for e in pending if "event_id" not in e})
        query = query.where(
            sa.or_(t.event_id.in_(with_ids), sa.and_(t.event_id.is_(None), t.event_name.in_(names)))
        )
        stored: set[tuple[Any, ...]] = set()
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if row.event_id is None:
                    stored.add(("none", row.tag_id, row.event_name, float(row.event_timestamp)))
                else:
                    stored.add(("id", row.tag_id, row.event_id))
        return stored

    def _flush_thrad(self) -> None:
        pending, self._thrad_pending = self._thrad_pending, []
        if not pending:
            return
        stored = self._stored_thrad(pending)
        fresh = [
            e
            for e in pending
            if (
                ("id", e["tag_id"], e["event_id"])
                if "event_id" in e
                else ("none", e["tag_id"], e["event_name"], float(e["timestamp"]))
            )
            not in stored
        ]
        self.summary.duplicate += len(pending) - len(fresh)
        if fresh:
            self._enqueue("thrad", fresh)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        stored = _stored_ids(self.engine, self.partner_id, [e["event_id"] for e in pending])
        fresh = [e for e in pending if e["event_id"] not in stored]
        self.summary.duplicate += len(pending) - len(fresh)
        if fresh:
            self._enqueue("onside", fresh)

    def _enqueue(
        self, endpoint: q.Endpoint, fresh: list[QueuedOnsideEvent] | list[QueuedThradEvent]
    ) -> None:
        job_id = q.enqueue_batch(
            self.queue,
            self.settings,
            endpoint=endpoint,
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
