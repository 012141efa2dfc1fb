"""The web application factory. ``inlet web`` serves ``create_app`` through uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from app import admin, errors, openapi
from app.hotpath import InletApp
from app.observe import IngestRoute, ObserveRequests
from app.onside import endpoint as onside
from app.ops import health, metrics
from app.request.slashes import relative_slash_redirects
from app.runtime import tuned_for_web
from app.settings import Settings
from app.state import AppState
from app.thrad import endpoint as thrad
from worker.enrich import open_geo_database


async def healthz(request: Request) -> Response:
    return errors.json_response(200, {"status": "ok"})


def create_app(settings: Settings | None = None) -> InletApp:
    """Build the app; tests pass explicit settings instead of patching the environment."""
    settings = settings or Settings.from_env()
    metrics.configure(settings.metrics_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The web tier looks geo up itself when a partner's ip_mode keeps less
        # than the full address (app/privacy.py): a database it can't read
        # stops it here, as it stops the worker, not at a partner's request.
        open_geo_database(settings.geoip_database)
        state = AppState.open(settings)
        app.state.inlet = state
        try:
            with tuned_for_web():
                yield
        finally:
            state.close()

    ingest = [
        IngestRoute("/attribution-api/v1/events", onside.post_events, counts_as="onside"),
        IngestRoute("/v1/api/collect", thrad.collect, counts_as="thrad"),
        IngestRoute("/api/collect", thrad.collect, counts_as="thrad"),
    ]
    app = InletApp(
        routes=[
            *ingest,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", health.readyz, methods=["GET"]),
            Route("/openapi.json", openapi.serve, methods=["GET"]),
            *admin.routes,
        ],
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            HTTPException: errors.handle_http_exception,
            ClientDisconnect: errors.handle_client_disconnect,
            # No catch-all here: ObserveRequests answers the 500 (see its docstring).
        },
        lifespan=lifespan,
    )
    relative_slash_redirects(app.router)
    app.add_middleware(ObserveRequests)
    # The hot routes skip Starlette's layers (app/hotpath.py); the router
    # keeps them too, for what the lean way leaves to it.
    for route in ingest:
        app.route_lean(route)
    return app
