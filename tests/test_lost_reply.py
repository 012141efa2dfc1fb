"""A queued batch whose acknowledgement is lost on the way back still gets its 204.

A real TCP proxy in front of the real Redis forwards every command but
swallows the replies on any connection that has sent an EXEC: Redis applies
the MULTI/EXEC, the web tier never hears so. It then asks Redis whether the
job exists (on a fresh connection, whose replies pass) and answers 204, not
a 503 that would make the partner send the batch again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings
from tests.events import ONSIDE_EVENT
from tests.events import ONSIDE_URL as URL
from tests.queued import onside_rows


class ReplySwallowingProxy:
    def __init__(self, target: Path) -> None:
        self.target = str(target)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.swallowed = 0
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            sent_exec = threading.Event()
            for args in ((client, upstream, sent_exec, True), (upstream, client, sent_exec, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(
        self, src: socket.socket, dst: socket.socket, sent_exec: threading.Event, requests: bool
    ) -> None:
        try:
            while chunk := src.recv(65536):
                if requests:
                    if b"EXEC" in chunk:
                        sent_exec.set()
                    dst.sendall(chunk)
                elif sent_exec.is_set():
                    self.swallowed += 1  # Redis answered; the client never learns it
                else:
                    dst.sendall(chunk)
        except OSError:
            pass
        finally:
            # Either direction ending ends the pair; the last one out closes.
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if not requests:
                src.close()
                dst.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def proxy(redis_server: EmbeddedRedis) -> Iterator[ReplySwallowingProxy]:
    proxy = ReplySwallowingProxy(redis_server.socket_path)
    yield proxy
    proxy.close()


def test_a_lost_acknowledgement_of_a_queued_batch_is_still_a_204(
    settings: Settings,
    auth: dict[str, str],
    redis: Redis,
    proxy: ReplySwallowingProxy,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    through_proxy = settings.replace(
        redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_timeout=0.5
    )
    with TestClient(create_app(through_proxy)) as client:
        response = client.post(URL, json={"events": [ONSIDE_EVENT]}, headers=auth)
    assert proxy.swallowed >= 1, "the proxy never swallowed a reply: the test proves nothing"
    assert response.status_code == 204, response.text
    drain()
    assert [str(row.event_id) for row in onside_rows(engine)] == [ONSIDE_EVENT["event_id"]]
