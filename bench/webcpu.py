"""The web process's CPU per request, in-process: Starlette's way against the lean way.

``python -m bench.webcpu [--requests N] [--profile]`` starts the bench's
services, builds the app, runs its lifespan, and sends single-event requests
(Thrad's ``POST /v1/api/collect`` and one-event Onside batches) straight to
the ASGI callable from 16 concurrent tasks, alternating rounds through
Starlette's middleware and router (``Starlette.__call__``) and through the
lean dispatch of app/hotpath.py. It prints the process CPU time per request
of each (the Redis client's thread included; Redis and PostgreSQL are other
processes), so the two are compared in one run, on one machine state.

No socket and no HTTP parser: what is measured is the app's own cost, the
share routing can change. ``--profile`` writes a cProfile of the lean way.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette

from app.main import create_app
from bench.services import stack
from bench.workload import EVENT_ID_MARKER, make_batches, make_thrad_events
from tests.asgi import http_scope

CONCURRENCY = 16
MARKER = EVENT_ID_MARKER.encode()
# The event loop's own thread's CPU of each round (the rest is Redis calls' threads).
LOOP_CPU: list[float] = []


async def _send_one(
    call: Callable[..., Awaitable[None]], path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> int:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: never a disconnect
        raise AssertionError("unreachable")

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = http_scope("POST", path, [*headers, (b"content-length", str(len(body)).encode())])
    await call(scope, receive, send)
    return status


async def _round(
    call: Callable[..., Awaitable[None]],
    path: str,
    headers: list[tuple[bytes, bytes]],
    bodies: list[bytes],
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to answer every body; each must get a 204."""
    queue = list(bodies)

    async def sender() -> None:
        while queue:
            body = queue.pop()
            unique = uuid.uuid4().hex.encode()
            status = await _send_one(call, path, headers, body.replace(MARKER, unique))
            assert status == 204, status

    cpu, wall, loop_cpu = time.process_time(), time.perf_counter(), time.thread_time()
    await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
    LOOP_CPU.append(time.thread_time() - loop_cpu)
    return time.process_time() - cpu, time.perf_counter() - wall


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per round")
    parser.add_argument("--rounds", type=int, default=4, help="per way and shape")
    parser.add_argument("--profile", metavar="PATH", help="cProfile of the lean way")
    args = parser.parse_args()
    with stack() as st:
        app = create_app(st.settings)
        basic = base64.b64encode(f"{st.partner.username}:{st.partner.password}".encode())
        json_type = (b"content-type", b"application/json")
        shapes = {
            "thrad": (
                "/v1/api/collect",
                [json_type, (b"authorization", f"Bearer {st.api_key}".encode())],
                make_thrad_events(args.requests, seed=2),
            ),
            "onside1": (
                "/attribution-api/v1/events",
                [json_type, (b"authorization", b"Basic " + basic)],
                make_batches(args.requests, seed=3, size=1),
            ),
        }

        def starlette_way(scope: Any, receive: Any, send: Any) -> Awaitable[None]:
            scope["app"] = app
            return Starlette.__call__(app, scope, receive, send)

        ways: dict[str, Callable[..., Awaitable[None]]] = {"starlette": starlette_way, "lean": app}

        async def run() -> None:
            async with app.router.lifespan_context(app):
                for name, (path, headers, bodies) in shapes.items():
                    await _round(app, path, headers, bodies[:500])  # warm caches
                    cpu: dict[str, list[float]] = {way: [] for way in ways}
                    loop_cpu: dict[str, list[float]] = {way: [] for way in ways}
                    for _ in range(args.rounds):
                        for way, call in ways.items():
                            used, _wall = await _round(call, path, headers, bodies)
                            cpu[way].append(used / len(bodies) * 1e6)
                            loop_cpu[way].append(LOOP_CPU[-1] / len(bodies) * 1e6)
                    for way, per in cpu.items():
                        print(
                            f"{name:8} {way:10} CPU µs a request: process {_median(per):.0f},"
                            f" event loop's thread {_median(loop_cpu[way]):.0f}; rounds"
                            f" {', '.join(f'{v:.0f}' for v in per)}"
                        )
                if args.profile:
                    path, headers, bodies = shapes["thrad"]
                    profile = cProfile.Profile(time.thread_time)
                    profile.enable()
                    await _round(app, path, headers, bodies)
                    profile.disable()
                    profile.dump_stats(args.profile)
                    pstats.Stats(profile).sort_stats("tottime").print_stats(25)

        asyncio.run(run())


if __name__ == "__main__":
    main()
