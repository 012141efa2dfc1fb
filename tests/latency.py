"""A neighbour's latency, measured against a live ``inlet web`` while something else runs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def measure(request: Callable[[int], None], max_requests: int, max_seconds: float) -> list[float]:
    """Seconds per call of ``request(n)``, one after another, bounded in count and time."""
    latencies: list[float] = []
    deadline = time.monotonic() + max_seconds
    for n in range(max_requests):
        if time.monotonic() > deadline:
            break
        started = time.monotonic()
        request(n)
        latencies.append(time.monotonic() - started)
    return latencies


def p99(latencies: list[float]) -> float:
    """The 99th percentile (nearest rank): with fewer than 100 samples, the worst."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ms(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (
        f"n={len(ordered)} median={ordered[len(ordered) // 2] * 1000:.0f} ms "
        f"p99={p99(ordered) * 1000:.0f} ms max={ordered[-1] * 1000:.0f} ms"
    )
