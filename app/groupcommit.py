"""Group commit: many requests' events share one durable Redis write.

A request's cost used to be one MULTI/EXEC (and one fsync, with
``appendfsync always``) of its own, made in a worker thread: for a single
event that was most of the web tier's work. Databases solved this long ago:
transactions that commit together share one log flush, and each is
acknowledged only after the flush that carries it. Here:

- A validated request joins the pending group and waits for it.
- The group is written, in one MULTI/EXEC, when it holds
  ``INLET_GROUP_MAX_EVENTS`` events; when no write is in flight (on the
  loop's next turn, so the requests of one turn share it); and at the latest
  when it is ``INLET_GROUP_WAIT_MS`` old, even if another write is still in
  flight. A request that alone fills a group (a full batch) is written at
  once, by itself, with no wait.
- The write (``app.queue.enqueue_group``) holds one RQ job per (format,
  partner), so a failed job still names one partner, and lists the
  requests it carries.
- Every request of a group gets the group's outcome: 204 once the write
  succeeded, 503 with Retry-After if it failed (MULTI/EXEC is all or
  nothing, so a failed group left nothing queued).
- A request whose client goes away is still written or not with its group,
  never half: the group, not the waiting request, owns the events.

The same coalescing serves the per-partner rate limit: the hits of the
requests of one loop turn go to Redis in one pipeline, from one thread,
each request getting its own answer (app/state.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

log = logging.getLogger("inlet.groupcommit")


T = TypeVar("T")
R = TypeVar("R")


class _Group(Generic[T, R]):
    __slots__ = ("items", "size", "done", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[T] = []
        self.size = 0
        self.done: asyncio.Future[Sequence[R]] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None


class Coalescer(Generic[T, R]):
    """Runs ``run(items)`` in a worker thread for many callers' items at once.

    An item joins the pending group and its caller waits for the group's
    run. A group runs on the loop's next turn when no run is in flight,
    when its items reach ``max_size`` (by ``size``), or ``wait_seconds``
    after it opened even while another run is in flight; an item that alone
    reaches ``max_size`` runs at once, by itself. ``run`` returns one result
    per item, in order, or raises, and then every caller of the group sees
    the exception.
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_size: int,
        wait_seconds: float,
        size: Callable[[T], int] = lambda item: 1,
        name: str = "group",
    ) -> None:
        self.run = run
        self.max_size = max_size
        self.wait_seconds = wait_seconds
        self.size = size
        self.name = name
        self._pending: _Group[T, R] | None = None
        self._in_flight = 0
        self._flush_soon = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def submit(self, item: T) -> R:
        """Return ``item``'s result once its group ran; raise if the run failed."""
        loop = asyncio.get_running_loop()
        size = self.size(item)
        if size >= self.max_size:
            alone: _Group[T, R] = _Group(loop)
            self._add(alone, item, size)
            self._start(alone)
            return (await asyncio.shield(alone.done))[0]
        group = self._pending
        if group is not None and group.size + size > self.max_size:
            self._flush()
            group = None
        if group is None:
            group = self._pending = _Group(loop)
            group.timer = loop.call_later(self.wait_seconds, self._flush_if, group)
        index = len(group.items)
        self._add(group, item, size)
        if group.size >= self.max_size:
            self._flush()
        elif self._in_flight == 0 and not self._flush_soon:
            # Nothing is running: run on the loop's next turn, so that every
            # caller handled in this turn shares the run.
            self._flush_soon = True
            loop.call_soon(self._flush_idle)
        # shield: a caller cancelled while waiting (its client went away)
        # leaves its item in the group, which runs whole or not at all.
        return (await asyncio.shield(group.done))[index]

    @staticmethod
    def _add(group: _Group[T, R], item: T, size: int) -> None:
        group.items.append(item)
        group.size += size

    def _flush_idle(self) -> None:
        self._flush_soon = False
        if self._in_flight == 0:
            self._flush()

    def _flush_if(self, group: _Group[T, R]) -> None:
        if self._pending is group:
            self._flush()

    def _flush(self) -> None:
        group = self._pending
        if group is None:
            return
        self._pending = None
        self._start(group)

    def _start(self, group: _Group[T, R]) -> None:
        if group.timer is not None:
            group.timer.cancel()
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._run(group))

    async def _run(self, group: _Group[T, R]) -> None:
        try:
            results = await run_in_threadpool(self.run, group.items)
        except Exception as exc:
            log.warning(
                "%s of %d failed: %s: %s", self.name, len(group.items), type(exc).__name__, exc
            )
            group.done.set_exception(exc)
            # Retrieved here so that a group whose every caller went away
            # doesn't log "exception was never retrieved".
            group.done.exception()
        else:
            group.done.set_result(results)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._pending is not None:
                self._flush()
