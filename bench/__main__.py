"""``python -m bench``: every benchmark, several rounds, a markdown table and a JSON file.

Usage: ``python -m bench [--rounds N] [--quick] [--out PATH]
[--only validation,ingest,thrad,onside1,refusals,drain,scale] [--scale-rows N]
[--scale-days N]``.
``--quick`` shrinks every workload to a smoke test (what ``make test`` runs).
``scale`` (the 20-million-row run, ``bench/scale.py``) runs only when named
in ``--only``, once, on its own PostgreSQL with a small cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import drain, ingest, report, scale, single, validation
from bench.services import stack


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: a smoke test")
    parser.add_argument("--out", default="var/bench.json")
    parser.add_argument("--only", default="validation,ingest,thrad,onside1,refusals,drain")
    parser.add_argument(
        "--scale-rows",
        type=int,
        default=ScaleDefaults.rows,
        help="rows in the table at the end of the scale run (at least 3 million unless --quick)",
    )
    parser.add_argument(
        "--scale-days",
        type=int,
        default=ScaleDefaults.days,
        help="days the scale run's filled rows were received over (30: one default dedup window)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the scale run's cluster, on top of its own (repeatable)",
    )
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    if "scale" in parts:
        return _scale(args)
    if args.quick:
        ingest_cfg = ingest.IngestConfig(
            seconds=0.5,
            half_rate_seconds=0.5,
            warmup=0.2,
            slices=2,
            connections=2,
            bodies=1,
            events_per_batch=20,
        )
        single_cfg = single.config(
            seconds=0.5, half_rate_seconds=0.5, warmup=0.2, slices=2, connections=2, bodies=2
        )
        drain_cfg = drain.DrainConfig(batches=3, events_per_batch=20, single_events=40)
        validation_calls, validation_events = 2, 20
    else:
        ingest_cfg, drain_cfg = ingest.IngestConfig(), drain.DrainConfig(batches=150)
        single_cfg = single.config()
        validation_calls, validation_events = 40, 1000

    info = report.machine()
    started = time.time()
    rounds: list[dict[str, Any]] = []
    with stack() as services:
        for n in range(args.rounds):
            round_: dict[str, Any] = {}
            if "validation" in parts:
                round_["validation"] = validation.run(validation_calls, validation_events)
            if "ingest" in parts:
                round_["ingest"] = ingest.run(services, ingest_cfg)
            if "thrad" in parts:
                round_["thrad"] = single.run(services, single_cfg)
            if "onside1" in parts:
                round_["onside1"] = single.run_onside(services, single_cfg)
            if "refusals" in parts:
                round_["refusals"] = single.run_refusals(services, single_cfg)
            if "drain" in parts:
                round_["drain"] = drain.run(services, drain_cfg, seed=100 + n)
            rounds.append(round_)
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    summary = report.summarize(rounds)
    result = {
        "command": "make bench",
        "machine": info,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": time.time() - started,
        "quick": args.quick,
        "config": {"ingest": vars(ingest_cfg), "thrad": vars(single_cfg), "drain": vars(drain_cfg)},
        **summary,
        "rounds": rounds,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}")
    print(report.markdown(summary, len(rounds)))
    print(f"\nFigures written to {out}")
    return result


ScaleDefaults = scale.ScaleConfig()


def _scale(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        cfg = scale.ScaleConfig(
            rows=3000, measure_rows=1000, events_per_batch=100, fill_chunk=500, days=args.scale_days
        )
    else:
        cfg = scale.ScaleConfig(rows=args.scale_rows, days=args.scale_days)
    info = report.machine()
    started = time.time()
    pg_config = {**scale.SCALE_CONFIG, **_settings(args.pg_setting)}
    with stack(pg_config) as services:
        figures = scale.run(services, cfg)
    result = {
        "command": "make bench BENCH_ARGS='--only scale"
        + (" --quick" if args.quick else f" --scale-rows {cfg.rows}")
        + f" --scale-days {cfg.days}'",
        "machine": info,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": time.time() - started,
        "quick": args.quick,
        "postgresql": pg_config,
        "scale": figures,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}")
    print("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in sorted(pg_config.items())))
    print(scale.markdown(figures))
    print(f"\nFigures written to {out}")
    return result


def _settings(pairs: list[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--pg-setting wants NAME=VALUE, not {pair!r}")
        settings[name.strip()] = value.strip()
    return settings


if __name__ == "__main__":
    main()
