"""Ingest: Inlet's web process against the HTTP floor and the work floor.

Each server runs as its own process under ``bench.serve`` with the options
of ``inlet web``, pinned (with Redis) away from the load generator's core.
For each: the peak rate (closed loop), then the latency at half that peak
(open loop), and the process's peak RSS.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


@dataclass
class IngestConfig:
    seconds: float = 4.0
    # The half-rate run is longer: its p99 rests on its few slowest requests.
    half_rate_seconds: float = 8.0
    warmup: float = 1.0
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


def measure_server(
    stack: Stack, name: str, cfg: IngestConfig, target: dict[str, Any]
) -> dict[str, Any]:
    """Start server ``name``, load it with ``target`` (path, headers, body_files,
    optional unique marker, optional ``expect``: the one status every answer
    must have, 204 unless given), stop it."""
    server_cpus, gen_cpus = split_cpus()
    port = free_port()
    settings = stack.settings.replace(port=port)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve", SERVERS[name]],
        env=environ(settings, PORT=str(port)),
        preexec_fn=lambda: os.sched_setaffinity(0, server_cpus),
    )
    expect = str(target.get("expect", 204))

    def per_s(run_: dict[str, Any], seconds: float) -> float:
        # Answers with the expected status, a second (loadgen's ok_per_s counts 204s).
        return float(run_["statuses"].get(expect, 0)) / seconds

    try:
        wait_ready(port, process)
        spec = {
            "host": "127.0.0.1",
            "port": port,
            **{k: v for k, v in target.items() if k != "expect"},
            "connections": cfg.connections,
            "cpus": gen_cpus,
        }
        load({**spec, "seconds": cfg.warmup})
        peak = load({**spec, "seconds": cfg.seconds})
        half = load(
            {
                **spec,
                "seconds": cfg.half_rate_seconds,
                "rate": max(1.0, per_s(peak, cfg.seconds) / 2),
            }
        )
        rss = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(30)
        reset_redis(stack.settings.redis_url)
    for run_ in (peak, half):
        if set(run_["statuses"]) != {expect} or run_["failures"]:
            raise RuntimeError(f"{name}: not every request got a {expect}: {run_}")
    events = cfg.events_per_batch
    return {
        "requests_per_s": per_s(peak, cfg.seconds),
        "events_per_s": per_s(peak, cfg.seconds) * events,
        "p50_ms": peak["p50_ms"],
        "p99_ms": peak["p99_ms"],
        "half_rate_per_s": per_s(half, cfg.half_rate_seconds),
        "half_p50_ms": half["p50_ms"],
        "half_p99_ms": half["p99_ms"],
        "peak_rss_mb": rss,
        "statuses": peak["statuses"],
        "half_statuses": half["statuses"],
        "failures": peak["failures"] + half["failures"],
        "loadgen_cpu_share": peak["loadgen_cpu_share"],
    }


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
    return {name: measure_server(stack, name, cfg, target) for name in SERVERS}
