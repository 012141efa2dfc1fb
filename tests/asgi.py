"""Driving the ASGI app by hand, for what a test client cannot do: send part of
a body and then stall, or hang up mid-upload, or take a chosen way into the
app (tests/test_hotpath.py, bench/webcpu.py)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import anyio
import httpx2 as httpx
from starlette.types import Message

STALL, DISCONNECT = "stall", "disconnect"


def http_scope(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    query: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    """The scope a server gives an HTTP request (``headers`` as sent, lowercase)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "server": ("testserver", 80),
        "client": client,
        "headers": headers,
    }


async def post_without_finishing(
    app: Any,
    path: str,
    headers: dict[str, str],
    then: str = STALL,
    first: bytes = b'{"event_name"',
) -> httpx.Response:
    """POST straight to the ASGI app, sending ``first`` as the start of a body,
    then nothing more (``STALL``) or a disconnect (``DISCONNECT``)."""
    sent: list[Message] = []
    chunks: list[Message] = [{"type": "http.request", "body": first, "more_body": True}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop()
        if then == DISCONNECT:
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = http_scope("POST", path, [(k.lower().encode(), v.encode()) for k, v in headers.items()])
    scope["app"] = app
    started = time.perf_counter()
    with anyio.fail_after(10):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response = httpx.Response(
        start["status"],
        headers=[(k.decode(), v.decode()) for k, v in start["headers"]],
        content=body,
        request=httpx.Request("POST", f"http://testserver{path}", headers=headers),
    )
    response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
    return response
