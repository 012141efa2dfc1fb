"""The error hierarchy and the one place that renders it.

Every error response has the same JSON shape::

    {"error": "<one human sentence>", "code": "<machine code>", "errors": [...]}

``errors`` appears only on validation failures and lists each problem as
``{"index": i, "field": "...", "message": "..."}``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.request.context import request_context

log = logging.getLogger("inlet.errors")
access_log = logging.getLogger("inlet.access")  # the same logger as ObserveRequests


class ConfigError(Exception):
    """A setting is missing or invalid; raised at start-up."""


class ApiError(Exception):
    status = 400
    code = "bad_request"
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.errors = errors
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class InvalidRequest(ApiError):
    status, code, message = 400, "invalid_request", "The request is invalid"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Authentication required"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not found"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method not allowed"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "The request body is too large"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests"


class TooManyFailedLogins(RateLimited):
    code, message = "too_many_failed_logins", "Too many failed authentications from this address"


class RequestTimeout(ApiError):
    status, code, message = 408, "request_timeout", "The request body took too long to arrive"


class ServiceUnavailable(ApiError):
    status, code, message = 503, "unavailable", "The service is temporarily unavailable"


class NotReady(ApiError):
    """``/readyz``: a dependency does not answer; ``errors`` names each."""

    status, code, message = 503, "not_ready", "Not ready"


class ClientDisconnected(ApiError):
    """The client went away mid-upload. Nobody reads the answer; the code is for
    the request's log line and metrics."""

    status, code, message = 400, "client_disconnected", "Client disconnected"


class InternalError(ApiError):
    """Anything no handler expected. The body is always this one: it leaks nothing."""

    status, code, message = 500, "internal_error", "Internal server error"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def render(exc: ApiError) -> Response:
    return json_response(exc.status, exc.body(), exc.headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    # For the request metrics (the code) and the refusal log (all three).
    context = request_context(request)
    context.error_code = exc.code
    context.error_message = exc.message
    context.errors = exc.errors
    return render(exc)


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    # The client went away mid-upload; nothing was queued.
    access_log.info("client disconnected during upload on %s", request.url.path)
    return await handle_api_error(request, ClientDisconnected())


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path or method) in our shape.

    No error code is recorded for these: their requests are counted under
    ``http_<status>``, as they always were.
    """
    assert isinstance(exc, HTTPException)
    mapping: dict[int, type[ApiError]] = {404: NotFound, 405: MethodNotAllowed}
    cls = mapping.get(exc.status_code)
    if cls is not None:
        return render(cls(headers=dict(exc.headers or {})))
    error = ApiError(str(exc.detail), headers=dict(exc.headers or {}))
    error.status = exc.status_code
    return render(error)


def unexpected(method: str, path: str, request_id: str) -> Response:
    """The 500 for an exception no handler took; call it from the ``except`` block.

    The traceback goes to the log once, under the request's id; the client
    gets a body that leaks nothing. Like a 404 or a 405, it is counted under
    ``http_500``, as it always was.
    """
    log.exception("unhandled error on %s %s (request %s)", method, path, request_id)
    return render(InternalError())


class RequestHeadTooLarge(ApiError):
    status, code, message = 431, "request_head_too_large", "The request's headers are too large"


class RequestHeadTimeout(ApiError):
    status, code, message = 408, "request_head_timeout", "The request's headers took too long"


class TooManyJsonContainers(PayloadTooLarge):
    code = "too_many_json_containers"
    message = "The body holds too many JSON objects and arrays"
