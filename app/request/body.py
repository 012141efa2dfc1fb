"""Reading a request body within a size limit, gzip included.

The limit holds before anything is buffered past it: a declared
Content-Length over the limit is refused unread, a chunked body is counted
as it streams, and a gzip body is inflated at most one byte past the limit,
so a small gzip bomb costs a bounded amount of memory and gets a 413.

The whole body must arrive within a deadline: a client that trickles its
upload a byte at a time gets 408 instead of holding a request open forever
(the event loop is never blocked by it, but its memory and its slot are).
"""

from __future__ import annotations

import asyncio
import zlib

from starlette.requests import ClientDisconnect, Request

from app.errors import InvalidRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

_JSON_TYPES = ("application/json", "text/json")

# The first two bytes of every gzip member (RFC 1952, 2.3.1).
_GZIP_MAGIC = b"\x1f\x8b"


def check_content_type(request: Request) -> None:
    """JSON or unspecified; anything else is a client mistake worth naming."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _JSON_TYPES or media_type.endswith("+json"):
        return
    raise UnsupportedMediaType(
        f"Content-Type must be application/json, not {media_type or '(empty)'}"
    )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The decoded body, at most ``limit`` bytes, within ``timeout`` seconds, or a 4xx.

    ``timeout`` has no default: every body a client sends is held to
    INLET_BODY_TIMEOUT (``settings.body_timeout``), admin forms included.

    Raises ``ClientDisconnect`` if the client goes away mid-upload; the caller
    queues nothing then.
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_length = int(declared)
        except ValueError:
            raise InvalidRequest("Content-Length is not a number") from None
        if declared_length > limit:
            raise _too_large(limit)

    chunks: list[bytes] = []
    received = 0
    # asyncio's own timeout: anyio's cancel scope did the same at several
    # times the cost, on every request of the hot routes (bench/README.md).
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        # The rest of the body is never read: the server closes the connection.
        raise RequestTimeout(
            f"The request body did not arrive within {timeout:g} seconds; nothing was accepted",
            headers={"Connection": "close"},
        ) from None
    raw = b"".join(chunks)
    if encoding in ("gzip", "x-gzip"):
        return _inflate(raw, limit, wbits=31)
    if encoding == "deflate":
        return _inflate(raw, limit, wbits=15)
    if raw.startswith(_GZIP_MAGIC):
        # No JSON (nor form) body starts with these bytes; without this the
        # client would be told its body is not valid UTF-8, which is true
        # and useless.
        raise InvalidRequest(
            "The body is not JSON: this looks gzip-compressed: send Content-Encoding: gzip"
        )
    return raw


def _inflate(data: bytes, limit: int, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
        out += inflater.flush()
    except zlib.error as exc:
        raise InvalidRequest(f"The body is not valid compressed data: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit)
    if not inflater.eof:
        raise InvalidRequest("The compressed body is truncated")
    if inflater.unused_data:
        # zlib stops at the end of the first gzip member (or zlib stream) and
        # leaves the rest aside: a second member, or junk. Accepting the
        # first part alone would drop the rest of what the client sent
        # while answering that all of it was accepted.
        raise InvalidRequest(
            f"The body has {len(inflater.unused_data)} bytes after the end of the "
            "compressed data (a second gzip member, or junk); send one compressed stream"
        )
    return out


__all__ = ["ClientDisconnect", "check_content_type", "read_body"]
