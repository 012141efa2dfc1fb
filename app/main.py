"""The web application factory. ``inlet web`` serves ``create_app`` through uvicorn."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import admin, errors, health, metrics, onside, openapi, thrad
from app.observe import ObserveRequests
from app.settings import Settings
from app.state import AppState

access_log = logging.getLogger("inlet.access")


async def healthz(request: Request) -> Response:
    return errors.json_response(200, {"status": "ok"})


async def client_gone(request: Request, exc: Exception) -> Response:
    # The client went away mid-upload; nothing was queued and nobody reads this.
    access_log.info("client disconnected during upload on %s", request.url.path)
    return errors.json_response(
        400, {"error": "Client disconnected", "code": "client_disconnected"}
    )


class RequestLog:
    """One JSON line per request: id, route, partner, events, status, duration.

    Never secrets, never payloads: only what the endpoint put in the scope.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
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
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        }
                    ).decode()
                )


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; tests pass explicit settings instead of patching the environment."""
    settings = settings or Settings.from_env()
    metrics.configure(settings.metrics_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = AppState.open(settings)
        app.state.inlet = state
        try:
            yield
        finally:
            state.close()

    app = Starlette(
        routes=[
            Route("/attribution-api/v1/events", onside.post_events, methods=["POST"]),
            Route("/v1/api/collect", thrad.collect, methods=["POST"]),
            Route("/api/collect", thrad.collect, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", health.readyz, methods=["GET"]),
            Route("/openapi.json", openapi.serve, methods=["GET"]),
            *admin.routes,
        ],
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            HTTPException: errors.handle_http_exception,
            ClientDisconnect: client_gone,
            Exception: errors.handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.add_middleware(ObserveRequests)
    app.add_middleware(RequestLog)
    return app
