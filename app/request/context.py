"""What a request learned on its way through: who sent it, how many events it
carried, why it was refused. ObserveRequests makes one per request and reads
it once the response is sent, for the request's log line and its metrics.

Endpoints, the error handler and the admin check fill it in through
``request_context(request)``. Only names, counts and error codes go in, never
the body, so no payload or secret can end up in a metric or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    dry_run: bool = False  # ?dry_run=true: validated, nothing queued or counted as accepted


def request_context(request: Request) -> RequestContext:
    """This request's context, made by ObserveRequests before anything else ran."""
    context: RequestContext = request.scope[SCOPE_KEY]
    return context
