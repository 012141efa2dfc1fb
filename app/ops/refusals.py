"""The refusal log: every 4xx answer of an ingest endpoint, kept for support.

A partner asks "we sent event X at 14:02, where is it?"; when the answer is
"refused at the door", this log says when, with which status, code and
errors. It is written by ``ObserveRequests`` once the response has been sent
(app/observe.py): the client never waits for it, and Redis trouble only
loses the entry (it never turns a 4xx into a 500).

Storage: one Redis Stream per partner, ``inlet:refusals:partner:<name>``,
and one for every refusal without an authenticated partner (401, the
failed-login 429, 405 ...), ``inlet:refusals:unauthenticated``, whose entries
name the client address. The refusals the web process records together
(app/observe.py) are written in one pipelined round trip: an ``XADD MAXLEN ~
N`` (INLET_REFUSALS_PER_PARTNER) each, then for each stream an ``XTRIM MINID
~`` (INLET_REFUSALS_DAYS) and an ``EXPIRE`` so an idle partner's stream
vanishes, and a ``HINCRBY`` of the hour's counts by partner and code
(``inlet:refusals:counts:<hour>``). The stream entry id is the time of
that write in milliseconds (a few milliseconds after the answer). Counts
and the log are trimmed approximately: a partner may briefly have a little
more than N.

What an entry holds: the request id, the endpoint, status, code, message, the
first ``MAX_ERRORS`` error entries (and how many there were), the client
address, and, when the body parsed as JSON, the events it named (Onside: the
``event_id`` of each event, by index; Thrad: ``tag_id`` and ``event_id``).
Never a header (so no credential), never the payload: at most a redacted
excerpt of the body's first bytes (``redacted_excerpt``): object keys that
look like field names are kept, every string value becomes ``"*"``, every
number ``#``, every character outside JSON's punctuation ``?``. The
unauthenticated stream never holds a body excerpt or event ids (anyone may
write to it).

Interface (stable; the admin page calls it):

- ``entry_for(...) -> dict[str, str]`` and ``add_many(pipe, settings,
  [(partner, fields), ...], now=None) -> None``: queue refusals' writes on a
  pipeline (the caller executes it, and decides what a Redis error means).
- ``list_refusals(redis, partner, *, since=None, limit=100) -> list[Refusal]``:
  a partner's refusals, newest first.
- ``list_unauthenticated(redis, *, client=None, since=None, limit=100) ->
  list[Refusal]``: the unauthenticated ones, of one address or all.
- ``counts_by_code(redis, *, partner=None, since=None, now=None,
  retention_days=7) -> dict[str, dict[str, int]]``: ``{partner: {code:
  count}}`` for the hours since ``since`` (default: the last
  ``retention_days``; pass ``settings.refusals_days``), unauthenticated under
  ``UNAUTHENTICATED``, codes most frequent first.
- ``iter_refusals(redis, partner, *, since=None) -> Iterator[Refusal]``: every
  kept refusal of a partner, newest first (``app/ops/find.py`` scans it).
- ``Refusal``: a frozen dataclass; ``to_json()`` gives ``{"when", "entry_id",
  "request_id", "partner", "endpoint", "status", "code", "message", "errors",
  "errors_total", "events", "client", "excerpt"}`` where ``events`` is a list
  of ``{"index", "event_id", "tag_id"}`` (``tag_id`` only for Thrad).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from app.settings import Settings

PREFIX = "inlet:refusals:"
UNAUTHENTICATED_KEY = f"{PREFIX}unauthenticated"
COUNTS_PREFIX = f"{PREFIX}counts:"
# The name refusals without a partner are counted under.
UNAUTHENTICATED = "(unauthenticated)"

MAX_ERRORS = 200  # error entries kept per refusal; errors_total says how many there were
# Event ids kept per refusal (a full batch by default). A batch's later events
# cannot be found as refused: find's NOT_FOUND says so, quoting this figure.
MAX_EVENTS = 1000
MAX_ID_CHARS = 64  # an id longer than this is cut (ids are not payloads)
MAX_MESSAGE_CHARS = 300
EXCERPT_CHARS = 120
_EXCERPT_SOURCE_BYTES = 1024
_SCAN_PAGE = 200


def partner_key(partner: str) -> str:
    return f"{PREFIX}partner:{partner}"


@dataclass(frozen=True)
class EventRef:
    """An event a refused body named: its position and its ids."""

    index: int
    event_id: str | None
    tag_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "event_id": self.event_id}
        if self.tag_id is not None:
            out["tag_id"] = self.tag_id
        return out


@dataclass(frozen=True)
class Refusal:
    when: datetime
    entry_id: str
    request_id: str
    partner: str | None
    endpoint: str
    status: int
    code: str
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_total: int = 0
    events: list[EventRef] = field(default_factory=list)
    client: str | None = None
    excerpt: str = ""

    def errors_for(self, index: int) -> list[dict[str, Any]]:
        """The error entries that concern event ``index``: its own, and those of
        the whole request (no index)."""
        return [e for e in self.errors if e.get("index") in (index, None)]

    def to_json(self) -> dict[str, Any]:
        return {
            "when": iso(self.when),
            "entry_id": self.entry_id,
            "request_id": self.request_id,
            "partner": self.partner,
            "endpoint": self.endpoint,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "errors": self.errors,
            "errors_total": self.errors_total,
            "events": [e.to_json() for e in self.events],
            "client": self.client,
            "excerpt": self.excerpt,
        }


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- writing ----------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: str, limit: int) -> str:
    """``text`` without control characters, at most ``limit`` characters."""
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return clean(value, MAX_ID_CHARS)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return clean(str(value), MAX_ID_CHARS)
    return None


def onside_events(body: bytes | None) -> list[EventRef]:
    """The event id of each event of a batch body, by index; [] if it does not parse."""
    if not body:
        return []
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    raw = parsed.get("events") if isinstance(parsed, dict) else None
    if not isinstance(raw, list):
        return []
    return [
        EventRef(index, _id(event.get("event_id")) if isinstance(event, dict) else None)
        for index, event in enumerate(raw[:MAX_EVENTS])
    ]


def thrad_events(body: bytes | None, tag_id_of: Any = None) -> list[EventRef]:
    """A Thrad body's ``tag_id`` and ``event_id``; [] if it is not a JSON object.

    ``tag_id_of(event)`` gives the tag id as a stored row would have it (the
    fallback from page_url or the headers included); without it, the one sent.
    """
    if not body:
        return []
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(parsed, dict):
        return []
    tag_id: str | None
    try:
        tag_id = tag_id_of(parsed) if tag_id_of else _id(parsed.get("tag_id"))
    except Exception:  # a hostile body must not stop the entry being written
        tag_id = _id(parsed.get("tag_id"))
    return [EventRef(0, _id(parsed.get("event_id")), clean(tag_id or "", MAX_ID_CHARS) or None)]


# One token of a body's text, named by what it becomes in an excerpt. A
# string may be a key (kept) when it looks like a field name: a letter or
# "_" first, no "@" and no run of four digits (an email, a card number or a
# date used as a key is data), and a colon after it.
_TOKEN = re.compile(
    r'"(?![^"]*[0-9]{4})(?P<key>[A-Za-z_][A-Za-z0-9_.$-]{0,39})"(?=\s*:)'
    r'|(?P<string>"(?:[^"\\]|\\.)*"?)'  # a string (perhaps cut off)
    r"|(?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    # JSON's literals as whole words only ("nullvoid42" is not null).
    r"|(?P<kept>(?<![A-Za-z0-9_])(?:true|false|null)(?![A-Za-z0-9_])|[{}\[\],:])"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.S,
)
# What each kind of token becomes; a key and JSON's punctuation and literals stay.
_MASKS = {"string": '"*"', "number": "#", "space": " ", "other": "?"}
_MASKED_CHARACTERS = ("#", "?")


def redacted_excerpt(body: bytes | None, limit: int = EXCERPT_CHARS) -> str:
    """The shape of a body's first bytes, with every value masked.

    Keys that look like field names stay when they follow ``{`` or ``,``; a
    string value becomes ``"*"``, a number ``#``, anything outside JSON's
    punctuation and literals ``?`` (a run of such characters and numbers
    one ``?``, so that not even a value's length shows), and whitespace one
    space. So the excerpt shows whether a partner sent the right shape
    (``{"events": [{"event_name": "*", ...``) and never what was in it.
    """
    if not body:
        return ""
    text = body[:_EXCERPT_SOURCE_BYTES].decode("utf-8", "replace")
    out: list[str] = []
    length = 0
    before = ""  # the last piece that was not whitespace
    for token in _TOKEN.finditer(text):
        kind = token.lastgroup
        if kind == "key" and before not in ("{", ","):
            kind = "string"  # a string before a colon, but not where a key goes
        piece = _MASKS.get(kind) or token.group()  # type: ignore[arg-type]
        if piece in _MASKED_CHARACTERS and out and out[-1] in _MASKED_CHARACTERS:
            out[-1] = "?"
            continue
        out.append(piece)
        length += len(piece)
        if kind != "space":
            before = piece
        if length > limit:
            break
    excerpt = "".join(out).strip()
    return excerpt if len(excerpt) <= limit else excerpt[: limit - 1] + "…"


def entry_for(
    *,
    request_id: str,
    endpoint: str,
    status: int,
    code: str,
    message: str,
    errors: list[dict[str, Any]] | None,
    client: str | None,
    events: list[EventRef] | None = None,
    excerpt: str = "",
) -> dict[str, str]:
    """The fields of one stream entry (all strings, as Redis keeps them)."""
    errors = errors or []
    return {
        "request_id": request_id,
        "endpoint": endpoint,
        "status": str(status),
        "code": code,
        "message": clean(message, MAX_MESSAGE_CHARS),
        "errors": orjson.dumps(errors[:MAX_ERRORS]).decode(),
        "errors_total": str(len(errors)),
        "events": orjson.dumps(
            [[e.index, e.event_id, e.tag_id] for e in (events or [])[:MAX_EVENTS]]
        ).decode(),
        "client": client or "",
        "excerpt": excerpt,
    }


def _hour(now: float) -> int:
    return int(now // 3600)


def add_many(
    pipe: Pipeline,
    settings: Settings,
    entries: Sequence[tuple[str | None, Mapping[str, str]]],
    now: float | None = None,
) -> None:
    """Queue the writes of many refusals, ``(partner, fields)`` each, on ``pipe``.

    One ``XADD`` an entry; the trim, the TTLs and the hour's counts once for
    the lot (a count per partner and code), so a burst of refusals costs
    Redis little more than their entries.
    """
    now = time.time() if now is None else now
    retention = settings.refusals_days * 86400
    min_id = f"{int((now - retention) * 1000)}-0"
    keys: dict[str, None] = {}
    codes: Counter[tuple[str, str]] = Counter()
    for partner, fields in entries:
        key = partner_key(partner) if partner else UNAUTHENTICATED_KEY
        entry: dict[Any, Any] = dict(fields)
        pipe.xadd(key, entry, maxlen=settings.refusals_per_partner, approximate=True)
        keys[key] = None
        codes[partner or UNAUTHENTICATED, fields["code"]] += 1
    for key in keys:
        pipe.xtrim(key, minid=min_id, approximate=True)
        pipe.expire(key, retention)
    if codes:
        counts = f"{COUNTS_PREFIX}{_hour(now)}"
        for (who, code), amount in codes.items():
            pipe.hincrby(counts, orjson.dumps([who, code]), amount)
        pipe.expire(counts, retention + 3600)


# --- reading ----------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _parse(partner: str | None, entry_id: Any, raw: Mapping[Any, Any] | None) -> Refusal:
    fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
    eid = _text(entry_id)
    millis = int(eid.split("-", 1)[0])
    events = [
        EventRef(int(index), event_id, tag_id)
        for index, event_id, tag_id in orjson.loads(fields.get("events") or "[]")
    ]
    return Refusal(
        when=datetime.fromtimestamp(millis / 1000, UTC),
        entry_id=eid,
        request_id=fields.get("request_id", ""),
        partner=partner,
        endpoint=fields.get("endpoint", ""),
        status=int(fields.get("status") or 0),
        code=fields.get("code", ""),
        message=fields.get("message", ""),
        errors=orjson.loads(fields.get("errors") or "[]"),
        errors_total=int(fields.get("errors_total") or 0),
        events=events,
        client=fields.get("client") or None,
        excerpt=fields.get("excerpt", ""),
    )


def _min_id(since: datetime | None) -> str:
    return f"{int(since.timestamp() * 1000)}-0" if since else "-"


def _scan(redis: Redis, key: str, partner: str | None, since: datetime | None) -> Iterator[Refusal]:
    """Newest first, a page at a time."""
    upper = "+"
    lowest = _min_id(since)
    while True:
        page = redis.xrevrange(key, max=upper, min=lowest, count=_SCAN_PAGE)
        if not page:
            return
        for entry_id, raw in page:
            yield _parse(partner, entry_id, raw)
        if len(page) < _SCAN_PAGE:
            return
        upper = "(" + _text(page[-1][0])


def iter_refusals(
    redis: Redis, partner: str, *, since: datetime | None = None
) -> Iterator[Refusal]:
    """Every kept refusal of ``partner`` (at or after ``since``), newest first."""
    return _scan(redis, partner_key(partner), partner, since)


def list_refusals(
    redis: Redis, partner: str, *, since: datetime | None = None, limit: int = 100
) -> list[Refusal]:
    """A partner's newest ``limit`` refusals (at or after ``since``), newest first."""
    page = redis.xrevrange(partner_key(partner), max="+", min=_min_id(since), count=limit)
    return [_parse(partner, entry_id, raw) for entry_id, raw in page or []]


def list_unauthenticated(
    redis: Redis,
    *,
    client: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Refusal]:
    """The newest ``limit`` refusals without a partner (of ``client`` only, if given)."""
    found: list[Refusal] = []
    for refusal in _scan(redis, UNAUTHENTICATED_KEY, None, since):
        if client is None or refusal.client == client:
            found.append(refusal)
            if len(found) >= limit:
                break
    return found


def counts_by_code(
    redis: Redis,
    *,
    partner: str | None = None,
    since: datetime | None = None,
    now: float | None = None,
    retention_days: int = 7,
) -> dict[str, dict[str, int]]:
    """``{partner: {code: count}}`` of the refusals since ``since`` (to the hour;
    default: the last ``retention_days``), of one partner or all of them."""
    now = time.time() if now is None else now
    current = _hour(now)
    first = _hour(since.timestamp()) if since else current - retention_days * 24 + 1
    pipe = redis.pipeline(transaction=False)
    hours = range(max(first, current - retention_days * 24), current + 1)
    for hour in hours:
        pipe.hgetall(f"{COUNTS_PREFIX}{hour}")
    counts: dict[str, dict[str, int]] = {}
    for table in pipe.execute():
        for member, value in table.items():
            who, code = orjson.loads(member)
            if partner is not None and who != partner:
                continue
            by_code = counts.setdefault(who, {})
            by_code[code] = by_code.get(code, 0) + int(value)
    return {
        who: dict(sorted(by_code.items(), key=lambda item: (-item[1], item[0])))
        for who, by_code in sorted(counts.items())
    }
