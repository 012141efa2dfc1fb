"""Single events: Thrad's ``POST /v1/api/collect`` against the HTTP floor.

The same load generator, server options, pinning and measurements as the
batch ingest (bench/ingest.py), on a body shaped like Thrad's reference
example (one ~360-byte event, Bearer API key). Every request carries a
distinct event_id, as a partner's would. The HTTP floor is the bare
Starlette app that reads the body and answers 204, given the same requests.
"""

from __future__ import annotations

from typing import Any

from bench.ingest import IngestConfig, measure_server, pin_redis, write_bodies
from bench.services import Stack
from bench.workload import EVENT_ID_MARKER, make_thrad_events

THRAD_PATH = "/v1/api/collect"
SERVERS = ("http_floor", "inlet")


def config(**overrides: Any) -> IngestConfig:
    """Single events: one event per request, the rest as for batches."""
    return IngestConfig(**{"events_per_batch": 1, **overrides})


def run(stack: Stack, cfg: IngestConfig) -> dict[str, Any]:
    """One round: the HTTP floor, then Inlet, on the same single-event requests."""
    pin_redis(stack)
    target = {
        "path": THRAD_PATH,
        "body_files": write_bodies(stack, "thrad", make_thrad_events(cfg.bodies, seed=2)),
        "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {stack.api_key}"},
        "unique": EVENT_ID_MARKER,
    }
    return {name: measure_server(stack, name, cfg, target) for name in SERVERS}
