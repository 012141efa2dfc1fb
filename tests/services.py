"""Real services for the tests and the benchmarks: PostgreSQL clusters and Redis servers.

Both are real processes on this machine, started and stopped by fixtures (and
by ``bench/services.py``, with its own PostgreSQL configuration); the fault
tests stop and restart them on purpose.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg

from app.embedded_redis import EmbeddedRedis
from app.settings import Settings

TEST_SECRET_KEY = "test-secret-key-of-at-least-32-characters"


def make_settings(database_url: str, redis_url: str, data_dir: Path, **env: str) -> Settings:
    """The tests' settings for these services; ``env`` sets any other setting."""
    environ = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INLET_DATA_DIR": str(data_dir),
        "INLET_SECRET_KEY": TEST_SECRET_KEY,
        "INLET_RETRY_DELAYS": "1,1",
        "INLET_REDIS_TIMEOUT": "1",
        **env,
    }
    return Settings.from_env(environ)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    matches = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if matches:
        return matches[-1]
    raise RuntimeError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")


# The tests don't survive power loss; they do survive fsync=off's speed.
TEST_CONFIG: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresCluster:
    """A throwaway cluster in a temporary directory, on 127.0.0.1:<free port>.

    ``config`` is its server configuration (``-c name=value``), the tests'
    by default. initdb refuses to run as root, so as root the cluster runs as
    the ``postgres`` user.
    """

    def __init__(self, config: Mapping[str, str] = TEST_CONFIG) -> None:
        self.config = dict(config)
        self.root = Path(tempfile.mkdtemp(prefix="inlet-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = list(args)
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, cwd=self.root)

    def init(self) -> PostgresCluster:
        self._run(
            pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        )
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {name}={value}" for name, value in self.config.items()
        )
        self._run(
            pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def running_cluster(config: Mapping[str, str] = TEST_CONFIG) -> Iterator[PostgresCluster]:
    """A started cluster, destroyed (data and all) on exit."""
    cluster = PostgresCluster(config).init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@contextmanager
def running_redis(
    root: Path | None = None, extra_config: Mapping[str, str] | None = None
) -> Iterator[EmbeddedRedis]:
    """An embedded Redis, stopped on exit. The default root is short on purpose:
    Unix socket paths are limited to ~100 bytes."""
    root = root or Path(tempfile.mkdtemp(prefix="inlet-redis-"))
    server = EmbeddedRedis(root, extra_config=dict(extra_config or {})).start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition, timeout: float = 30.0, interval: float = 0.05, message: str = ""):  # type: ignore[no-untyped-def]
    """Poll until ``condition()`` is truthy; return its value or fail loudly."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)
