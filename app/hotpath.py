"""The two ingest routes, dispatched ahead of Starlette's middleware and router.

A partner's request to an ingest endpoint is the one thing Inlet does
thousands of times a second, one event each for Thrad. Starlette's way to
its endpoint passes through its error middleware, its exception middleware,
the router's scan of the route table and the route's request wrapper: each
a layer of coroutine and closure, together a measurable share of a
single-event request's CPU (bench/README.md). ``InletApp`` sends a ``POST``
to one of those exact paths straight to ``ObserveRequests`` around a
``LeanRoute``, which does what those layers would for such a request:

- ``scope`` gets the route and endpoint, as the router would put them there
  (the metrics read the route's template from it);
- the endpoint gets a ``Request``;
- an exception is answered by the app's own handler for its type (the same
  lookup Starlette makes, along the exception's MRO), else left to
  ``ObserveRequests``, which answers every unhandled error with a 500.

Everything else (other methods and paths, a trailing slash, a ``root_path``,
the lifespan) takes Starlette's path, unchanged. tests/test_hotpath.py sends
the same requests both ways and compares the answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.observe import IngestRoute, ObserveRequests


class LeanRoute:
    """One ingest route as a plain ASGI app: its endpoint, and the app's
    exception handlers for what the endpoint raises."""

    def __init__(self, route: IngestRoute, handlers: Mapping[Any, Callable[..., Any]]) -> None:
        self.route = route
        self.endpoint = route.endpoint
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response: Response = await self.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
            # As Starlette does: a reused exception would grow its traceback.
            exc.__traceback__ = None
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[..., Any] | None:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None


class InletApp(Starlette):
    """Starlette, with its ingest routes also reachable the lean way (above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean: dict[str, ASGIApp] = {}

    def route_lean(self, route: IngestRoute) -> None:
        """Answer ``POST route.path`` through ``LeanRoute``, observed as any request."""
        self.lean[route.path] = ObserveRequests(LeanRoute(route, self.exception_handlers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            lean = self.lean.get(scope["path"])
            if lean is not None:
                scope["app"] = self
                await lean(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
