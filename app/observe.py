"""The one middleware around every request: its id, its log line, its metrics
and the per-partner counts, recorded once the response is sent.

What a request did is read from the scope, where the endpoint and the error
handler left it (``inlet.partner``, ``inlet.events``, ``inlet.error_code``,
``inlet.counted`` when the endpoint already counted its events in Redis):
never from the body, so no payload or secret can end up in a metric.
"""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ops import metrics, stats

log = logging.getLogger("inlet.observe")
access_log = logging.getLogger("inlet.access")

# Routes that take events, and the name their counts go under. An ingest
# endpoint added later adds its path here.
INGEST_ROUTES = {
    "/attribution-api/v1/events": "onside",
    "/v1/api/collect": "thrad",
    "/api/collect": "thrad",
}


def route_of(scope: Scope) -> str:
    """The route's template (bounded cardinality), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "(unmatched)"


class ObserveRequests:
    """Gives each request an id (sent back as X-Request-ID), then writes one
    JSON log line (id, route, partner, events, status, duration: never
    secrets, never payloads), counts it by route and status, and counts
    accepted and refused events."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        scope["inlet.request_id"] = request_id
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    orjson.dumps(
                        {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"],
                            "partner": scope.get("inlet.partner"),
                            "events": scope.get("inlet.events"),
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                        }
                    ).decode()
                )
            await self._record(scope, status, seconds)

    async def _record(self, scope: Scope, status: int, seconds: float) -> None:
        m = metrics.get()
        route = route_of(scope)
        m.requests.labels(route, scope["method"], str(status)).inc()
        m.request_seconds.labels(route).observe(seconds)
        endpoint = INGEST_ROUTES.get(route)
        if endpoint is None:
            return
        partner = scope.get("inlet.partner")
        state = getattr(scope["app"].state, "inlet", None)
        if 200 <= status < 300:
            events = int(scope.get("inlet.events") or 0)
            m.events_accepted.labels(partner or "(unknown)", endpoint).inc(events)
            if scope.get("inlet.counted"):
                return  # counted in the transaction that queued the job
            kind, amount, reason = stats.ACCEPTED, events, ""
        else:
            reason = scope.get("inlet.error_code") or f"http_{status}"
            m.batches_rejected.labels(partner or "(unknown)", reason).inc()
            kind, amount = stats.REJECTED, 1
        # "unavailable" means Redis just failed this request: don't wait on it again.
        if state is not None and reason != "unavailable":
            try:
                await run_in_threadpool(stats.record, state.redis, partner, kind, amount, reason)
            except Exception:  # counts are best effort; the response is already sent
                log.debug("stats not recorded", exc_info=True)
