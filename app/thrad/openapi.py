"""Thrad's Events API in the OpenAPI document (``app/openapi.py`` serves it).

The event schema is built from the field groups of ``app/thrad/contract.py``,
so a field added there is documented here. It states what the endpoint checks and
no more: types, not values. The error responses are the shared ones, but for
401, where Thrad's exact bodies are part of the wire format.
"""

from __future__ import annotations

from typing import Any

from app.request.jsonchecks import MAX_PAYLOAD_DEPTH
from app.thrad.contract import KEY_FIELDS, NUMBER_FIELDS, OBJECT_FIELDS, STRING_FIELDS
from app.thrad.endpoint import MAX_BODY_BYTES
from app.thrad.validate import MAX_KEY_CHARS

JsonSchema = dict[str, Any]

# No U+0000 (PostgreSQL can't store it), as for Onside's strings.
_NO_NUL = "^[^\\u0000]*$"
# Python's whitespace (str.isspace: what the endpoint's strip() removes),
# spelled out because regex engines disagree on \s: ECMA's lacks
# U+001C-U+001F and U+0085, and has U+FEFF, which Python keeps.
_SPACE = (
    "\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# Something other than whitespace, and no U+0000 anywhere.
_NOT_BLANK = f"^[^\\u0000]*[^{_SPACE}\\u0000][^\\u0000]*$"
# Numbers are left unbounded, as in Onside's payloads. One beyond a double
# (about 1.8e308) is malformed JSON to orjson (a 400), but no bound can say so
# exactly: an integer just past the largest double rounds down to it and is
# accepted, and the true limit (2**1024 - 2**970, exclusive) is no double.
_NUMBER_NOTE = " Within a double's range (about ±1.8e308); beyond it the body is malformed JSON."

MISSING_TOKEN = "Missing bearer token"
INVALID_KEY = "Invalid API key"

_NOTES = {
    "tag_id": (
        "Your tag ID. If omitted: `site:<host>` of page_url, else of the Origin header, "
        "else of the Referer header, else `site:unknown`."
    ),
    "event_id": (
        "For deduplication: an (event_id, tag_id) pair lands once per partner. "
        "Empty means none: such events are all stored."
    ),
    "attribution_type": "`click` / `view` / `organic` (the value is not checked).",
    "timestamp": "Unix seconds. Defaults to the time the server received the event.",
    "view_time_ms": "Milliseconds.",
    "consent": (
        "GDPR/CCPA consent flags, stored as sent. `analytics` and `advertising` (or the "
        "flags the partner's consent mapping names) are honoured: `false`, `0`, or "
        "`false`/`no`/`off`/`denied`/`0` as text drops the client address, geo, "
        "`user_agent` and the click, impression and bid ids before the event is queued."
    ),
    "params": (
        "Free-form properties. The server adds `integration`, `partner_id` and "
        "`api_key_label`, which win over keys of the same names. Keys the partner "
        "declared as PII are stored as `hmac-sha256:<hex>` or not at all."
    ),
}


def _field(name: str, schema: JsonSchema) -> JsonSchema:
    note = _NOTES.get(name)
    return {**schema, "description": note} if note else schema


THRAD_EVENT: JsonSchema = {
    "type": "object",
    "required": ["event_name"],
    "properties": {
        "event_name": {
            "type": "string",
            "pattern": _NOT_BLANK,
            "description": "Standard or custom; stored as sent.",
        },
        **{
            name: _field(
                name,
                {
                    "type": ["string", "null"],
                    "pattern": _NO_NUL,
                    # The dedup key's parts must fit a database index.
                    **({"maxLength": MAX_KEY_CHARS} if name in KEY_FIELDS else {}),
                },
            )
            for name in STRING_FIELDS
        },
        **{
            name: {
                "type": ["number", "null"],
                "description": (_NOTES.get(name, "") + _NUMBER_NOTE).strip(),
            }
            for name in NUMBER_FIELDS
        },
        **{
            name: _field(
                name, {"anyOf": [{"$ref": "#/components/schemas/JsonObject"}, {"type": "null"}]}
            )
            for name in OBJECT_FIELDS
        },
    },
    "description": (
        "Only `event_name` is required. Every other known field is checked for its type, "
        "not its value, and `null` counts as absent. Unknown fields are ignored (`channel` "
        "among them: the server sets it to `server`). consent and params may nest objects "
        f"and arrays at most {MAX_PAYLOAD_DEPTH} levels deep."
    ),
}

BEARER_UNAUTHORIZED: JsonSchema = {
    "description": (
        f"`{MISSING_TOKEN}` without an `Authorization: Bearer` header; `{INVALID_KEY}` for a "
        "wrong or revoked key, or a key of a revoked partner (Thrad's exact bodies)."
    ),
    "headers": {
        "WWW-Authenticate": {"required": True, "schema": {"type": "string", "pattern": "^Bearer "}}
    },
    "content": {
        "application/json": {
            "schema": {
                "allOf": [
                    {"$ref": "#/components/schemas/Error"},
                    {
                        "properties": {
                            "error": {"enum": [MISSING_TOKEN, INVALID_KEY]},
                            "code": {"enum": ["unauthorized"]},
                        }
                    },
                ]
            }
        }
    },
}


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/responses/{name}"}


def collect(operation_id: str, summary: str) -> JsonSchema:
    """The operation, for the canonical path and for its alias alike."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": (
                f"One event per request, at most {MAX_BODY_BYTES // 1024} KiB. The body must "
                "be JSON, but its Content-Type is not checked (so `curl -d` keeps working); "
                "it may be sent with `Content-Encoding: gzip` or `deflate`. A 204 means the "
                "event is durably queued and will land. The client address is stored in "
                "full, truncated (IPv4 /24, IPv6 /48) or not at all, as the partner's "
                "`ip_mode` says; geo comes from the full address."
            ),
            "security": [{"bearerAuth": []}],
            "parameters": [{"$ref": "#/components/parameters/DryRun"}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ThradEvent"}}
                },
            },
            "responses": {
                "200": _ref("DryRun"),
                "204": {"description": "The event is durably queued and will land."},
                "400": _ref("BadRequest"),
                "401": _ref("BearerUnauthorized"),
                "408": _ref("RequestTimeout"),
                "413": _ref("PayloadTooLarge"),
                "415": _ref("UnsupportedMediaType"),
                "429": _ref("TooManyRequests"),
                "503": _ref("Unavailable"),
            },
        }
    }


THRAD_SCHEMAS: dict[str, JsonSchema] = {"ThradEvent": THRAD_EVENT}
THRAD_RESPONSES: dict[str, JsonSchema] = {"BearerUnauthorized": BEARER_UNAUTHORIZED}
THRAD_PATHS: dict[str, JsonSchema] = {
    "/v1/api/collect": collect("postThradEvent", "Send one event (Thrad's Events API)"),
    "/api/collect": collect(
        "postThradEventAlias", "Send one event (Thrad's Events API, the documented alias)"
    ),
}
