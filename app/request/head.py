"""The request head, bounded in size, header count and time, before httptools parses it.

httptools sets no limit on a request head, and it assembles a header value
by concatenating each received piece onto the last, so one client streaming
``X-A: AAAA...`` costs the event loop time that grows with the square of
what it sent: 150 MB stalled every other client for over 17 s. uvicorn's
other parser, h11, has a limit but is pure Python and slower on every
request; this subclass keeps httptools and counts the bytes it feeds it
while a head is being read (one addition per received chunk), and the
headers once parsed. Past a limit the client gets 431; a head that
takes longer than its deadline gets 408 (uvicorn has no deadline for a
head: a connection that never finishes one would be held forever).

The refusal is written straight to the socket, in the error shape of every
other refusal: no ASGI request exists yet. After it the connection is
closed, gently: the server stops reading, says it is done, and discards
what the client had already sent for a moment, so that a client which is
still sending reads the 431 rather than a connection reset.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.errors import ApiError, RequestHeadTimeout, RequestHeadTooLarge
from app.settings import Settings

# How long, and how much, a refused connection is still read (and discarded)
# so that its client gets to read the refusal before the connection closes.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request head.

    Made through ``functools.partial`` with the three limits (``head_protocol``),
    since uvicorn constructs the protocol itself.
    """

    def __init__(
        self, *args: Any, max_head_bytes: int, max_headers: int, head_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes = max_head_bytes
        self._max_headers = max_headers
        self._head_timeout = head_timeout
        self._reading_head = True
        self._head_bytes = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        self._refusal: ApiError | None = None
        self._discarded = 0
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringClose(transport, self))  # type: ignore[arg-type]
        # uvicorn arms no timer before the first request: a client that
        # connects and stays silent is held to the head deadline too.
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self._lingering:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if not self._reading_head:
            super().data_received(data)
            return
        if self._head_deadline is None:
            self._arm_head_deadline()
        room = self._max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # The head may end inside this chunk, and a body follow it: feed what
        # the head may still take; if it is still unfinished then, refuse.
        self._head_bytes += room
        super().data_received(data[:room])
        if self._refusal is not None or self.transport.is_closing():
            return
        if self._reading_head:
            self._refuse(
                RequestHeadTooLarge(
                    f"The request head (request line and headers) is larger than "
                    f"{self._max_head_bytes} bytes"
                )
            )
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_deadline()
        # Counted once the head is whole (its size already bounds how many
        # there can be), not per header: that would cost on every request.
        if len(self.headers) > self._max_headers:
            self._refusal = RequestHeadTooLarge(
                f"The request has more than {self._max_headers} header lines"
            )
            # An exception in a callback stops the parser; uvicorn then calls
            # send_400_response, which answers with this refusal instead.
            raise self._refusal
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes on this connection, if any, start the next head.
        self._reading_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            self._refuse(refusal)
            return
        super().send_400_response(msg)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self._head_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head stalled behind a response still being sent:
            # finish that response, then close.
            self.cycle.keep_alive = False
            return
        self._refuse(
            RequestHeadTimeout(
                f"The request head did not arrive within {self._head_timeout:g} seconds"
            )
        )

    def _refuse(self, error: ApiError) -> None:
        self._refusal = error
        self._cancel_head_deadline()
        body = orjson.dumps(error.body())
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self._linger(self.transport)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close gently: say the server is done, discard what the client still
        sends (``data_received``) for a moment, then close."""
        self._lingering = True
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)


class _LingeringClose:
    """The connection's transport, closing gently when its client may still be sending.

    uvicorn closes the connection after a response marked ``Connection:
    close``. If the request's body was not all read (a 408 for a body that
    trickled past its deadline, a 413 for one declared too large), the
    client is likely still sending it, and a socket closed with the
    client's bytes still arriving is answered with a reset, which can
    destroy the response on the client's side before it reads it. So, then,
    as for a refused head: the server says it is done (write_eof), discards
    what arrives for a moment (``LINGER_SECONDS``, ``LINGER_BYTES``), and
    closes. Every other close is immediate, as uvicorn does it.
    """

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHeadProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        protocol = self._protocol
        transport = self._transport
        mid_body = not protocol._reading_head and protocol._refusal is None
        if not mid_body or protocol._lingering:
            transport.close()
            return
        protocol._linger(transport)


def head_protocol(settings: Settings) -> Callable[..., BoundedHeadProtocol]:
    """The protocol factory for uvicorn's ``http=``; picklable, for WEB_CONCURRENCY > 1."""
    return functools.partial(
        BoundedHeadProtocol,
        max_head_bytes=settings.max_head_bytes,
        max_headers=settings.max_headers,
        head_timeout=settings.head_timeout,
    )
