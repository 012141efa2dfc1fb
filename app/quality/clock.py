"""Clock guards: events dated too far ahead of their receipt, or too long before it.

A partner's broken clock (a device set to 2036, a replayed backlog from
2019) otherwise lands silently and skews every report by event time. Per
partner (``app/policy.py``: ``future``, ``too_old`` and their limits), such
an event is accepted as sent, clamped to the receive time, or refused.

A clamped event keeps the time it was sent with, beside the clamped one
(``original_event_datetime``, Thrad ``original_timestamp``): in the queued
event, in its row and in the export. That original is also what stays the
same when a partner sends the same event again later (a clamped time is the
receive time, which differs per attempt), so anything keyed on event time,
such as deduplication, must read the original where there is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.policy import PartnerPolicy


@dataclass(frozen=True)
class ClockGuard:
    """One request's bounds: events after ``latest`` or before ``earliest`` are off."""

    received_at: datetime
    # None: no limit.
    latest: datetime | None
    earliest: datetime | None
    future: str
    too_old: str
    max_future_seconds: int
    max_age_days: int | None

    @classmethod
    def for_request(cls, policy: PartnerPolicy, received_at: datetime) -> ClockGuard:
        # A limit past what datetime can hold (a million years) is no limit.
        try:
            latest = received_at + timedelta(seconds=policy.max_future_seconds)
        except OverflowError:
            latest = None
        try:
            earliest = (
                received_at - timedelta(days=policy.max_age_days)
                if policy.max_age_days is not None
                else None
            )
        except OverflowError:
            earliest = None
        return cls(
            received_at=received_at,
            latest=latest,
            earliest=earliest,
            future=policy.future,
            too_old=policy.too_old,
            max_future_seconds=policy.max_future_seconds,
            max_age_days=policy.max_age_days,
        )

    @property
    def received_iso(self) -> str:
        return self.received_at.isoformat()

    @property
    def latest_ts(self) -> float:
        return math.inf if self.latest is None else self.latest.timestamp()

    @property
    def earliest_ts(self) -> float | None:
        return None if self.earliest is None else self.earliest.timestamp()

    def off(self, moment: datetime) -> tuple[str, str] | None:
        """(action, why) for an aware datetime outside the bounds; None inside them."""
        if self.latest is not None and moment > self.latest:
            return self.future, self._ahead(moment.timestamp())
        if self.earliest is not None and moment < self.earliest:
            return self.too_old, self._behind()
        return None

    def off_ts(self, seconds: float) -> tuple[str, str] | None:
        """``off`` for Unix seconds (Thrad's ``timestamp``)."""
        if seconds > self.latest_ts:
            return self.future, self._ahead(seconds)
        earliest = self.earliest_ts
        if earliest is not None and seconds < earliest:
            return self.too_old, self._behind()
        return None

    def _ahead(self, seconds: float) -> str:
        return (
            f"is {seconds - self.received_at.timestamp():.0f} s after the time it was received; "
            f"at most {self.max_future_seconds} s is allowed"
        )

    def _behind(self) -> str:
        return f"is more than {self.max_age_days} days before the time it was received"


def clamped_message(why: str) -> str:
    return f"{why}: clamped to the receive time (the time sent is kept)"
