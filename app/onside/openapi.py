"""Onside's batch API in the OpenAPI document (``app/openapi.py`` serves it).

The event schema lists the fields of ``app/onside/contract.py``, all
required, in the order the validator reports them missing
(``tests/test_contract.py`` checks that every field has its property).
The error responses are the shared ones of ``app/openapi.py``.
"""

from __future__ import annotations

from typing import Any

from app.onside.contract import FIELDS
from app.onside.names import BLANK_CHARACTERS
from app.onside.validate import MAX_EVENT_NAME_CHARS

# The blank characters as a regex class body, each written as a \uXXXX escape.
_BLANK = "".join(f"\\u{ord(c):04x}" for c in BLANK_CHARACTERS)

JsonSchema = dict[str, Any]

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID4_PATTERN = (
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)

ONSIDE_EVENT: JsonSchema = {
    "type": "object",
    "required": list(FIELDS),
    "properties": {
        "event_name": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EVENT_NAME_CHARS,
            # Not only characters that normalize to nothing, and no U+0000.
            "pattern": f"^[^\\u0000]*[^{_BLANK}\\u0000][^\\u0000]*$",
            "description": "Case-insensitive: stored trimmed, NFKC-normalized and casefolded.",
        },
        "payload": {
            "$ref": "#/components/schemas/JsonObject",
            "description": (
                "Free-form. Keys the partner declared as PII are stored as "
                "`hmac-sha256:<hex>` or not at all."
            ),
        },
        "event_datetime": {
            "type": "string",
            "format": "date-time",
            "description": (
                "ISO 8601 with a time; `Z` or an offset; naive means UTC. RFC 3339 "
                "date-times are accepted, but for a leap second (:60) and a time that "
                "falls before year 1 or after year 9999 in UTC (`0001-01-01T00:00:00+02:00`)."
            ),
        },
        "event_id": {
            "type": "string",
            "pattern": UUID4_PATTERN,
            "description": "A UUID version 4: the idempotency key, per partner.",
        },
        "installation_id": {"type": "string", "pattern": UUID_PATTERN},
    },
    "description": "Unknown extra fields are ignored.",
}

ONSIDE_BATCH: JsonSchema = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {"$ref": "#/components/schemas/OnsideEvent"},
        },
    },
}


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/responses/{name}"}


ONSIDE_EVENTS: JsonSchema = {
    "post": {
        "operationId": "postOnsideEvents",
        "summary": "Send a batch of events (Onside's batch API)",
        "description": (
            "Up to 1,000 events and 1 MiB per request. The body may be sent with "
            "`Content-Encoding: gzip`. A batch is accepted whole (204, durably queued) or "
            "refused whole. Resending a batch is always safe: an `event_id` lands once per partner."
        ),
        "security": [{"basicAuth": []}],
        "parameters": [{"$ref": "#/components/parameters/DryRun"}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/OnsideBatch"}}
            },
        },
        "responses": {
            "200": _ref("DryRun"),
            "204": {"description": "The whole batch is durably queued and will land."},
            "400": _ref("BadRequest"),
            "401": _ref("Unauthorized"),
            "408": _ref("RequestTimeout"),
            "413": _ref("PayloadTooLarge"),
            "415": _ref("UnsupportedMediaType"),
            "429": _ref("TooManyRequests"),
            "503": _ref("Unavailable"),
        },
    }
}

ONSIDE_SCHEMAS: dict[str, JsonSchema] = {"OnsideEvent": ONSIDE_EVENT, "OnsideBatch": ONSIDE_BATCH}
ONSIDE_PATHS: dict[str, JsonSchema] = {"/attribution-api/v1/events": ONSIDE_EVENTS}
