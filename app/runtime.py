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
from collections.abc import Iterator

# Every web request waits on two Redis calls made in worker threads (the rate
# limit's and its group's write), and a thread whose call returned needs the
# GIL back from the event loop. With CPython's default switch interval
# (5 ms) a busy loop kept it that long, twice a request: most of a single
# event's latency at half the peak rate.
GIL_SWITCH_SECONDS = 0.0005

# Objects the cyclic collector may allocate before it looks at the youngest
# ones (CPython's default: 700). A 1,000-event batch holds ~1,000 tracked
# dicts (its events) for as long as its request runs, so at 700 every batch
# set off a young collection that found them alive and moved them up, every
# tenth of those moved them into the oldest generation, and that filled up
# fast enough for a full collection, ~100 ms of the web process's ~100,000
# objects with the GIL held, every few seconds under load: the ingest p99.
# At 10,000 a young collection comes after several batches' worth, most of
# which have been freed by then (freed objects give their count back).
GC_YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def collector_tuned() -> Iterator[None]:
    """Leave what startup made out of every collection, and collect the young less often.

    ``gc.freeze`` moves every object alive now (modules, the app, its
    settings and clients: ~100,000 in a web process) into a generation that
    is never scanned: a full collection then scans only what was made since.
    Garbage alive at the freeze is kept for good; startup makes little.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextlib.contextmanager
def tuned_for_web() -> Iterator[None]:
    """The web process's settings: the short switch interval and the tuned collector."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    try:
        with collector_tuned():
            yield
    finally:
        sys.setswitchinterval(switch_interval)
