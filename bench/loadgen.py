"""An asyncio HTTP/1.1 load generator, pinned to its own core.

Prepared requests are written whole over keep-alive connections and only the
status line and headers of each answer are parsed, so the generator costs a
small fraction of what the server spends on a request.

Two modes:

- closed loop (``rate=None``): ``connections`` clients send back to back for
  ``seconds``: the peak rate;
- open loop (``rate=R``): requests start on a fixed schedule of R per second;
  latency counts from the scheduled start, so a stalled server cannot hide
  its queueing (no coordinated omission).

With ``unique`` set (a marker string found in every body), each request
gets the marker replaced by a fresh id of the same length, so every request
carries a distinct event id and the Content-Length stays right.

Run as ``python -m bench.loadgen`` with a JSON spec on stdin; prints a JSON
summary on stdout, with the generator's own CPU share (near 1.0 means the
generator, not the server, set the pace).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


Picker = Callable[[int], bytes]


def picker(requests: list[bytes], unique: str | None) -> Picker:
    """Request number i -> its bytes; with ``unique``, the marker becomes a fresh id."""
    if not unique:
        return lambda i: requests[i % len(requests)]
    marker = unique.encode()
    if len(marker) < 24:
        raise ValueError("the unique marker needs at least 24 characters")
    # A random prefix per run (runs must not reuse ids), then a counter.
    prefix = secrets.token_hex(len(marker))[: len(marker) - 16].encode()
    counter = itertools.count()

    def pick(i: int) -> bytes:
        fresh = prefix + b"%016x" % next(counter)
        return requests[i % len(requests)].replace(marker, fresh)

    return pick


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    # A closed loop's wall time, from the first send to the last answer: the
    # requests in flight at the deadline are answered after it, and counted.
    elapsed: float | None = None

    def record(self, status: int, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        keep_alive = True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        if length:
            await self.reader.readexactly(length)
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(
    host: str, port: int, requests: Picker, connections: int, seconds: float
) -> Tally:
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        conn = Connection(host, port)
        i = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status = await conn.send(requests(i))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                tally.failures += 1
                conn.close()
                continue
            tally.record(status, time.perf_counter() - started)
            i += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(connections)))
    tally.elapsed = time.perf_counter() - started
    return tally


async def open_loop(
    host: str, port: int, requests: Picker, connections: int, seconds: float, rate: float
) -> Tally:
    tally = Tally()
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(Connection(host, port))
    start = time.perf_counter()
    total = int(seconds * rate)
    pending = []

    async def one(i: int, scheduled: float) -> None:
        conn = await free.get()
        try:
            status = await conn.send(requests(i))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.failures += 1
            conn.close()
        else:
            tally.record(status, time.perf_counter() - scheduled)
        finally:
            free.put_nowait(conn)

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(one(i, scheduled)))
    await asyncio.gather(*pending)
    while not free.empty():
        free.get_nowait().close()
    return tally


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(tally: Tally, seconds: float, ok_status: int = 204) -> dict[str, Any]:
    ok = tally.statuses.get(ok_status, 0)
    return {
        "requests": sum(tally.statuses.values()),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "failures": tally.failures,
        "ok_per_s": ok / seconds,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
    }


def pin_to(cpus: set[int]) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load: spec has host, port, path, headers, body_files, connections,
    seconds, optional rate, cpus and unique (a marker to replace per request)."""
    pin_to(set(spec.get("cpus") or ()))
    bodies = [Path(p).read_bytes() for p in spec["body_files"]]
    requests = picker(
        [
            build_request(spec["host"], spec["port"], spec["path"], body, spec["headers"])
            for body in bodies
        ],
        spec.get("unique"),
    )
    rate = spec.get("rate")
    seconds = spec["seconds"]
    if rate:
        coro = open_loop(spec["host"], spec["port"], requests, spec["connections"], seconds, rate)
    else:
        coro = closed_loop(spec["host"], spec["port"], requests, spec["connections"], seconds)
    cpu_before = _cpu_seconds()
    try:
        import uvloop

        tally = uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        tally = asyncio.run(coro)
    seconds = tally.elapsed or seconds
    cpu_share = (_cpu_seconds() - cpu_before) / seconds
    return {**summarize(tally, seconds), "seconds": seconds, "loadgen_cpu_share": cpu_share}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(run(orjson.loads(sys.stdin.buffer.read()))))
