"""The floors the ingest benchmark compares Inlet with, as ASGI app factories.

- the HTTP floor reads the body and answers 204: what uvicorn and Starlette
  cost on their own;
- the work floor also parses the body with ``orjson.loads`` and pushes the
  raw bytes to Redis with one ``LPUSH``: the least work any correct design
  must do before a 204. It talks to Redis the way Inlet does (the same
  client, the same timeout, from the thread pool).

Both run under ``bench.serve`` with exactly the options of ``inlet web``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.queue import make_redis

FLOOR_LIST = "bench:floor"


async def _ok(request: Request) -> Response:
    return Response(status_code=204)


def http_floor() -> Starlette:
    async def post(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/healthz", _ok, methods=["GET"]),
            Route("/{path:path}", post, methods=["POST"]),
        ]
    )


def work_floor() -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = make_redis(os.environ["REDIS_URL"], timeout=2)
        try:
            yield
        finally:
            app.state.redis.close()

    async def post(request: Request) -> Response:
        body = await request.body()
        orjson.loads(body)
        await run_in_threadpool(request.app.state.redis.lpush, FLOOR_LIST, body)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/healthz", _ok, methods=["GET"]),
            Route("/{path:path}", post, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def inlet_without_refusal_log() -> Starlette:
    """Inlet itself with the refusal log turned off: what the log costs a 4xx."""
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings.from_env().replace(refusal_log=False))
