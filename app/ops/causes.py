"""Why a job failed, and what support does about it: one table for the page and the runbook.

The failed-job page and ``inlet failed show`` open with the verdict of the
first cause whose pattern matches the job's error line; docs/runbook.md
holds the same table, written by ``python -m app.ops.causes --markdown``
(tests/test_admin_support.py checks it is fresh). Order matters: the first
match wins, the last entry catches all.

"Transient" means a later attempt can succeed once its cause is gone (requeue
then); "permanent" means the same batch would fail the same way again.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

TRANSIENT, PERMANENT = "transient", "permanent"
# How the page and `inlet failed show` say each kind.
KIND_MEANING = {
    TRANSIENT: "Transient: a later attempt can succeed once the cause is gone.",
    PERMANENT: "Permanent: this batch would fail the same way again.",
}
RUNBOOK_START = "<!-- causes table: python -m app.ops.causes --markdown -->"
RUNBOOK_END = "<!-- end of causes table -->"


@dataclass(frozen=True)
class Cause:
    name: str
    example: str  # what the error column shows, for the runbook
    pattern: re.Pattern[str] | None  # None: the catch-all
    kind: str
    cause: str
    action: str

    def matches(self, error: str) -> bool:
        return self.pattern is None or self.pattern.search(error) is not None


def _re(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


CAUSES: tuple[Cause, ...] = (
    Cause(
        "partner-gone",
        "`IntegrityError ... foreign key`",
        _re(r"foreign key|ForeignKeyViolation"),
        PERMANENT,
        "The partner (or Thrad API key) the job names no longer exists: its rows were refused.",
        "Don't requeue. Delete the job if removing the partner was intended.",
    ),
    Cause(
        "data-refused",
        "`DataError`, `index row size ... exceeds maximum`",
        _re(r"DataError|index row size|value too long|out of range|invalid input"),
        PERMANENT,
        "The database refuses this batch's data; another attempt fails the same way.",
        "Keep the job; copy `inlet failed show JOB_ID` into a ticket for the developers.",
    ),
    Cause(
        "worker-died",
        "`AbandonedJobError`",
        _re(r"AbandonedJobError"),
        TRANSIENT,
        "A worker died mid-job and the job had no retries left.",
        "Requeue.",
    ),
    Cause(
        "job-timeout",
        "`JobTimeoutException`",
        _re(r"JobTimeoutException"),
        TRANSIENT,
        "The job ran past its time limit: a slow or locked database.",
        "Check the database for locks and load, then requeue.",
    ),
    Cause(
        "database-unreachable",
        "`OperationalError: ... connection refused` / `timeout`",
        _re(r"OperationalError|InterfaceError|DisconnectionError|connection refused|timed? ?out"),
        TRANSIENT,
        "The database was unreachable for longer than the retries (`INLET_RETRY_DELAYS`).",
        "Fix the database (`/readyz` says whether it answers), then requeue.",
    ),
    Cause(
        "unknown",
        "anything else",
        None,
        PERMANENT,
        "Not a known cause: most likely a bug.",
        "Keep the job; copy `inlet failed show JOB_ID` into a ticket for the developers; "
        "requeue once it is fixed.",
    ),
)


def verdict(error: str) -> Cause:
    """The first cause whose pattern matches ``error`` (a job's one-line error)."""
    return next(cause for cause in CAUSES if cause.matches(error))


def markdown() -> str:
    """The runbook's table, between its two marker lines."""
    rows = [
        RUNBOOK_START,
        "| the error says | kind | cause | what to do |",
        "|---|---|---|---|",
        *(f"| {c.example} | {c.kind} | {c.cause} | {c.action} |" for c in CAUSES),
        RUNBOOK_END,
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m app.ops.causes --markdown")
    print(markdown())
