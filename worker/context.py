"""What a worker process holds while it runs jobs: settings and one engine.

Set once by ``worker.runner`` (or a test) before any job runs; jobs read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from app.db import make_engine
from app.settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine


_current: WorkerContext | None = None


def open_context(settings: Settings) -> WorkerContext:
    global _current
    if _current is not None and _current.settings == settings:
        return _current
    close_context()
    _current = WorkerContext(settings, make_engine(settings.database_url))
    return _current


def close_context() -> None:
    global _current
    if _current is not None:
        _current.engine.dispose()
        _current = None


def current() -> WorkerContext:
    if _current is None:
        raise RuntimeError("no worker context: start jobs through `inlet worker`")
    return _current
