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
def test_quick_scale_run_fills_and_drains_through_the_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scale part on a tiny table: both ends drained, the middle filled, every row there."""
    out = tmp_path / "scale.json"
    main(["--quick", "--only", "scale", "--out", str(out)])
    figures = orjson.loads(out.read_bytes())["scale"]
    assert figures["rows"] == 3000  # scale.run itself checks the table holds exactly this
    # The COPY floor timed around each end, for the host's drift.
    assert len(figures["floor_first_rows_per_s"]) == len(figures["floor_last_rows_per_s"]) == 2
    assert figures["host_drift"] > 0 and figures["last_vs_first_drift_out"] > 0
    assert figures["first_rows_per_s"] > 0 and figures["last_rows_per_s"] > 0
    assert figures["last_vs_first"] == figures["last_rows_per_s"] / figures["first_rows_per_s"]
    # A year of rows, and the workers' maintenance pass run over them: the
    # keys of periods before the previous one are dropped, the ends' kept.
    assert (figures["fill_days"], figures["dedup_days"]) == (365, 30)
    dropped = figures["maintenance_dropped"]
    assert dropped and all(name.startswith("event_keys_p") for name in dropped)
    assert 2000 <= figures["dedup_keys"] < 3000
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
