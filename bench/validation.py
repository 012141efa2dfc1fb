"""Validation: decoding and validating one 1,000-event batch, against orjson.loads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from app.onside.validate import validate_batch
from bench.workload import make_batches


def best_per_call(func: Callable[[], Any], calls: int) -> float:
    """Seconds per call, the best of five timed loops (the least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            func()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def run(calls: int = 40, events: int = 1000) -> dict[str, Any]:
    body = make_batches(1, seed=4, size=events)[0]
    assert len(validate_batch(body, events)) == events
    loads = best_per_call(lambda: orjson.loads(body), calls)
    validate = best_per_call(lambda: validate_batch(body, events), calls)
    return {
        "body_bytes": len(body),
        "orjson_loads_ms": loads * 1000,
        "validate_ms": validate * 1000,
        "ratio": validate / loads,
    }
