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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from app.queue import Submission

log = logging.getLogger("inlet.groupcommit")


class _Group:
    __slots__ = ("submissions", "events", "done", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.submissions: list[Submission] = []
        self.events = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None


Writer = Callable[[Sequence[Submission]], object]


@dataclass
class GroupCommit:
    """Collects requests into groups and writes each group once (see the module doc).

    ``write`` runs in a worker thread and raises when the group was not
    queued; every request of that group then sees the exception.
    """

    write: Writer
    max_events: int
    wait_seconds: float
    _pending: _Group | None = field(default=None, init=False)
    _in_flight: int = field(default=0, init=False)
    _flush_soon: bool = field(default=False, init=False)

    async def submit(self, submission: Submission) -> None:
        """Return once the group carrying ``submission`` is written; raise if it failed."""
        loop = asyncio.get_running_loop()
        size = len(submission.events)
        if size >= self.max_events:
            alone = _Group(loop)
            self._add(alone, submission)
            self._start(alone)
            await asyncio.shield(alone.done)
            return
        group = self._pending
        if group is not None and group.events + size > self.max_events:
            self._flush()
            group = None
        if group is None:
            group = self._pending = _Group(loop)
            group.timer = loop.call_later(self.wait_seconds, self._flush_if, group)
        self._add(group, submission)
        if group.events >= self.max_events:
            self._flush()
        elif self._in_flight == 0 and not self._flush_soon:
            # Nothing is being written: write on the loop's next turn, so
            # that every request handled in this turn shares the write.
            self._flush_soon = True
            loop.call_soon(self._flush_idle)
        # shield: a request cancelled while waiting (its client went away)
        # leaves its events in the group, which is written whole or not at all.
        await asyncio.shield(group.done)

    @staticmethod
    def _add(group: _Group, submission: Submission) -> None:
        group.submissions.append(submission)
        group.events += len(submission.events)

    def _flush_idle(self) -> None:
        self._flush_soon = False
        if self._in_flight == 0:
            self._flush()

    def _flush_if(self, group: _Group) -> None:
        if self._pending is group:
            self._flush()

    def _flush(self) -> None:
        group = self._pending
        if group is None:
            return
        self._pending = None
        self._start(group)

    def _start(self, group: _Group) -> None:
        if group.timer is not None:
            group.timer.cancel()
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._run(group))

    async def _run(self, group: _Group) -> None:
        try:
            await run_in_threadpool(self.write, group.submissions)
        except Exception as exc:
            log.warning(
                "group of %d requests not queued: %s: %s",
                len(group.submissions),
                type(exc).__name__,
                exc,
            )
            group.done.set_exception(exc)
            # Retrieved here so that a group whose every waiter went away
            # doesn't log "exception was never retrieved".
            group.done.exception()
        else:
            group.done.set_result(None)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._pending is not None:
                self._flush()
