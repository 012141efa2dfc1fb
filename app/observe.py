"""The one middleware around every request: its id, its log line, its metrics
and the per-partner counts, recorded once the response is sent.

What a request did is read from its ``RequestContext`` (app/request/context.py),
where the endpoint, the admin check and the error handler left it: never from
the body, so no payload or secret can end up in a metric.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.ops import metrics, refusals, stats
from app.request.client import client_address, forwarded_for
from app.request.context import SCOPE_KEY, RequestContext
from app.request.jsonchecks import count_containers
from app.settings import Settings
from app.thrad.validate import MAX_EVENT_CONTAINERS, derive_tag_id

log = logging.getLogger("inlet.observe")
access_log = logging.getLogger("inlet.access")


class IngestRoute(Route):
    """A route that takes partners' events (POST only). Its accepted events and
    refused requests are counted per partner, under ``counts_as`` (the metrics'
    ``endpoint`` label): an ingest endpoint is declared once, in the route table.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], *, counts_as: str) -> None:
        super().__init__(path, endpoint, methods=["POST"])
        self.counts_as = counts_as


class ObserveRequests:
    """Gives each request an id (sent back as X-Request-ID), then writes one
    JSON log line (id, route, partner, events, status, duration: never
    secrets, never payloads), counts it by route and status, and counts
    accepted and refused events.

    It also answers what no error handler did, with a 500: here, inside the
    request's observation, the 500 carries X-Request-ID and its traceback is
    logged once, under the request's id. (Starlette's ServerErrorMiddleware
    sits outside every middleware, and re-raises for the server to log again.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        context = RequestContext(uuid.uuid4().hex)
        scope[SCOPE_KEY] = context
        request_id_header = (b"x-request-id", context.request_id.encode())
        status = 0  # no response started yet

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            response = errors.unexpected(scope["method"], scope["path"], context.request_id)
            # Not re-raised: the server would log the traceback a second time.
            # Once a response has started there is no answering: returning
            # without finishing it makes the server close the connection.
            if not status:
                await response(scope, receive, send_and_note)
        finally:
            status = status or 500
            seconds = time.perf_counter() - started
            if access_log.isEnabledFor(logging.INFO):
                line: dict[str, Any] = {
                    "request_id": context.request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "partner": context.partner,
                    "events": context.events,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                }
                if context.admin is not None:
                    line["admin"] = context.admin
                if context.dry_run:
                    line["dry_run"] = True
                access_log.info(orjson.dumps(line).decode())
            await self._record(scope, context, status, seconds)

    async def _record(
        self, scope: Scope, context: RequestContext, status: int, seconds: float
    ) -> None:
        m = metrics.get()
        route = scope.get("route")
        # The route's template (bounded cardinality), never the raw path.
        path = getattr(route, "path", None)
        label = str(path) if path else "(unmatched)"
        _child(m.requests, (label, scope["method"], str(status))).inc()
        _child(m.request_seconds, (label,)).observe(seconds)
        if not isinstance(route, IngestRoute):
            return
        partner = context.partner
        if 200 <= status < 300:
            if context.dry_run:
                return  # validated only: nothing was accepted
            # The endpoint added the per-partner count in the transaction that
            # queued the job (app/queue.py): only Prometheus is left to count.
            _child(m.events_accepted, (partner or stats.UNKNOWN_PARTNER, route.counts_as)).inc(
                context.events or 0
            )
            return
        reason = context.error_code or f"http_{status}"
        m.batches_rejected.labels(partner or stats.UNKNOWN_PARTNER, reason).inc()
        state = getattr(scope["app"].state, "inlet", None)
        # "unavailable" means Redis just failed this request: don't wait on it again.
        if state is None or reason == "unavailable":
            return
        try:
            # With the other refusals of the moment: one thread hop and one
            # round trip for them all (app/groupcommit.py).
            await state.refusal_writes.submit(
                Refused(scope, context, route.counts_as, status, reason)
            )
        except Exception:  # counts are best effort; the response is already sent
            log.debug("stats not recorded", exc_info=True)


@functools.lru_cache(maxsize=4096)
def _child(metric: Any, labels: tuple[str, ...]) -> Any:
    """``metric.labels(*labels)``, remembered: prometheus-client validates and
    locks on every call, three times a request on the hot routes. The same
    child comes back either way (it lives in the metric as long as the metric)."""
    return metric.labels(*labels)


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused ingest request, as ``write_refusals`` counts and logs it."""

    scope: Scope
    context: RequestContext
    endpoint: str  # the route's ``counts_as``
    status: int
    reason: str  # the error code, or http_<status>


def write_refusals(redis: Redis, settings: Settings, refused: Sequence[Refused]) -> list[None]:
    """Count refused requests, and keep each 4xx in the refusal log: one round trip.

    Runs in a worker thread once the responses are sent (a ``Coalescer``
    gathers the refusals of the moment), so parsing bodies for their event
    ids (up to a megabyte each) and the write cost no client a wait; a Redis
    error loses these entries and counts, nothing else.
    """
    pipe = redis.pipeline(transaction=False)
    counts: Counter[tuple[str | None, str]] = Counter()
    entries: list[tuple[str | None, dict[str, str]]] = []
    for one in refused:
        counts[one.context.partner, one.reason] += 1
        if 400 <= one.status < 500 and settings.refusal_log:
            try:
                entries.append((one.context.partner, refusal_entry(settings, one)))
            except Exception:  # one odd body must not lose the others' entries
                log.warning("refusal entry not built", exc_info=True)
    for (partner, reason), amount in counts.items():
        stats.add(pipe, partner, stats.REJECTED, amount, reason)
    refusals.add_many(pipe, settings, entries)
    try:
        pipe.execute()
    except RedisError as exc:
        log.debug("%d refusals not recorded: %s", len(refused), type(exc).__name__)
    return [None] * len(refused)


def refusal_entry(settings: Settings, refused: Refused) -> dict[str, str]:
    """The refusal log's entry for one refused request (app/ops/refusals.py)."""
    context = refused.context
    headers = Headers(scope=refused.scope)
    peer = refused.scope.get("client")
    client = client_address(
        peer[0] if peer else None, forwarded_for(headers), settings.trusted_proxies
    )
    partner = context.partner
    events: list[refusals.EventRef] = []
    excerpt = ""
    body = context.body
    # Anyone can be refused without credentials: only an authenticated
    # partner's body is looked at. A body over its endpoint's cap on JSON
    # objects and arrays is never parsed (that cap is what keeps a hostile
    # body's parse from costing the process hundreds of milliseconds).
    onside = refused.endpoint == "onside"
    limit = settings.max_json_containers if onside else MAX_EVENT_CONTAINERS
    if partner is not None and body is not None:
        excerpt = refusals.redacted_excerpt(body)
    if partner is not None and body is not None and count_containers(body) <= limit:
        if onside:
            events = refusals.onside_events(body)
        else:
            events = refusals.thrad_events(body, lambda event: derive_tag_id(event, headers))
    return refusals.entry_for(
        request_id=context.request_id,
        endpoint=refused.endpoint,
        status=refused.status,
        code=refused.reason,
        message=context.error_message or "",
        errors=context.errors,
        client=client,
        events=events,
        excerpt=excerpt,
    )
