"""Tools for the fault tests: a partner-like load client and a worker supervisor."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.processes import InletProcess, start_worker


def new_event(**changes: Any) -> dict[str, Any]:
    """An event no other test sent: fresh ids, and a payload of a realistic size."""
    return onside_event(
        event_name="Purchase_Completed",
        payload={"amount": "9.99", "currency": "USD", "note": "x" * 200},
        event_id=str(uuid.uuid4()),
        installation_id=str(uuid.uuid4()),
        **changes,
    )


@dataclass
class LoadReport:
    batches: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    acknowledged: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)

    def summary(self) -> str:
        return (
            f"batches={self.batches} acknowledged={len(self.acknowledged)} "
            f"rejected={len(self.rejected)} responses={dict(self.statuses)}"
        )


class LoadClient:
    """Sends batches like a careful partner: a 503, a 429 or a dropped
    connection means "send the same batch again"; a 204 means done; a 400 means
    the batch was bad and is not resent. Every `invalid_every`-th batch holds
    one invalid event, so none of its events may ever be stored.
    """

    def __init__(
        self,
        base_url: str,
        auth: dict[str, str],
        *,
        batch_size: int = 50,
        invalid_every: int = 7,
        timeout: float = 10.0,
        pace: float = 0.0,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, headers=auth, timeout=timeout)
        self.batch_size = batch_size
        self.invalid_every = invalid_every
        self.pace = pace  # seconds between batches, to spread the load over the faults
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def send(self, events: list[dict[str, Any]], deadline: float) -> int | None:
        """Send one batch until it gets a final answer (or the deadline passes)."""
        while time.monotonic() < deadline:
            try:
                response = self.http.post(URL, json={"events": events})
            except httpx.TransportError as exc:
                self.report.statuses[type(exc).__name__] += 1
                time.sleep(0.1)
                continue
            self.report.statuses[str(response.status_code)] += 1
            if response.status_code in (429, 503):
                time.sleep(min(float(response.headers.get("retry-after", "1")), 0.5))
                continue
            return response.status_code
        return None

    def run(self, batches: int, deadline: float) -> None:
        for n in range(batches):
            if self._stop.is_set():
                break
            if n and self.pace:
                time.sleep(self.pace)
            events = [new_event() for _ in range(self.batch_size)]
            invalid = self.invalid_every and n % self.invalid_every == self.invalid_every - 1
            if invalid:
                events[len(events) // 2]["event_id"] = "not-a-uuid"
            status = self.send(events, deadline)
            self.report.batches += 1
            ids = {e["event_id"] for e in events}
            if status == 204:
                assert not invalid, "an invalid batch was accepted"
                self.report.acknowledged |= ids
            elif status == 400:
                assert invalid, "a valid batch was refused"
                self.report.rejected |= ids
            elif status is not None:
                raise AssertionError(f"unexpected status {status}")

    def _run_in_thread(self, batches: int, deadline: float) -> None:
        # An exception raised here would reach only pytest's hook for
        # unhandled thread exceptions: kept for join() to raise instead.
        try:
            self.run(batches, deadline)
        except BaseException as exc:
            self._failure = exc

    def start(self, batches: int, seconds: float) -> LoadClient:
        deadline = time.monotonic() + seconds
        self._thread = threading.Thread(
            target=self._run_in_thread, args=(batches, deadline), daemon=True
        )
        self._thread.start()
        return self

    def join(self, timeout: float = 300) -> LoadReport:
        """Wait for the load to end; raise here, in the test's thread, what went wrong in it."""
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load client did not finish"
        self.http.close()
        if self._failure is not None:
            raise self._failure
        return self.report

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class WorkerPool:
    """Keeps N workers alive, as a process manager would after a crash."""

    def __init__(self, env: dict[str, str], log_dir: Path, size: int = 2) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started = 0
        self.workers: list[InletProcess] = []
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> InletProcess:
        self.started += 1
        worker = start_worker(self.env, self.log_dir / f"worker-{self.started}.log")
        self.workers.append(worker)
        return worker

    def supervise(self) -> None:
        """Replace any worker that has died."""
        for worker in list(self.workers):
            if not worker.alive:
                self.workers.remove(worker)
                worker.stop()
                self._spawn()

    def kill_one(self, index: int = 0) -> None:
        worker = self.workers.pop(index % len(self.workers))
        worker.kill()
        self._spawn()

    def kill_pid(self, pid: int) -> bool:
        """SIGKILL the worker with this process id and start another; False if none has it."""
        for index, worker in enumerate(self.workers):
            if worker.process.pid == pid:
                self.kill_one(index)
                return True
        return False

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
