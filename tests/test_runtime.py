"""The web and worker processes run with CPython tuned (app/runtime.py), and leave it as it was."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.runtime import GC_YOUNG_THRESHOLD, GIL_SWITCH_SECONDS, collector_tuned, tuned_for_web
from app.settings import Settings
from worker import runner


def _state() -> tuple[tuple[int, ...], int, float]:
    return gc.get_threshold(), gc.get_freeze_count(), sys.getswitchinterval()


def test_collector_tuned_freezes_what_exists_and_restores_on_exit() -> None:
    before = _state()
    survivor = [object()]  # tracked, alive at the freeze
    with collector_tuned():
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[0][1:])
        assert gc.get_freeze_count() > 0
        assert not any(item is survivor for item in gc.get_objects())  # out of every generation
    assert _state() == before
    assert any(item is survivor for item in gc.get_objects())


def test_collector_tuned_restores_after_an_error() -> None:
    before = _state()
    with pytest.raises(RuntimeError), collector_tuned():
        raise RuntimeError("stop")
    assert _state() == before


def test_overlapping_scopes_restore_only_when_the_last_closes() -> None:
    """Two apps of one test process, A started first and stopped first."""
    before = _state()
    a, b = tuned_for_web(), tuned_for_web()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    thresholds, frozen, switch = _state()  # B still serves: still tuned
    assert (thresholds[0], frozen > 0, switch) == (GC_YOUNG_THRESHOLD, True, GIL_SWITCH_SECONDS)
    b.__exit__(None, None, None)
    assert _state() == before


def test_a_freeze_made_before_is_left_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_tuned():
            assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_the_web_app_runs_tuned_while_it_serves(settings: Settings) -> None:
    before = _state()
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        thresholds, frozen, switch = _state()
        assert thresholds[0] == GC_YOUNG_THRESHOLD
        assert frozen > 0
        assert switch == pytest.approx(GIL_SWITCH_SECONDS)
    assert _state() == before


def test_the_worker_runs_tuned(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[tuple[int, ...], int, float]] = []
    build = runner.build_worker

    def build_recording(run_settings: Settings) -> Any:
        worker = build(run_settings)
        work = worker.work

        def recording_work(*args: Any, **kwargs: Any) -> bool:
            seen.append(_state())
            return work(*args, **kwargs)

        worker.work = recording_work  # type: ignore[method-assign]
        return worker

    monkeypatch.setattr(runner, "build_worker", build_recording)
    before = _state()
    runner.run_worker(settings, burst=True)
    assert len(seen) == 1
    assert seen[0][0][0] == GC_YOUNG_THRESHOLD
    assert seen[0][1] > 0
    assert _state() == before
