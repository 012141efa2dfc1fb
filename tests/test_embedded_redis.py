"""The embedded Redis keeps the queue (every accepted batch) in private files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from redis import Redis

from app.embedded_redis import EmbeddedRedis


def test_the_aof_and_the_data_folder_are_private() -> None:
    # A short path: Unix socket paths are limited to ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="inlet-rm-"))
    server = EmbeddedRedis(root / "data").start()
    try:
        client = Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
        written = [p for p in server.data_dir.iterdir() if p.is_file()]
        assert any(p.name.startswith("appendonly") for p in written), written
    finally:
        server.stop()
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in written}
    assert modes == {p.name: "0o600" for p in written}
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
