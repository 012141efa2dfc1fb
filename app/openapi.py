"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

It describes each partner endpoint exactly (Onside's batch API in
``app/onside/openapi.py``, Thrad's Events API in ``app/thrad/openapi.py``):
what the request may hold, which credentials it takes, and every response
with its headers and the one error shape of ``app/errors.py``. The test
suite runs schemathesis against it, so the document and the code cannot
drift apart.

This module holds the shared parts (credentials, the error shape, the error
responses, JSON values) and assembles the document. A format adds its
paths, schemas and responses of its own with one entry each in ``PATHS``,
``SCHEMAS`` and ``RESPONSES`` (and, for a new kind of credential, one in
``SECURITY_SCHEMES``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.onside.openapi import ONSIDE_PATHS, ONSIDE_SCHEMAS
from app.thrad.openapi import THRAD_PATHS, THRAD_RESPONSES, THRAD_SCHEMAS

JsonSchema = dict[str, Any]

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
                "description": (
                    "The event's position in the batch, counted from 0 like the "
                    "array (the third event is 2); null for the whole body, and "
                    "always null for a Thrad event."
                ),
            },
            "field": {"type": ["string", "null"]},
            "message": {
                "type": "string",
                "description": (
                    "What is wrong, with a short excerpt of the refused value where it "
                    "helps (at most 40 characters, control characters as ?; never a "
                    'payload\'s content), e.g. `must be a UUID version 4, ..., not "not-a-uuid"`.'
                ),
            },
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
    "DryRunResult": {
        "type": "object",
        "description": "The answer to `?dry_run=true`: the request would have been accepted.",
        "required": ["valid", "events", "warnings"],
        "properties": {
            "valid": {"const": True},
            "events": {"type": "integer", "minimum": 1, "description": "Events checked."},
            "warnings": {
                "type": "array",
                "description": "What a real request would store flagged: schema violations "
                "in warn mode, unknown event names under `warn`, clamped event times.",
                "items": {"$ref": "#/components/schemas/Problem"},
            },
        },
        "additionalProperties": False,
    },
    **ONSIDE_SCHEMAS,
    **THRAD_SCHEMAS,
}

# Shared by both formats' operations (``#/components/parameters/DryRun``).
PARAMETERS: dict[str, JsonSchema] = {
    "DryRun": {
        "name": "dry_run",
        "in": "query",
        "required": False,
        "description": "`true` or `1` (in any case): authenticate, rate-limit and validate "
        "exactly as for real (schemas and clock guards included), then answer 200 with what "
        "was found; nothing is queued or stored. `false`, `0` or absent: a real request. Any "
        "other value, or the parameter twice: 400.",
        "schema": {"type": "boolean", "default": False},
    }
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
    "DryRun": {
        "description": "Dry run (`?dry_run=true`) only: the request is valid; nothing was queued.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DryRunResult"}}},
    },
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
        "The body is over the size limit (after decompression), holds too many events, "
        "or holds too many JSON objects and arrays (counted from its bytes before parsing).",
        ["payload_too_large", "too_many_json_containers"],
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


PATHS: dict[str, JsonSchema] = {
    **ONSIDE_PATHS,
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
            "parameters": PARAMETERS,
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
