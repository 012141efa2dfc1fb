"""How a serving process sets CPython up: the GIL's switch interval, the garbage collector.

Both are measured choices (bench/README.md), made for the life of a web
process (``tuned_for_web``, in the app's lifespan) or a worker
(``collector_tuned``, in ``run_worker``) and undone when it stops, so that a
test process that runs an app and then goes on is left as it was.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Callable, Iterator

# Every web request waits on two Redis calls made in worker threads (the rate
# limit's and its group's write), and a thread whose call returned needs the
# GIL back from the event loop. With CPython's default switch interval
# (5 ms) a busy loop kept it that long, twice a request: most of a single
# event's latency at half the peak rate.
GIL_SWITCH_SECONDS = 0.0005

# How many more GC-tracked objects than at the last collection may be alive
# before the collector looks at the youngest generation (CPython 3.11's
# count is net: allocations minus deallocations; default 700). Measured on
# 3.11 (3.14's incremental collector reads its thresholds differently). A
# 1,000-event batch holds ~1,000 tracked dicts (its events, which hold a
# payload dict each) while its request runs, so at 700 every batch set off
# a young collection that found them alive and promoted them, every tenth
# of those moved them into the oldest generation, and that filled fast
# enough for a full collection of the web process's ~100,000 objects,
# ~100 ms with the GIL held, every couple of seconds: the ingest p99. At
# 10,000 a batch freed before the count gets there sets nothing off.
GC_YOUNG_THRESHOLD = 10_000


class _Shared:
    """A process-wide setting that scopes share, nested or overlapping: the
    first to open applies it, the last to close undoes it (a test process
    may run several apps at once, each in its own lifespan)."""

    def __init__(self, apply: Callable[[], Callable[[], None]]) -> None:
        self._apply = apply  # applies the setting, returns what undoes it
        self._lock = threading.Lock()
        self._open = 0
        self._undo: Callable[[], None] | None = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        with self._lock:
            if self._open == 0:
                self._undo = self._apply()
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                if self._open == 0 and self._undo is not None:
                    self._undo()
                    self._undo = None


def _tune_collector() -> Callable[[], None]:
    thresholds = gc.get_threshold()
    # A freeze made by someone else before (a pre-fork server's) is theirs.
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])

    def undo() -> None:
        gc.set_threshold(*thresholds)
        if freezing:
            gc.unfreeze()

    return undo


def _switch_often() -> Callable[[], None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    return lambda: sys.setswitchinterval(interval)


_collector = _Shared(_tune_collector)
_switching = _Shared(_switch_often)


def collector_tuned() -> contextlib.AbstractContextManager[None]:
    """Leave what startup made out of every collection, and collect the young less often.

    ``gc.freeze`` moves every object alive now (modules, the app, its
    settings and clients: ~100,000 in a web process) into a generation that
    is never scanned: a full collection then scans only what was made since.
    Garbage alive at the freeze is kept for good; startup makes little.
    """
    return _collector.scope()


@contextlib.contextmanager
def tuned_for_web() -> Iterator[None]:
    """The web process's settings: the short switch interval and the tuned collector."""
    with _switching.scope(), _collector.scope():
        yield
