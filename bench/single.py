"""Single events: one event per request, against the work floor and the HTTP floor.

The same load generator, server options, pinning and measurements as the
batch ingest (bench/ingest.py), in two shapes:

- Thrad's ``POST /v1/api/collect``, a body shaped like Thrad's reference
  example (one ~360-byte event, Bearer API key), every request with a
  distinct event_id, as a partner's would;
- one-event Onside batches, ``POST /attribution-api/v1/events`` (Basic auth).

The floors get the very same requests: the work floor reads, parses and
pushes each body to Redis with one LPUSH (one fsync per request, as
``appendfsync always`` does), the HTTP floor reads it and answers 204.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.ingest import (
    ONSIDE_PATH,
    IngestConfig,
    basic_auth,
    measure_servers,
    pin_redis,
    write_bodies,
)
from bench.services import Stack
from bench.workload import EVENT_ID_MARKER, make_batches, make_thrad_events

THRAD_PATH = "/v1/api/collect"
SERVERS = ("http_floor", "work_floor", "inlet")


def config(**overrides: Any) -> IngestConfig:
    """Single events: one event per request, the rest as for batches."""
    return IngestConfig(**{"events_per_batch": 1, **overrides})


def run(stack: Stack, cfg: IngestConfig) -> dict[str, Any]:
    """One round of Thrad single events: the floors, then Inlet, on the same requests."""
    pin_redis(stack)
    target = {
        "path": THRAD_PATH,
        "body_files": write_bodies(stack, "thrad", make_thrad_events(cfg.bodies, seed=2)),
        "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {stack.api_key}"},
        "unique": EVENT_ID_MARKER,
    }
    return measure_servers(stack, SERVERS, cfg, target)


def run_onside(stack: Stack, cfg: IngestConfig) -> dict[str, Any]:
    """One round of one-event Onside batches: the floors, then Inlet."""
    pin_redis(stack)
    target = {
        "path": ONSIDE_PATH,
        "body_files": write_bodies(stack, "onside1", make_batches(cfg.bodies, seed=3, size=1)),
        "headers": {"Content-Type": "application/json", **basic_auth(stack)},
    }
    return measure_servers(stack, SERVERS, cfg, target)


def run_refusals(stack: Stack, cfg: IngestConfig) -> dict[str, Any]:
    """One round of refused one-event batches (every answer a 400, each kept in
    the refusal log), against Inlet with the log turned off."""
    pin_redis(stack)
    refused = []
    for body in make_batches(cfg.bodies, seed=4, size=1):
        batch = orjson.loads(body)
        batch["events"][0]["event_id"] = "not-a-uuid-" + batch["events"][0]["event_id"]
        refused.append(orjson.dumps(batch))
    target = {
        "path": ONSIDE_PATH,
        "body_files": write_bodies(stack, "refused", refused),
        "headers": {"Content-Type": "application/json", **basic_auth(stack)},
        "expect": 400,
    }
    return measure_servers(stack, ("inlet_without_refusal_log", "inlet"), cfg, target)
