"""Slow clients against a live ``inlet web``: trickled bodies get 408, idle keep-alive
connections are closed, and a normal client is answered promptly all along."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest

from app.credentials.partners import NewPartner
from app.settings import Settings
from tests.api import basic_auth, read_response
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.processes import WebProcess, process_env

BODY_TIMEOUT = 2
KEEP_ALIVE = 1
TRICKLERS = 20


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[WebProcess]:
    env = process_env(
        settings, INLET_BODY_TIMEOUT=str(BODY_TIMEOUT), INLET_KEEP_ALIVE_TIMEOUT=str(KEEP_ALIVE)
    )
    process = WebProcess(env, tmp_path / "web.log")
    try:
        yield process
    finally:
        process.stop()


def read_one_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response (head, body), read to its end and no further.

    A response may come in any number of segments (on a busy machine the
    body often follows the head in a second one): read the head up to its
    blank line, then exactly Content-Length bytes of body.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-head: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lengths = [
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    ]
    assert len(lengths) == 1, f"expected one Content-Length: {head!r}"
    while len(body) < lengths[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-body: {body!r}")
        body += chunk
    assert len(body) == lengths[0], f"more than one response: {body!r}"
    return head, body


def test_a_response_split_across_segments_is_read_whole() -> None:
    """What a loaded machine does to a small response: head now, body a moment later."""
    ours, theirs = socket.socketpair()
    body = b'{"status":"ok"}'

    def respond() -> None:
        theirs.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        time.sleep(0.2)
        theirs.sendall(body)

    sender = threading.Thread(target=respond)
    with ours, theirs:
        sender.start()
        head, got = read_one_response(ours)
        sender.join()
    assert head.startswith(b"HTTP/1.1 200") and got == body


class Trickler(threading.Thread):
    """Sends valid headers, then one byte of its body every 200 ms, for ever."""

    def __init__(self, port: int, partner: NewPartner) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.partner = partner
        self.response = b""
        self.elapsed = 0.0
        self.stop = threading.Event()
        self.uploading = threading.Event()

    def answered(self) -> bool:
        """Whether the server has sent something (or closed), without waiting or reading it."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.setblocking(True)
        return True

    def run(self) -> None:
        body = orjson.dumps({"events": [onside_event(99)]})
        started = time.monotonic()
        self.sock.sendall(
            f"POST {URL} HTTP/1.1\r\nHost: inlet\r\nContent-Type: application/json\r\n"
            f"Authorization: {basic_auth(self.partner)['Authorization']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        # Drip until the server answers (or the test ends); never finish the body.
        # The server gives up while bytes of ours are still arriving: unless it
        # closes gently (app/request/head.py, _LingeringClose), its kernel
        # answers them with a reset, which discards the 408 on this side
        # before it is read (this loop, looking before each byte, met that
        # every time without the gentle close).
        for byte in body[:-1]:
            if self.stop.wait(0.2) or self.answered():
                break
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                break  # the server gave up on us: expected
            self.uploading.set()
        self.response = read_response(self.sock)
        self.elapsed = time.monotonic() - started
        self.sock.close()


# The live process needs a database; one kind is enough here.
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgresql_only
def test_trickled_bodies_get_408_while_a_normal_client_gets_204(
    web: WebProcess, partner: NewPartner
) -> None:
    tricklers = [Trickler(web.port, partner) for _ in range(TRICKLERS)]
    for trickler in tricklers:
        trickler.start()
    try:
        for trickler in tricklers:
            assert trickler.uploading.wait(10)
        auth = basic_auth(partner)
        with httpx.Client(base_url=web.url, timeout=10) as normal:
            latencies = []
            for n in range(5):
                started = time.monotonic()
                response = normal.post(URL, json={"events": [onside_event(n)]}, headers=auth)
                latencies.append(time.monotonic() - started)
                assert response.status_code == 204, response.text
        # Prompt: nowhere near the body deadline the tricklers are held to.
        assert max(latencies) < 1.0, latencies
        print(
            f"normal client under {TRICKLERS} tricklers: {[round(x * 1000) for x in latencies]} ms"
        )
        for trickler in tricklers:
            trickler.join(timeout=BODY_TIMEOUT + 10)
            assert not trickler.is_alive()
            status_line = trickler.response.split(b"\r\n", 1)[0]
            assert status_line == b"HTTP/1.1 408 Request Timeout", trickler.response[:200]
            assert b'"code":"request_timeout"' in trickler.response
            assert BODY_TIMEOUT - 0.5 < trickler.elapsed < BODY_TIMEOUT + 5, trickler.elapsed
        # The live process's own log saw 25 requests with credentials: none of it leaks.
        log = web.log()
        token = auth["Authorization"].removeprefix("Basic ")
        assert partner.password not in log and token not in log
        print(
            f"tricklers cut off after {min(t.elapsed for t in tricklers):.2f}"
            f"-{max(t.elapsed for t in tricklers):.2f} s"
        )
    finally:
        for trickler in tricklers:
            trickler.stop.set()


@postgresql_only
def test_idle_keep_alive_connection_is_closed(web: WebProcess) -> None:
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: inlet\r\n\r\n")
        head, body = read_one_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and body == b'{"status":"ok"}'
        idle_from = time.monotonic()
        rest = read_response(sock)  # returns when the server closes the connection
        idle = time.monotonic() - idle_from
    assert rest == b""
    assert KEEP_ALIVE - 0.5 < idle < KEEP_ALIVE + 5, idle
