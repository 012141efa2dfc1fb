"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

It describes each partner endpoint exactly (Onside's batch API here, Thrad's
Events API in ``app/thrad/openapi.py``): what the request may hold, which
credentials it takes, and every response with its headers and the one error
shape of ``app/errors.py``. The test suite runs schemathesis against it, so
the document and the code cannot drift apart.

An endpoint adds itself with one entry in ``PATHS`` (and, for a new kind of
credential, one in ``SECURITY_SCHEMES``); the error responses are shared.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.onside.validate import MAX_EVENT_NAME_CHARS
from app.thrad.openapi import THRAD_PATHS, THRAD_RESPONSES, THRAD_SCHEMAS

JsonSchema = dict[str, Any]

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID4_PATTERN = (
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)
# No U+0000 anywhere (PostgreSQL's jsonb can't store it): refused with a 400.
NO_NUL_PATTERN = "^[^\\u0000]*$"

SECURITY_SCHEMES: dict[str, JsonSchema] = {
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "The partner's username and password from `inlet partners create`.",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ik_<16 hex digits>_<secret>",
        "description": "A partner's API key from `inlet keys create`.",
    },
}

_RETRY_AFTER = {
    "description": "Whole seconds to wait before sending the same request again.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
}

SCHEMAS: dict[str, JsonSchema] = {
    "Error": {
        "type": "object",
        "description": "Every error response has this shape.",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string", "minLength": 1, "description": "One human sentence."},
            "code": {"type": "string", "description": "A stable machine-readable code."},
            "errors": {
                "type": "array",
                "description": "Validation failures only: each problem (the first 100).",
                "items": {"$ref": "#/components/schemas/Problem"},
            },
        },
        "additionalProperties": False,
    },
    "Problem": {
        "type": "object",
        "required": ["index", "field", "message"],
        "properties": {
            "index": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "The event's position in the batch; null for the whole body.",
            },
            "field": {"type": ["string", "null"]},
            "message": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "JsonValue": {
        "description": "Any JSON value whose strings and keys hold no U+0000.",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL_PATTERN},
            {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
            {"$ref": "#/components/schemas/JsonObject"},
        ],
    },
    "JsonObject": {
        "type": "object",
        "propertyNames": {"pattern": NO_NUL_PATTERN},
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    },
    "OnsideEvent": {
        "type": "object",
        "required": ["event_name", "payload", "event_datetime", "event_id", "installation_id"],
        "properties": {
            "event_name": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_EVENT_NAME_CHARS,
                # Not only whitespace, and no U+0000.
                "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
                "description": "Case-insensitive: stored trimmed, NFKC-normalized and casefolded.",
            },
            "payload": {"$ref": "#/components/schemas/JsonObject"},
            "event_datetime": {
                "type": "string",
                "format": "date-time",
                "description": (
                    "ISO 8601 with a time; `Z` or an offset; naive means UTC. RFC 3339 "
                    "date-times are accepted, but for a leap second (:60)."
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
    },
    "OnsideBatch": {
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
    },
    **THRAD_SCHEMAS,
}


def _error(description: str, codes: list[str], headers: dict[str, Any] | None = None) -> JsonSchema:
    response: JsonSchema = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"properties": {"code": {"enum": codes}}},
                    ]
                }
            }
        },
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, JsonSchema] = {
    "BadRequest": _error(
        "Malformed JSON or invalid events; nothing was queued. `errors` lists each problem.",
        ["invalid_request", "client_disconnected"],
    ),
    "Unauthorized": _error(
        "Missing or wrong credentials.",
        ["unauthorized"],
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "RequestTimeout": _error(
        "The body did not arrive within INLET_BODY_TIMEOUT seconds; nothing was queued.",
        ["request_timeout"],
    ),
    "PayloadTooLarge": _error(
        "The body is over the size limit (after decompression) or holds too many events.",
        ["payload_too_large"],
    ),
    "UnsupportedMediaType": _error(
        "A Content-Encoding other than gzip/deflate/identity, or (batch endpoint only) "
        "a Content-Type other than JSON.",
        ["unsupported_media_type"],
    ),
    "TooManyRequests": _error(
        "Over the partner's rate limit, or too many failed logins from this address.",
        ["rate_limited", "too_many_failed_logins"],
        {"Retry-After": _RETRY_AFTER},
    ),
    "Unavailable": _error(
        "The queue or the credential store is unavailable; nothing was queued.",
        ["unavailable"],
        {"Retry-After": _RETRY_AFTER},
    ),
    **THRAD_RESPONSES,
}


def error_responses(*statuses: str) -> dict[str, JsonSchema]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "408": "RequestTimeout",
        "413": "PayloadTooLarge",
        "415": "UnsupportedMediaType",
        "429": "TooManyRequests",
        "503": "Unavailable",
    }
    return {status: {"$ref": f"#/components/responses/{names[status]}"} for status in statuses}


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
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/OnsideBatch"}}
            },
        },
        "responses": {
            "204": {"description": "The whole batch is durably queued and will land."},
            **error_responses("400", "401", "408", "413", "415", "429", "503"),
        },
    }
}

PATHS: dict[str, JsonSchema] = {
    "/attribution-api/v1/events": ONSIDE_EVENTS,
    **THRAD_PATHS,
}


def document() -> JsonSchema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Inlet",
            "version": "1",
            "description": (
                "Server-to-server event ingestion, compatible with Onside's batch API "
                "and Thrad's Events API."
            ),
        },
        "paths": PATHS,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": SCHEMAS,
            "responses": RESPONSES,
        },
    }


_DOCUMENT: bytes | None = None


async def serve(request: Request) -> Response:
    """``GET /openapi.json``: the document, built once per process."""
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = orjson.dumps(document())
    return Response(_DOCUMENT, media_type="application/json")
