"""Deletion on request: every stored row and failed-job event of one identifier.

``inlet events delete --partner NAME --client-id ID`` (or
``--installation-id``, ``--session-id``) runs ``delete_identifier``, which

1. writes a **tombstone** in Redis first: a keyed hash of the identifier in
   the partner's sorted set ``inlet:tombstones:<partner id>``, scored with
   its expiry (INLET_TOMBSTONE_HOURS). The worker drops a queued event that
   carries a live tombstone instead of inserting it (``drop_tombstoned``),
   so an event still in the queue, or waiting for a retry, is deleted when
   it lands;
2. removes the identifier's events from the partner's **failed jobs**
   (RQ's failed registry keeps a failed batch for a year): each job's
   arguments are rewritten without them, and a job left with none is
   deleted;
3. deletes the partner's **stored rows** of both formats and writes the
   **audit row** (``deletion_audit``) in one SQL transaction: who, when,
   which kind of identifier, its keyed hash (never the identifier itself),
   how many rows and failed-job events. A deletion that finds nothing is
   audited too: it is the record that a request was carried out.

Which rows carry an identifier: Onside's ``installation_id`` (a UUID) is a
column of ``events``; Thrad's ``client_id`` and ``session_id`` are columns of
``thrad_events``. Identifiers inside a payload or params are not searched.

A job of the partner that a worker was already running when the tombstone
was written may have read the tombstones before it: the deletion waits for
such jobs to end (at most ``wait_seconds``, the job timeout) before it
deletes rows and scrubs failed jobs. A dry run counts the same rows and
events and changes nothing (no tombstone, no audit row, no wait).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from sqlalchemy.engine import Engine

from app.db import deletion_audit, thrad_events
from app.db import events as onside_events

log = logging.getLogger("inlet.deletion")

# Identifier kind -> the endpoint whose events carry it, as a field of the
# queued event and a column of that format's table.
IDENTIFIER_KINDS = {
    "installation_id": "onside",
    "client_id": "thrad",
    "session_id": "thrad",
}
_TABLES = {"onside": onside_events, "thrad": thrad_events}
TOMBSTONE_KEY = "inlet:tombstones:{partner_id}"


class DeletionError(Exception):
    """A deletion that can't be done, with a message for the operator."""


def normalize_identifier(kind: str, value: str) -> str:
    """The identifier as the queue and the tables hold it; DeletionError if it can't be one."""
    if kind not in IDENTIFIER_KINDS:
        raise DeletionError(f"unknown identifier kind {kind!r}")
    if kind == "installation_id":
        try:
            # Queued and stored lowercased (app/onside/validate.py).
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise DeletionError(f"--installation-id must be a UUID, not {value!r}") from None
    if not value.strip():
        raise DeletionError(f"--{kind.replace('_', '-')} must not be empty")
    return value


def identifier_hash(secret_key: bytes, partner_id: int, kind: str, value: str) -> str:
    """Keyed hash of one partner's identifier: what tombstones and the audit hold.

    Keyed with INLET_SECRET_KEY, so whoever reads the audit or Redis can't
    test guesses against it; support can still answer "was X deleted?" by
    hashing X again (``inlet events deletions --partner P --client-id X``).
    """
    message = f"inlet deletion v1\x00{partner_id}\x00{kind}\x00{value}".encode(
        "utf-8", "surrogatepass"
    )
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


# --- Tombstones ---------------------------------------------------------------


def add_tombstone(redis: Redis, partner_id: int, digest: str, hours: float) -> float:
    """Keep ``digest`` for ``hours``; return when it expires (Unix seconds).

    The set itself expires with its last tombstone, and expired ones are
    trimmed on every write, so it holds only the live ones.
    """
    key = TOMBSTONE_KEY.format(partner_id=partner_id)
    now = time.time()
    expires = now + hours * 3600
    with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {digest: expires})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zrange(key, -1, -1, withscores=True)
        *_, last = pipe.execute()
    latest = max([expires, *(score for _, score in last)])
    redis.expireat(key, int(latest) + 1)
    return expires


def live_tombstones(redis: Redis, partner_id: int) -> frozenset[str]:
    """The partner's tombstones that have not expired."""
    key = TOMBSTONE_KEY.format(partner_id=partner_id)
    found = redis.zrangebyscore(key, f"({time.time()}", "+inf")
    return frozenset(d.decode() if isinstance(d, bytes) else str(d) for d in found)


def event_hashes(
    event: dict[str, Any], endpoint: str, secret_key: bytes, partner_id: int
) -> Iterable[str]:
    """The hashes of the identifiers an event carries."""
    for kind, owner in IDENTIFIER_KINDS.items():
        value = event.get(kind) if owner == endpoint else None
        if isinstance(value, str) and value:
            yield identifier_hash(secret_key, partner_id, kind, value)


def drop_tombstoned(
    events: Sequence[dict[str, Any]],
    endpoint: str,
    tombstones: frozenset[str],
    secret_key: bytes,
    partner_id: int,
) -> list[dict[str, Any]]:
    """The events that carry no tombstoned identifier."""
    if not tombstones:
        return list(events)
    return [
        event
        for event in events
        if tombstones.isdisjoint(event_hashes(event, endpoint, secret_key, partner_id))
    ]


# --- Failed jobs --------------------------------------------------------------


def _endpoint_of(job: Job) -> str | None:
    endpoint = (job.meta or {}).get("endpoint")
    if endpoint in _TABLES:
        return str(endpoint)
    name = job.func_name or ""
    return next((e for e in _TABLES if name.endswith("ingest_" + e)), None)


def _scrub_failed(
    queue: Queue, partner_id: int, kind: str, value: str, dry_run: bool
) -> tuple[int, int]:
    """Remove the identifier's events from the partner's failed jobs; return
    (events removed, jobs changed). Jobs left empty are deleted."""
    registry = FailedJobRegistry(queue=queue)
    endpoint = IDENTIFIER_KINDS[kind]
    removed = changed = 0
    for job_id in registry.get_job_ids():
        for _ in range(10):
            count = _scrub_one(queue, registry, job_id, partner_id, endpoint, kind, value, dry_run)
            if count is not None:
                break
        else:
            raise DeletionError(f"failed job {job_id} kept changing; run the deletion again")
        if count:
            removed += count
            changed += 1
    return removed, changed


def _scrub_one(
    queue: Queue,
    registry: FailedJobRegistry,
    job_id: str,
    partner_id: int,
    endpoint: str,
    kind: str,
    value: str,
    dry_run: bool,
) -> int | None:
    """Events removed from one failed job (0: none of it); None: it changed meanwhile."""
    redis: Redis = queue.connection
    with redis.pipeline() as pipe:
        job_key = queue.job_class.key_for(job_id)
        try:
            # Watched, like a requeue: someone requeueing or deleting the job
            # at the same time makes this attempt start over.
            pipe.watch(registry.key, job_key)
            job = queue.fetch_job(job_id)
            if job is None or pipe.zscore(registry.key, job_id) is None:
                return 0
            args = list(job.args)
            if len(args) != 3 or args[0] != partner_id or _endpoint_of(job) != endpoint:
                return 0
            events = args[2] if isinstance(args[2], list) else []
            kept = [e for e in events if not (isinstance(e, dict) and e.get(kind) == value)]
            count = len(events) - len(kept)
            if not count or dry_run:
                return count
            pipe.multi()
            if kept:
                job.args = (args[0], args[1], kept)
                job.meta["events"] = len(kept)
                job.save(pipeline=pipe)
            else:
                # What Job.delete removes, written here so that it joins this
                # MULTI (Job.delete reads the job's status on its way).
                pipe.zrem(registry.key, job_id)
                pipe.delete(
                    job.key, job.dependents_key, job.dependencies_key, Result.get_key(job_id)
                )
            pipe.execute()
            return count
        except WatchError:
            return None


# --- Jobs running at the time of the tombstone ------------------------------------


def _running_jobs(queue: Queue, partner_name: str) -> set[str]:
    """The started-registry entries (``job_id:execution_id``) of the partner's jobs.

    Read raw: the registry's own ``get_job_ids`` first runs its cleanup,
    which moves abandoned jobs about, and that is a worker's business.
    """
    registry = StartedJobRegistry(queue=queue)
    running: set[str] = set()
    for raw in queue.connection.zrange(registry.key, 0, -1):
        entry = raw.decode() if isinstance(raw, bytes) else str(raw)
        job_id = entry.split(":", 1)[0]
        job = queue.fetch_job(job_id)
        # A job of unknown owner is waited for too: waiting is the safe side.
        if job is None or (job.meta or {}).get("partner") in (partner_name, None):
            running.add(entry)
    return running


def _wait_for(queue: Queue, entries: set[str], timeout: float) -> bool:
    """Wait until none of the entries is in the started registry; False on timeout."""
    key = StartedJobRegistry(queue=queue).key
    deadline = time.monotonic() + timeout
    while entries:
        entries = {e for e in entries if queue.connection.zscore(key, e) is not None}
        if not entries:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- The deletion ---------------------------------------------------------------


@dataclass(frozen=True)
class Deletion:
    partner: str
    identifier_kind: str
    identifier_hash: str
    dry_run: bool
    onside_rows: int
    thrad_rows: int
    failed_events: int
    failed_jobs: int
    actor: str
    tombstone_expires_at: str | None

    @property
    def found(self) -> int:
        return self.onside_rows + self.thrad_rows + self.failed_events

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "found": self.found}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def delete_identifier(
    engine: Engine,
    queue: Queue,
    *,
    secret_key: bytes,
    tombstone_hours: float,
    partner_id: int,
    partner_name: str,
    kind: str,
    value: str,
    actor: str,
    dry_run: bool = False,
    wait_seconds: float = 30.0,
) -> Deletion:
    """Delete (or, with ``dry_run``, count) everything the partner holds of one identifier."""
    value = normalize_identifier(kind, value)
    digest = identifier_hash(secret_key, partner_id, kind, value)
    table = _TABLES[IDENTIFIER_KINDS[kind]]
    match = sa.and_(table.c.partner_id == partner_id, table.c[kind] == value)
    expires = None
    if not dry_run:
        # First, so that nothing of this identifier lands from the queue while
        # the rest runs, nor for INLET_TOMBSTONE_HOURS after.
        expires = add_tombstone(queue.connection, partner_id, digest, tombstone_hours)
        # A job that was already running may have read the tombstones before
        # this one was written: its rows are deleted below once it is done
        # (or has failed, and is scrubbed below). A job started from now on
        # reads the new tombstone. Bounded by the job timeout: past it RQ
        # stops the job, and its retry reads the tombstone.
        if not _wait_for(queue, _running_jobs(queue, partner_name), wait_seconds):
            log.warning("deletion: a job of %s still running; deleting anyway", partner_name)
    failed_events, failed_jobs = _scrub_failed(queue, partner_id, kind, value, dry_run)
    with engine.begin() as conn:
        if dry_run:
            rows = conn.execute(sa.select(sa.func.count()).where(match)).scalar_one()
        else:
            rows = conn.execute(table.delete().where(match)).rowcount
        result = Deletion(
            partner=partner_name,
            identifier_kind=kind,
            identifier_hash=digest,
            dry_run=dry_run,
            onside_rows=rows if table is onside_events else 0,
            thrad_rows=rows if table is thrad_events else 0,
            failed_events=failed_events,
            failed_jobs=failed_jobs,
            actor=actor,
            tombstone_expires_at=_iso(expires) if expires else None,
        )
        if not dry_run:
            conn.execute(
                deletion_audit.insert().values(
                    deleted_at=datetime.now(UTC),
                    actor=actor,
                    partner_id=partner_id,
                    identifier_kind=kind,
                    identifier_hash=digest,
                    onside_rows=result.onside_rows,
                    thrad_rows=result.thrad_rows,
                    failed_events=failed_events,
                )
            )
    if not dry_run:
        log.info(
            "deletion for partner %s by %s: %s %s…, %d rows, %d failed-job events",
            partner_name,
            actor,
            kind,
            digest[:12],
            rows,
            failed_events,
        )
    return result


def audit_rows(
    engine: Engine, partner_id: int, identifier_hash: str | None = None
) -> list[sa.Row[Any]]:
    """The partner's deletions, oldest first (those of one identifier hash, if given)."""
    query = (
        sa.select(deletion_audit)
        .where(deletion_audit.c.partner_id == partner_id)
        .order_by(deletion_audit.c.id)
    )
    if identifier_hash is not None:
        query = query.where(deletion_audit.c.identifier_hash == identifier_hash)
    with engine.connect() as conn:
        return list(conn.execute(query))
