"""What crosses the queue for Thrad: one event, and what the worker adds to it.

The one place Thrad's event fields are declared. From the types here come
the validator's field groups (``app/thrad/validate.py``), the OpenAPI
schema (``app/thrad/openapi.py``), the row the worker inserts
(``worker/thrad.py``), the enrichment (``worker/enrich.py``), the export
(``app/thrad/export.py``) and the plain text columns of ``thrad_events``
(``app/db.py``); ``tests/test_contract.py`` checks that the table, the
export, the enrichment and the OpenAPI document agree with them.

A TypedDict costs nothing at run time: the request path builds plain dicts,
which RQ's JSON serializer writes as they are. The field groups below are
read from the annotations once, at import.
"""

# No ``from __future__ import annotations`` here: TypedDict reads NotRequired
# from evaluated annotations only (``__optional_keys__``, which the tests use).
from typing import Any, NotRequired, TypedDict, get_type_hints

JsonObject = dict[str, Any]


class GeoFields(TypedDict):
    """Looked up from ``ip_address`` (``worker/enrich.py``): by the worker, or by
    the web tier when the address is not queued in full (``app/privacy.py``)."""

    geo_country: str | None
    geo_region: str | None
    geo_city: str | None
    geo_lat: float | None
    geo_lon: float | None


class QueuedThradEvent(TypedDict):
    """One event as the endpoint queues it and the worker inserts it.

    The fields up to ``params`` are the ones a partner may send (in the
    order their problems are reported); a ``NotRequired`` one was absent or
    null. The rest the server stamps (``SERVER_FIELDS``).
    """

    event_name: str
    # As sent, else ``site:<host>`` of page_url, Origin or Referer.
    tag_id: str
    event_id: NotRequired[str]
    page_url: NotRequired[str]
    referrer: NotRequired[str]
    user_agent: NotRequired[str]
    session_id: NotRequired[str]
    client_id: NotRequired[str]
    click_id: NotRequired[str]
    impression_id: NotRequired[str]
    bid_id: NotRequired[str]
    attribution_type: NotRequired[str]
    impression_state: NotRequired[str]
    # Unix seconds as sent, else the receive time (column ``event_timestamp``).
    timestamp: float
    view_time_ms: NotRequired[float]
    consent: NotRequired[JsonObject]
    # The partner's, with the server's stamps (integration, partner_id,
    # api_key_label) winning over keys of the same names.
    params: JsonObject
    channel: str
    ip_address: str | None
    # Given to each accepted request: a job run twice lands once.
    ingest_id: str
    api_key_id: int
    # The timestamp as sent when a clock guard clamped ``timestamp`` to the
    # receive time (app/quality/clock.py); anything keyed on event time
    # (deduplication) must use this where present.
    original_timestamp: NotRequired[float]
    # Schema violations let through in warn mode, or the unknown-events flag.
    violations: NotRequired[list[JsonObject]]
    # Only when the partner's ip_mode keeps less than the full address, or its
    # consent flags refuse: geo looked up from the full address before it was
    # cut (app/privacy.py). Stored in the geo columns, not a column of its own.
    geo: NotRequired[GeoFields]


class UserAgentFields(TypedDict):
    """Added by the worker from ``user_agent`` (``worker/enrich.py``)."""

    ua_browser: str | None
    ua_browser_version: str | None
    ua_os: str | None
    ua_os_version: str | None
    ua_device: str | None


# Set by the server whatever the partner sends (a sent ``channel`` is ignored).
SERVER_FIELDS = (
    "channel",
    "ip_address",
    "ingest_id",
    "api_key_id",
    "original_timestamp",
    "violations",
    "geo",
)

# Server fields there only when they apply (a clamped timestamp, a violation).
CONDITIONAL_FIELDS = ("original_timestamp", "violations", "geo")

_TYPES = get_type_hints(QueuedThradEvent)
# What a partner may send, grouped by JSON type: the validator checks each
# group, the OpenAPI schema documents it. event_name, the one required
# field, is checked on its own.
SENT_FIELDS: tuple[str, ...] = tuple(f for f in _TYPES if f not in SERVER_FIELDS)
STRING_FIELDS = tuple(f for f in SENT_FIELDS if _TYPES[f] is str and f != "event_name")
NUMBER_FIELDS = tuple(f for f in SENT_FIELDS if _TYPES[f] is float)
OBJECT_FIELDS = tuple(f for f in SENT_FIELDS if _TYPES[f] == JsonObject)

# Queued fields with no column of their own: ``geo`` lands in the geo columns.
UNSTORED_FIELDS = ("geo",)

# tag_id and event_id together are the dedup key, held in a unique index.
KEY_FIELDS = ("tag_id", "event_id")

GEO_FIELDS: tuple[str, ...] = tuple(GeoFields.__annotations__)
UA_FIELDS: tuple[str, ...] = tuple(UserAgentFields.__annotations__)
# What the worker adds to an event, and the export shows after the sent fields.
ENRICHED_FIELDS = ("ip_address", *GEO_FIELDS, *UA_FIELDS)

# The few fields whose column has another name than the wire's.
COLUMN_NAMES = {"timestamp": "event_timestamp"}
# The sent strings with a nullable text column and nothing else to them (the
# key fields have constraints of their own): app/db.py makes one column each.
PLAIN_TEXT_FIELDS = tuple(f for f in STRING_FIELDS if f not in KEY_FIELDS)
