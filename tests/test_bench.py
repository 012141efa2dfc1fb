"""A smoke run of ``make bench`` on tiny workloads, so the benchmark cannot rot.

Figures from such a run mean nothing; what is checked is that every part
runs, every request got its 204, every drained row landed once (the drain
itself asserts the row count), and the report has every figure and target.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.__main__ import main
from bench.report import TARGETS


@pytest.mark.timeout(300)  # every part once, tiny: slow only on a busy machine
def test_quick_bench_run_reports_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    main(["--quick", "--rounds", "1", "--out", str(out)])
    result = orjson.loads(out.read_bytes())
    assert set(result["targets"]) == {key for _, key, _, _ in TARGETS}
    [round_] = result["rounds"]
    for server in ("http_floor", "work_floor", "inlet"):
        assert set(round_["ingest"][server]["statuses"]) == {"204"}
        assert round_["ingest"][server]["events_per_s"] > 0
        # The peak in turns, taken alternately with the other servers.
        assert len(round_["ingest"][server]["turns_per_s"]) == 2
    for part in ("thrad", "onside1"):
        for server in ("http_floor", "work_floor", "inlet"):
            assert set(round_[part][server]["statuses"]) == {"204"}
            assert round_[part][server]["events_per_s"] > 0
    for server in ("inlet", "inlet_without_refusal_log"):
        assert set(round_["refusals"][server]["statuses"]) == {"400"}
        assert round_["refusals"][server]["requests_per_s"] > 0
    assert result["config"]["thrad"]["events_per_batch"] == 1
    assert round_["drain"]["rows"] == 60
    assert round_["drain"]["single_1"]["jobs"] >= 1
    assert round_["drain"]["single_1"]["rows_per_s"] > 0
    assert result["machine"]["nproc"] >= 1
    printed = capsys.readouterr().out
    assert "| target | median | wanted | holds |" in printed
    assert "single Thrad events, requests/s vs work floor" in printed
    assert "one-event Onside, requests/s vs work floor" in printed
    assert "drain of single events, rows/s" in printed
    assert "refused one-event batches (400), requests/s: refusal log on vs off" in printed
    assert "validate it with a typical schema per event name" in printed
    assert round_["validation"]["schema_ratio"] > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("days", [365, 30])
def test_quick_scale_run_fills_and_drains_through_the_worker(
    days: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scale part on a tiny table: both ends drained, the middle filled,
    every row there, and the keys past the window dropped, no others."""
    out = tmp_path / "scale.json"
    main(["--quick", "--only", "scale", "--scale-days", str(days), "--out", str(out)])
    result = orjson.loads(out.read_bytes())
    figures = result["scale"]
    assert f"--scale-days {days}" in result["command"]
    assert figures["rows"] == 3000  # scale.run itself checks the table holds exactly this
    # The COPY floor timed around each end, for the host's drift.
    assert len(figures["floor_first_rows_per_s"]) == len(figures["floor_last_rows_per_s"]) == 2
    assert figures["host_drift"] > 0 and figures["last_vs_first_drift_out"] > 0
    assert figures["first_rows_per_s"] > 0 and figures["last_rows_per_s"] > 0
    assert figures["last_vs_first"] == figures["last_rows_per_s"] / figures["first_rows_per_s"]
    # scale.run checks that the keys left are exactly those of the events
    # received since the previous period began; here, what that means.
    assert (figures["fill_days"], figures["dedup_days"]) == (days, 30)
    by_period = figures["dedup_keys_by_period"]
    assert 1 <= len(by_period) <= 2 and figures["dedup_keys"] == sum(by_period.values())
    dropped = figures["maintenance_dropped"]
    if days == 365:
        # A year: the keys of the periods before the previous one are dropped.
        assert len(dropped) >= 10 and all(name.startswith("event_keys_p") for name in dropped)
        assert 2000 <= figures["dedup_keys"] < 3000
    else:
        # Every row received within the last window: no key is past it.
        assert dropped == [] and figures["dedup_keys"] == 3000
    printed = capsys.readouterr().out
    assert "| last million ÷ first million |" in printed
    assert "| dedup keys at the end |" in printed


def test_pg_settings_for_the_scale_run_are_name_value_pairs() -> None:
    from bench.__main__ import _settings

    assert _settings(["max_wal_size=16GB", " wal_compression = lz4 "]) == {
        "max_wal_size": "16GB",
        "wal_compression": "lz4",
    }
    for bad in ("max_wal_size", "=16GB"):
        with pytest.raises(SystemExit, match="NAME=VALUE"):
            _settings([bad])
