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


@pytest.mark.timeout(180)
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
    for server in ("http_floor", "inlet"):
        assert set(round_["thrad"][server]["statuses"]) == {"204"}
        assert round_["thrad"][server]["events_per_s"] > 0
    assert result["config"]["thrad"]["events_per_batch"] == 1
    assert round_["drain"]["rows"] == 60
    assert result["machine"]["nproc"] >= 1
    printed = capsys.readouterr().out
    assert "| target | median | wanted | holds |" in printed
    assert "single events (Thrad), events/s vs HTTP floor" in printed
