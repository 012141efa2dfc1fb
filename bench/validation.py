"""Validation: decoding and validating one 1,000-event batch, against orjson.loads.

Twice: as a partner with no schema is validated (shape and clock guard), and
as one with a typical schema for every event name it sends (enforce mode,
app/quality/schemas.py), which adds one compiled jsonschema-rs check per
payload.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from app.onside.validate import validate_batch
from app.policy import PartnerPolicy
from app.quality.clock import ClockGuard
from app.quality.schemas import EventSchema, SchemaCheck, check_schema
from bench.workload import NAMES, make_batches

# What a partner would write for the benchmark's payloads: every field typed,
# the money ones constrained, the two it can't do without required.
TYPICAL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["currency", "amount"],
    "properties": {
        "currency": {"enum": ["USD", "EUR", "GBP", "JPY"]},
        "amount": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
        "sku": {"type": "string", "maxLength": 64},
        "campaign": {"type": "string"},
        "country": {"type": "string", "minLength": 2, "maxLength": 2},
        "items": {"type": "integer", "minimum": 1},
        "app_version": {"type": "string"},
        "first_purchase": {"type": "boolean"},
    },
}


def typical_schemas() -> SchemaCheck:
    check_schema(TYPICAL_SCHEMA)
    schema = EventSchema.of("enforce", TYPICAL_SCHEMA)
    return SchemaCheck({name.lower(): schema for name in NAMES}, "reject")


def best_per_call(funcs: dict[str, Callable[[], Any]], calls: int) -> dict[str, float]:
    """Seconds per call of each function, the best of five timed loops (the least
    disturbed by neighbours), the functions' loops taking turns so that the
    host's drift over the run falls on each alike."""
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(5):
        for name, func in funcs.items():
            started = time.perf_counter()
            for _ in range(calls):
                func()
            best[name] = min(best[name], (time.perf_counter() - started) / calls)
    return best


def run(calls: int = 40, events: int = 1000) -> dict[str, Any]:
    body = make_batches(1, seed=4, size=events)[0]
    assert len(validate_batch(body, events)) == events
    # As the endpoint runs it: the receive time's clock guard, and the schemas.
    clock = ClockGuard.for_request(PartnerPolicy(), datetime.now(UTC))
    schemas = typical_schemas()
    assert len(validate_batch(body, events, clock=clock, schemas=schemas)) == events
    best = best_per_call(
        {
            "loads": lambda: orjson.loads(body),
            "validate": lambda: validate_batch(body, events),
            "with_schema": lambda: validate_batch(body, events, clock=clock, schemas=schemas),
        },
        calls,
    )
    loads = best["loads"]
    return {
        "body_bytes": len(body),
        "orjson_loads_ms": loads * 1000,
        "validate_ms": best["validate"] * 1000,
        "ratio": best["validate"] / loads,
        "validate_schema_ms": best["with_schema"] * 1000,
        "schema_ratio": best["with_schema"] / loads,
    }
