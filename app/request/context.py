"""What a request learned on its way through: who sent it, how many events it
carried, why it was refused. ObserveRequests makes one per request and reads
it once the response is sent, for the request's log line and its metrics.

Endpoints, the error handler and the admin check fill it in through
``request_context(request)``. Only names, counts and error codes go to the
metrics and the log line, never the body, so no payload or secret can end up
in either. A refused ingest request's body and errors are kept here too, for
the refusal log alone (app/ops/refusals.py), which keeps only ids and a
redacted excerpt of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

# The one scope key: everything else travels as typed attributes.
SCOPE_KEY = "inlet.context"


@dataclass(slots=True)
class RequestContext:
    request_id: str  # sent back as X-Request-ID
    partner: str | None = None  # the authenticated partner's name
    events: int | None = None  # events in a body that passed validation
    error_code: str | None = None  # the ApiError code the request was refused with
    admin: str | None = None  # the authenticated admin's username
    # For the refusal log only (never logged): the refusal's message and
    # error entries, and the body as read, when it was read.
    error_message: str | None = None
    errors: list[dict[str, Any]] | None = None
    body: bytes | None = None
    dry_run: bool = False  # ?dry_run=true: validated, nothing queued or counted as accepted


def request_context(request: Request) -> RequestContext:
    """This request's context, made by ObserveRequests before anything else ran."""
    context: RequestContext = request.scope[SCOPE_KEY]
    return context
