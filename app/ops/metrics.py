"""Prometheus metrics, in prometheus-client's multiprocess mode.

Every web and worker process writes its counters and histograms to files in
one directory (PROMETHEUS_MULTIPROC_DIR); ``GET /metrics`` on any web process
adds them all up. The queue's state (depth, oldest waiting job, failed jobs,
workers alive) is read from Redis at scrape time instead, so it is always
current and never double-counted.

prometheus-client decides at import time whether it runs in multiprocess
mode, from the environment. ``configure`` sets the variable and rebinds the
value class before any metric is made, so the process's entry point (the app
factory, the worker, the CLI) decides, not whoever imported the library first.
The directory is fixed for the process at the first ``configure``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: enqueue is a few ms, a job tens of ms, the lag up to the retry schedule.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_JOB = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
_LAG = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


@dataclass(frozen=True)
class Metrics:
    directory: Path
    requests: Counter
    request_seconds: Histogram
    events_accepted: Counter
    batches_rejected: Counter
    batch_size: Histogram
    enqueue_seconds: Histogram
    job_seconds: Histogram
    rows_inserted: Counter
    rows_duplicate: Counter
    jobs_failed: Counter
    receive_to_insert_seconds: Histogram


_lock = threading.Lock()
_metrics: Metrics | None = None


def configure(directory: Path | str) -> Metrics:
    """Turn on multiprocess mode in ``directory`` and make the metrics (once per process)."""
    global _metrics
    with _lock:
        if _metrics is not None:
            return _metrics
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        os.environ[ENV] = str(path)
        values.ValueClass = values.get_value_class()
        _metrics = _build(path)
        return _metrics


def get() -> Metrics:
    """The process's metrics; a process nobody configured writes to a private directory."""
    if _metrics is not None:
        return _metrics
    return configure(os.environ.get(ENV) or tempfile.mkdtemp(prefix="inlet-metrics-"))


def _build(path: Path) -> Metrics:
    # registry=None: in multiprocess mode the values live in files, and the
    # scrape reads them through a MultiProcessCollector, not a registry.
    return Metrics(
        directory=path,
        requests=Counter(
            "inlet_http_requests",
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=None,
        ),
        request_seconds=Histogram(
            "inlet_http_request_duration_seconds",
            "HTTP request duration by route.",
            ["route"],
            buckets=_FAST,
            registry=None,
        ),
        events_accepted=Counter(
            "inlet_events_accepted",
            "Events accepted (queued) by partner.",
            ["partner", "endpoint"],
            registry=None,
        ),
        batches_rejected=Counter(
            "inlet_batches_rejected",
            "Refused ingest requests by partner and reason (error code).",
            ["partner", "reason"],
            registry=None,
        ),
        batch_size=Histogram(
            "inlet_batch_size_events",
            "Events per accepted batch.",
            ["endpoint"],
            buckets=_SIZES,
            registry=None,
        ),
        enqueue_seconds=Histogram(
            "inlet_enqueue_duration_seconds",
            "Time to write one batch to the queue.",
            ["endpoint"],
            buckets=_FAST,
            registry=None,
        ),
        job_seconds=Histogram(
            "inlet_job_duration_seconds",
            "Time a worker spent on one job.",
            ["endpoint", "outcome"],
            buckets=_JOB,
            registry=None,
        ),
        rows_inserted=Counter(
            "inlet_rows_inserted", "Event rows inserted.", ["partner"], registry=None
        ),
        rows_duplicate=Counter(
            "inlet_rows_duplicate",
            "Events already stored (same partner and event_id), skipped.",
            ["partner"],
            registry=None,
        ),
        jobs_failed=Counter(
            "inlet_job_failures",
            "Job attempts that failed; final=true when no retry is left.",
            ["partner", "final"],
            registry=None,
        ),
        receive_to_insert_seconds=Histogram(
            "inlet_receive_to_insert_seconds",
            "From the web tier receiving a batch to its rows being committed.",
            ["endpoint"],
            buckets=_LAG,
            registry=None,
        ),
    )


class QueueCollector(Collector):
    """Queue gauges, read from Redis at scrape time: depth, oldest age, failed, workers."""

    def __init__(self, read_queue_state) -> None:  # type: ignore[no-untyped-def]
        self._read = read_queue_state

    def collect(self) -> Iterator[Metric]:
        state = self._read()
        yield GaugeMetricFamily("inlet_queue_depth", "Jobs waiting in the queue.", state.depth)
        yield GaugeMetricFamily(
            "inlet_queue_oldest_job_age_seconds",
            "Age of the oldest waiting job (0 when none).",
            state.oldest_age_seconds or 0.0,
        )
        yield GaugeMetricFamily(
            "inlet_queue_scheduled_jobs", "Jobs waiting for a retry delay to pass.", state.scheduled
        )
        yield GaugeMetricFamily("inlet_failed_jobs", "Jobs in the failed registry.", state.failed)
        yield GaugeMetricFamily(
            "inlet_workers_alive", "Workers registered and heartbeating.", state.workers
        )


def render(read_queue_state=None) -> bytes:  # type: ignore[no-untyped-def]
    """The Prometheus text exposition of every process's metrics, plus the queue gauges."""
    metrics = get()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics.directory))
    if read_queue_state is not None:
        registry.register(QueueCollector(read_queue_state))
    return generate_latest(registry)


def process_exited(pid: int | None = None) -> None:
    """Bookkeeping when a process stops (only live gauges need it; harmless otherwise)."""
    if _metrics is not None:
        multiprocess.mark_process_dead(pid or os.getpid(), str(_metrics.directory))
