"""Ingest: Inlet's web process against the HTTP floor and the work floor.

Each server runs as its own process under ``bench.serve`` with the options
of ``inlet web``, pinned (with Redis) away from the load generator's core.
The servers compared in a round run side by side and take turns under the
load generator (``measure_servers``). For each: the peak rate (closed loop),
then the latency at half that peak (open loop), and the process's peak RSS.
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from redis import Redis

from app.redis_client import make_redis
from bench.services import Stack, cpus, environ
from bench.workload import make_batches
from tests.services import free_port

ONSIDE_PATH = "/attribution-api/v1/events"
SERVERS = {
    "http_floor": "bench.floors:http_floor",
    "work_floor": "bench.floors:work_floor",
    "inlet": "app.main:create_app",
    "inlet_without_refusal_log": "bench.floors:inlet_without_refusal_log",
}


# A pause after each turn, before Redis is emptied for the next.
QUIET_SECONDS = 0.2


@dataclass
class IngestConfig:
    seconds: float = 4.0
    # The half-rate run is longer: its p99 rests on its few slowest requests.
    half_rate_seconds: float = 8.0
    warmup: float = 1.0
    # The peak's seconds are measured in this many turns per server,
    # alternating with the other servers of the round (``measure_servers``).
    slices: int = 4
    connections: int = 8
    bodies: int = 4
    events_per_batch: int = 1000


def split_cpus() -> tuple[list[int], list[int]]:
    """(server cpus, load generator cpus): the generator gets the last core to itself."""
    all_cpus = cpus()
    if len(all_cpus) < 2:
        return all_cpus, all_cpus
    return all_cpus[:-1], all_cpus[-1:]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if sock.recv(12).startswith(b"HTTP/1.1 2"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not become ready")


def load(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=orjson.dumps(spec),
        capture_output=True,
        check=True,
    )
    return orjson.loads(out.stdout)


def _rewriting(client: Redis) -> bool:
    info = client.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


def wait_until(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {condition}")
        time.sleep(0.05)


def reset_redis(url: str) -> None:
    """Empty Redis and shrink its AOF, which would otherwise keep every body sent
    so far; wait for the rewrite so that it doesn't run into the next measurement."""
    client = make_redis(url)
    try:
        client.flushall()
        wait_until(lambda: not _rewriting(client))  # Redis may have started one itself
        client.bgrewriteaof()
        wait_until(lambda: not _rewriting(client))
    finally:
        client.close()


@contextmanager
def serving(stack: Stack, name: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Server ``name`` running on a free port, pinned to the servers' cores."""
    server_cpus, _ = split_cpus()
    port = free_port()
    settings = stack.settings.replace(port=port)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve", SERVERS[name]],
        env=environ(settings, PORT=str(port)),
        preexec_fn=lambda: os.sched_setaffinity(0, server_cpus),
    )
    try:
        wait_ready(port, process)
        yield port, process
    finally:
        process.terminate()
        process.wait(30)


def measure_servers(
    stack: Stack, names: Sequence[str], cfg: IngestConfig, target: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Load each server of ``names`` with ``target`` (path, headers, body_files,
    optional unique marker, optional ``expect``: the one status every answer
    must have, 204 unless given), all of them running at once.

    The peak is measured in ``cfg.slices`` turns per server, in the order
    A B C, C B A, A B C ...: whatever the shared host does to its speed over
    the round falls on every server alike, so that the ratios between them
    (what the targets are) do not carry it. Redis is emptied after every
    turn. Then each server's latency at half its peak, and its peak RSS.
    """
    if cfg.slices % 2:
        raise ValueError("slices must be even: each server's turns come early and late alike")
    _, gen_cpus = split_cpus()
    expect = str(target.get("expect", 204))
    base = {
        "host": "127.0.0.1",
        **{k: v for k, v in target.items() if k != "expect"},
        "connections": cfg.connections,
        "cpus": gen_cpus,
    }
    turn_seconds = cfg.seconds / cfg.slices

    def answered(run_: dict[str, Any]) -> int:
        # Answers with the expected status (loadgen's ok_per_s counts 204s).
        return int(run_["statuses"].get(expect, 0))

    with ExitStack() as running:
        specs = {}
        processes = {}
        for name in names:
            port, processes[name] = running.enter_context(serving(stack, name))
            specs[name] = {**base, "port": port}
        for name in names:
            load({**specs[name], "seconds": cfg.warmup})
        reset_redis(stack.settings.redis_url)
        turns: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for k in range(cfg.slices):
            for name in names if k % 2 == 0 else reversed(names):
                turns[name].append(load({**specs[name], "seconds": turn_seconds}))
                # What a server does after its answers (the refusal log's
                # writes) ends before the next turn, not in it.
                time.sleep(QUIET_SECONDS)
                reset_redis(stack.settings.redis_url)
        results = {}
        for name in names:
            # Over the turns' own wall time (loadgen's "seconds"), which
            # includes answering the requests in flight at each deadline.
            answers = sum(answered(t) for t in turns[name])
            peak_per_s = answers / sum(t["seconds"] for t in turns[name])
            half = load(
                {**specs[name], "seconds": cfg.half_rate_seconds, "rate": max(1.0, peak_per_s / 2)}
            )
            reset_redis(stack.settings.redis_url)
            for run_ in (*turns[name], half):
                if set(run_["statuses"]) != {expect} or run_["failures"]:
                    raise RuntimeError(f"{name}: not every request got a {expect}: {run_}")
            results[name] = {
                "requests_per_s": peak_per_s,
                "events_per_s": peak_per_s * cfg.events_per_batch,
                "turns_per_s": [answered(t) / t["seconds"] for t in turns[name]],
                "p50_ms": statistics.median(t["p50_ms"] for t in turns[name]),
                "p99_ms": max(t["p99_ms"] for t in turns[name]),
                "half_rate_per_s": answered(half) / half["seconds"],
                "half_p50_ms": half["p50_ms"],
                "half_p99_ms": half["p99_ms"],
                "peak_rss_mb": peak_rss_mb(processes[name].pid),
                "statuses": {expect: answers},
                "half_statuses": half["statuses"],
                "failures": sum(run_["failures"] for run_ in (*turns[name], half)),
                "loadgen_cpu_share": max(t["loadgen_cpu_share"] for t in turns[name]),
            }
    return results


def pin_redis(stack: Stack) -> None:
    """Redis shares the servers' cores, away from the load generator's."""
    server_cpus, _ = split_cpus()
    if stack.redis.process is not None:
        os.sched_setaffinity(stack.redis.process.pid, server_cpus)


def write_bodies(stack: Stack, stem: str, bodies: list[bytes]) -> list[str]:
    bodies_dir = stack.root / "bodies"
    bodies_dir.mkdir(exist_ok=True)
    files = []
    for i, body in enumerate(bodies):
        path = bodies_dir / f"{stem}-{i}.json"
        path.write_bytes(body)
        files.append(str(path))
    return files


def basic_auth(stack: Stack) -> dict[str, str]:
    token = f"{stack.partner.username}:{stack.partner.password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def run(stack: Stack, cfg: IngestConfig) -> dict[str, Any]:
    """One round: the three servers in turn, on the same bodies."""
    pin_redis(stack)
    body_files = write_bodies(
        stack, "batch", make_batches(cfg.bodies, seed=1, size=cfg.events_per_batch)
    )
    target = {
        "path": ONSIDE_PATH,
        "body_files": body_files,
        "headers": {"Content-Type": "application/json", **basic_auth(stack)},
    }
    return measure_servers(stack, list(SERVERS), cfg, target)
