"""The request head is bounded against a live ``inlet web``: in size and in header count
(431), and in time (408); a client streaming a huge header stalls nobody else."""

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
from app.settings import SETTINGS, Settings
from tests.api import basic_auth, read_response
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.latency import measure, ms, p99
from tests.processes import WebProcess, process_env

HEAD_TIMEOUT = 2
MAX_HEAD_BYTES = int(next(s.default for s in SETTINGS if s.env == "INLET_MAX_HEAD_BYTES"))
MAX_HEADERS = int(next(s.default for s in SETTINGS if s.env == "INLET_MAX_HEADERS"))
# What one attacking connection may send before giving up: the 150 MB
# stalled a neighbour for 17.7 s; 100 MiB is enough to show the stall.
ATTACK_BYTES_PER_CONNECTION = 100 * 1024 * 1024
ATTACK_CHUNK = b"A" * (1024 * 1024)

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[WebProcess]:
    # Defaults for the head limits: the test holds the documented ones.
    env = process_env(settings, INLET_HEAD_TIMEOUT=str(HEAD_TIMEOUT))
    process = WebProcess(env, tmp_path / "web.log")
    try:
        yield process
    finally:
        process.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        return read_response(sock)


def head(*lines: str) -> bytes:
    return ("GET /healthz HTTP/1.1\r\nHost: inlet\r\n" + "".join(lines) + "\r\n").encode()


def assert_refused(response: bytes, status: bytes, code: bytes) -> None:
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 " + status, response[:300]
    assert b"content-type: application/json" in rest.lower()
    body = orjson.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == code.decode() and body["error"], body


def test_a_head_within_the_limits_is_served(web: WebProcess) -> None:
    filler = "x" * (MAX_HEAD_BYTES // 2)
    lines = [f"X-Big: {filler}\r\n"] + [f"X-N{n}: {n}\r\n" for n in range(MAX_HEADERS - 4)]
    response = exchange(web.port, head(*lines, "Connection: close\r\n"))
    assert response.startswith(b"HTTP/1.1 200"), response[:300]


def test_a_head_over_the_size_limit_gets_431(web: WebProcess) -> None:
    response = exchange(web.port, head(f"X-Big: {'x' * MAX_HEAD_BYTES}\r\n"))
    assert_refused(response, b"431 Request Header Fields Too Large", b"request_head_too_large")
    assert str(MAX_HEAD_BYTES).encode() in response


def test_too_many_headers_get_431(web: WebProcess) -> None:
    lines = [f"X-N{n}: {n}\r\n" for n in range(MAX_HEADERS + 1)]
    response = exchange(web.port, head(*lines))
    assert_refused(response, b"431 Request Header Fields Too Large", b"request_head_too_large")
    assert str(MAX_HEADERS).encode() in response


def test_a_head_that_never_ends_gets_408(web: WebProcess) -> None:
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: inlet\r\nX-Slow: ")
        for _ in range(int(HEAD_TIMEOUT / 0.2) + 25):  # bounded: ~5 s past the deadline
            try:
                sock.sendall(b"a")
            except OSError:
                break  # the server gave up on us: expected
            sock.setblocking(False)
            try:
                answered = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                answered = b""
            finally:
                sock.setblocking(True)
            if answered:
                break
            time.sleep(0.2)
        response = read_response(sock)
        elapsed = time.monotonic() - started
    assert_refused(response, b"408 Request Timeout", b"request_head_timeout")
    assert HEAD_TIMEOUT - 0.5 < elapsed < HEAD_TIMEOUT + 4, elapsed


def test_a_silent_connection_is_closed_after_the_head_deadline(web: WebProcess) -> None:
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        started = time.monotonic()
        response = read_response(sock)
        elapsed = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 408") or response == b"", response[:300]
    assert HEAD_TIMEOUT - 0.5 < elapsed < HEAD_TIMEOUT + 4, elapsed


class HeaderFlood(threading.Thread):
    """Opens connections that send ``X-A: AAAA...`` without end, one after another.

    Each connection stops at ATTACK_BYTES_PER_CONNECTION (no server ever
    stopped it: the attack got through) or when the server cuts it off.
    """

    def __init__(self, port: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.connections = 0
        self.cut_off = 0  # connections the server ended before the attacker did
        self.sent = 0
        self.sending = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            self.connections += 1
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sent = 0
                try:
                    sock.sendall(b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: inlet\r\nX-A: ")
                    while sent < ATTACK_BYTES_PER_CONNECTION and time.monotonic() < self.deadline:
                        if self.stop.is_set():
                            return
                        sock.sendall(ATTACK_CHUNK)
                        sent += len(ATTACK_CHUNK)
                        self.sent += len(ATTACK_CHUNK)
                        self.sending.set()
                except OSError:
                    self.cut_off += 1  # reset or timed out by the server: it refused to read on
                    continue
                if sent < ATTACK_BYTES_PER_CONNECTION:
                    return  # out of time
                sock.settimeout(1)
                try:
                    if sock.recv(1):
                        self.cut_off += 1  # answered (431) before the attacker was done
                except OSError:
                    pass


def test_a_header_flood_does_not_stall_a_partner(web: WebProcess, partner: NewPartner) -> None:
    """A partner's p99 stays under 1 s while another client streams a huge header."""
    auth = basic_auth(partner)
    with httpx.Client(base_url=web.url, timeout=60) as neighbour:

        def post(n: int) -> None:
            response = neighbour.post(URL, json={"events": [onside_event(n)]}, headers=auth)
            assert response.status_code == 204, response.text

        baseline = measure(post, max_requests=40, max_seconds=4)
        floods = [HeaderFlood(web.port, seconds=12) for _ in range(2)]
        for flood in floods:
            flood.start()
        try:
            for flood in floods:
                assert flood.sending.wait(10)
            attacked = measure(lambda n: post(1000 + n), max_requests=40, max_seconds=8)
        finally:
            for flood in floods:
                flood.stop.set()
            for flood in floods:
                flood.join(timeout=60)
    print(f"\nneighbour alone: {ms(baseline)}\nneighbour under header flood: {ms(attacked)}")
    print(
        "flood: "
        + ", ".join(
            f"{f.connections} connections, {f.cut_off} cut off, {f.sent >> 20} MiB" for f in floods
        )
    )
    assert all(not flood.is_alive() for flood in floods)
    assert sum(flood.sent for flood in floods) >= 8 * len(ATTACK_CHUNK), "no flood: proves nothing"
    assert p99(attacked) < 1.0, (ms(baseline), ms(attacked))
    # Every flooding connection was cut off by the server, not given up by the attacker.
    assert all(flood.cut_off >= flood.connections - 1 >= 1 for flood in floods), [
        (f.connections, f.cut_off) for f in floods
    ]
