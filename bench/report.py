"""Figures of several rounds -> medians, ratios against the targets, a markdown table."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from typing import Any


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# name, how to get it from one round, target test, target text
TARGETS: list[tuple[str, str, Any, str]] = [
    ("ingest events/s ÷ work floor", "ingest_vs_work_floor", lambda v: v >= 0.5, "≥ 0.50"),
    ("ingest p99 at half peak (ms)", "ingest_half_p99_ms", lambda v: v <= 50, "≤ 50"),
    ("web peak RSS (MB)", "web_peak_rss_mb", lambda v: v <= 150, "≤ 150"),
    ("single Thrad events/s ÷ work floor", "thrad_vs_work_floor", lambda v: v >= 0.5, "≥ 0.50"),
    ("single Thrad p99 at half peak (ms)", "thrad_half_p99_ms", lambda v: v <= 25, "≤ 25"),
    ("one-event Onside/s ÷ work floor", "onside1_vs_work_floor", lambda v: v >= 0.5, "≥ 0.50"),
    ("one-event Onside p99 at half peak (ms)", "onside1_half_p99_ms", lambda v: v <= 25, "≤ 25"),
    ("400s/s with the refusal log ÷ without", "refusals_vs_no_log", lambda v: v >= 0.8, "≥ 0.80"),
    ("validation ÷ orjson.loads", "validation_ratio", lambda v: v <= 3, "≤ 3.0"),
    (
        "validation with a typical schema ÷ orjson.loads",
        "validation_schema_ratio",
        lambda v: v <= 3,
        "≤ 3.0",
    ),
    ("drain, 1 worker ÷ COPY floor", "drain_1_vs_copy_floor", lambda v: v >= 0.4, "≥ 0.40"),
    ("single-event drain ÷ batch drain", "single_vs_batch_drain", lambda v: v >= 0.5, "≥ 0.50"),
    ("drain, 2 workers ÷ COPY floor", "drain_2_vs_copy_floor", lambda v: v >= 0.5, "≥ 0.50"),
    ("all-duplicate replay ÷ fresh insert", "replay_vs_fresh", lambda v: v >= 1.0, "≥ 1.00"),
    ("2 workers ÷ 1 worker", "scale_2_vs_1", lambda v: v >= 1.5, "≥ 1.50"),
]


def ratios(round_: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    ingest = round_.get("ingest")
    if ingest:
        out["ingest_vs_work_floor"] = (
            ingest["inlet"]["events_per_s"] / ingest["work_floor"]["events_per_s"]
        )
        out["ingest_vs_http_floor"] = (
            ingest["inlet"]["events_per_s"] / ingest["http_floor"]["events_per_s"]
        )
        out["ingest_half_p99_ms"] = ingest["inlet"]["half_p99_ms"]
        out["web_peak_rss_mb"] = ingest["inlet"]["peak_rss_mb"]
    for part in ("thrad", "onside1"):
        single = round_.get(part)
        if single:
            inlet = single["inlet"]["events_per_s"]
            out[f"{part}_vs_http_floor"] = inlet / single["http_floor"]["events_per_s"]
            if "work_floor" in single:
                out[f"{part}_vs_work_floor"] = inlet / single["work_floor"]["events_per_s"]
            out[f"{part}_half_p99_ms"] = single["inlet"]["half_p99_ms"]
    refused = round_.get("refusals")
    if refused:
        out["refusals_vs_no_log"] = (
            refused["inlet"]["requests_per_s"]
            / refused["inlet_without_refusal_log"]["requests_per_s"]
        )
    validation = round_.get("validation")
    if validation:
        out["validation_ratio"] = validation["ratio"]
        if "schema_ratio" in validation:
            out["validation_schema_ratio"] = validation["schema_ratio"]
    drain = round_.get("drain")
    if drain:
        floor = drain["copy_floor"]["rows_per_s"]
        out["drain_1_vs_copy_floor"] = drain["fresh_1"]["rows_per_s"] / floor
        if "single_1" in drain:
            single = drain["single_1"]["rows_per_s"]
            out["single_vs_batch_drain"] = single / drain["fresh_1"]["rows_per_s"]
        out["drain_2_vs_copy_floor"] = drain["fresh_2"]["rows_per_s"] / floor
        out["replay_vs_fresh"] = drain["replay_1"]["rows_per_s"] / drain["fresh_1"]["rows_per_s"]
        out["scale_2_vs_1"] = drain["fresh_2"]["rows_per_s"] / drain["fresh_1"]["rows_per_s"]
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_round = [ratios(r) for r in rounds]
    keys = sorted({k for r in per_round for k in r})
    medians = {k: median([r[k] for r in per_round if k in r]) for k in keys}
    figures: dict[str, float] = {}

    def fig(name: str, pick: Any) -> None:
        values = []
        for r in rounds:
            with contextlib.suppress(KeyError, TypeError):  # a part left out of the run
                values.append(pick(r))
        if values:
            figures[name] = median(values)

    for server in ("inlet", "work_floor", "http_floor"):
        fig(f"ingest_{server}_events_per_s", lambda r, s=server: r["ingest"][s]["events_per_s"])
        fig(f"ingest_{server}_p99_ms", lambda r, s=server: r["ingest"][s]["p99_ms"])
        fig(f"ingest_{server}_half_p99_ms", lambda r, s=server: r["ingest"][s]["half_p99_ms"])
        fig(f"ingest_{server}_peak_rss_mb", lambda r, s=server: r["ingest"][s]["peak_rss_mb"])
    for part, server in (
        (part, server)
        for part in ("thrad", "onside1")
        for server in ("inlet", "work_floor", "http_floor")
    ):
        for key in (
            "events_per_s",
            "p50_ms",
            "p99_ms",
            "half_p50_ms",
            "half_p99_ms",
            "peak_rss_mb",
            "loadgen_cpu_share",
        ):
            fig(
                f"{part}_{server}_{key}",
                lambda r, p=part, s=server, k=key: r[p][s][k],
            )
    for server in ("inlet", "inlet_without_refusal_log"):
        fig(f"refusals_{server}_per_s", lambda r, s=server: r["refusals"][s]["requests_per_s"])
        fig(f"refusals_{server}_half_p99_ms", lambda r, s=server: r["refusals"][s]["half_p99_ms"])
    fig("validation_ms", lambda r: r["validation"]["validate_ms"])
    fig("orjson_loads_ms", lambda r: r["validation"]["orjson_loads_ms"])
    fig("validation_schema_ms", lambda r: r["validation"]["validate_schema_ms"])
    fig("drain_single_events_per_job", lambda r: r["drain"]["single_1"]["events_per_job"])
    for name in ("fresh_1", "single_1", "replay_1", "fresh_2", "copy_floor"):
        fig(f"drain_{name}_rows_per_s", lambda r, n=name: r["drain"][n]["rows_per_s"])
    targets = {
        key: {
            "label": label,
            "median": medians[key],
            "target": text,
            "holds": bool(test(medians[key])),
        }
        for label, key, test, text in TARGETS
        if key in medians
    }
    return {"figures": figures, "ratios": medians, "targets": targets}


def markdown(summary: dict[str, Any], rounds: int) -> str:
    f = summary["figures"]
    lines = [
        f"Medians of {rounds} round(s); every ratio is taken within a round, then the median.",
        "",
        "| figure | Inlet | floor | ratio |",
        "|---|---:|---:|---:|",
    ]

    def row(label: str, ours: str, floor: str, ratio: str) -> None:
        lines.append(f"| {label} | {ours} | {floor} | {ratio} |")

    r = summary["ratios"]
    if "ingest_inlet_events_per_s" in f:
        row(
            "ingest, events/s vs work floor (orjson.loads + LPUSH)",
            f"{f['ingest_inlet_events_per_s']:,.0f}",
            f"{f['ingest_work_floor_events_per_s']:,.0f}",
            f"{r['ingest_vs_work_floor']:.2f}",
        )
        row(
            "ingest, events/s vs HTTP floor (read body, 204)",
            f"{f['ingest_inlet_events_per_s']:,.0f}",
            f"{f['ingest_http_floor_events_per_s']:,.0f}",
            f"{r['ingest_vs_http_floor']:.2f}",
        )
        row(
            "ingest, p99 ms at peak",
            f"{f['ingest_inlet_p99_ms']:.1f}",
            f"{f['ingest_work_floor_p99_ms']:.1f}",
            "",
        )
        row(
            "ingest, p99 ms at half the peak rate",
            f"{f['ingest_inlet_half_p99_ms']:.1f}",
            f"{f['ingest_work_floor_half_p99_ms']:.1f}",
            "",
        )
        row(
            "web process peak RSS, MB",
            f"{f['ingest_inlet_peak_rss_mb']:.0f}",
            f"{f['ingest_work_floor_peak_rss_mb']:.0f}",
            "",
        )
    for part, label in (("thrad", "single Thrad events"), ("onside1", "one-event Onside")):
        if f"{part}_inlet_events_per_s" not in f:
            continue
        if f"{part}_work_floor_events_per_s" in f:
            row(
                f"{label}, requests/s vs work floor (orjson.loads + LPUSH)",
                f"{f[f'{part}_inlet_events_per_s']:,.0f}",
                f"{f[f'{part}_work_floor_events_per_s']:,.0f}",
                f"{r[f'{part}_vs_work_floor']:.2f}",
            )
        row(
            f"{label}, requests/s vs HTTP floor (read body, 204)",
            f"{f[f'{part}_inlet_events_per_s']:,.0f}",
            f"{f[f'{part}_http_floor_events_per_s']:,.0f}",
            f"{r[f'{part}_vs_http_floor']:.2f}",
        )
        row(
            f"{label}, p50 / p99 ms at half the peak rate",
            f"{f[f'{part}_inlet_half_p50_ms']:.1f} / {f[f'{part}_inlet_half_p99_ms']:.1f}",
            f"{f[f'{part}_http_floor_half_p50_ms']:.1f} / "
            f"{f[f'{part}_http_floor_half_p99_ms']:.1f}",
            "",
        )
        row(
            f"{label}, load generator's CPU share at peak",
            f"{f[f'{part}_inlet_loadgen_cpu_share']:.2f}",
            f"{f[f'{part}_http_floor_loadgen_cpu_share']:.2f}",
            "",
        )
    if "refusals_inlet_per_s" in f:
        row(
            "refused one-event batches (400), requests/s: refusal log on vs off",
            f"{f['refusals_inlet_per_s']:,.0f}",
            f"{f['refusals_inlet_without_refusal_log_per_s']:,.0f}",
            f"{r['refusals_vs_no_log']:.2f}",
        )
        row(
            "refused one-event batches (400), p99 ms at half the peak rate: log on vs off",
            f"{f['refusals_inlet_half_p99_ms']:.1f}",
            f"{f['refusals_inlet_without_refusal_log_half_p99_ms']:.1f}",
            "",
        )
    if "validation_ms" in f:
        row(
            "validate one 1,000-event batch, ms (floor: orjson.loads)",
            f"{f['validation_ms']:.2f}",
            f"{f['orjson_loads_ms']:.2f}",
            f"{r['validation_ratio']:.2f}",
        )
    if "validation_schema_ms" in f:
        row(
            "validate it with a typical schema per event name, ms (floor: orjson.loads)",
            f"{f['validation_schema_ms']:.2f}",
            f"{f['orjson_loads_ms']:.2f}",
            f"{r['validation_schema_ratio']:.2f}",
        )
    if "drain_fresh_1_rows_per_s" in f:
        floor = f"{f['drain_copy_floor_rows_per_s']:,.0f}"
        row(
            "drain, rows/s, 1 worker (floor: COPY, unlogged)",
            f"{f['drain_fresh_1_rows_per_s']:,.0f}",
            floor,
            f"{r['drain_1_vs_copy_floor']:.2f}",
        )
        row(
            "drain, rows/s, 2 workers (floor: COPY, unlogged)",
            f"{f['drain_fresh_2_rows_per_s']:,.0f}",
            floor,
            f"{r['drain_2_vs_copy_floor']:.2f}",
        )
        if "drain_single_1_rows_per_s" in f:
            row(
                "drain of single events, rows/s, 1 worker "
                f"(~{f['drain_single_events_per_job']:.0f} events a job; vs 1,000-event batches)",
                f"{f['drain_single_1_rows_per_s']:,.0f}",
                f"{f['drain_fresh_1_rows_per_s']:,.0f}",
                f"{r['single_vs_batch_drain']:.2f}",
            )
        row(
            "all-duplicate replay, rows/s, 1 worker (vs fresh)",
            f"{f['drain_replay_1_rows_per_s']:,.0f}",
            f"{f['drain_fresh_1_rows_per_s']:,.0f}",
            f"{r['replay_vs_fresh']:.2f}",
        )
    lines += ["", "| target | median | wanted | holds |", "|---|---:|---:|:---:|"]
    for t in summary["targets"].values():
        lines.append(
            f"| {t['label']} | {t['median']:.2f} | {t['target']} | "
            f"{'yes' if t['holds'] else 'NO'} |"
        )
    return "\n".join(lines)
