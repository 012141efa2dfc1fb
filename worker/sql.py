"""SQL helpers that both formats' inserts use (``worker/onside.py``, ``worker/thrad.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """The INSERT with ON CONFLICT support of the connection's database."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database: {dialect}")


@dataclass(frozen=True)
class Batch:
    """One job's events, as a worker's take (several jobs in one transaction) hands them over."""

    partner_id: int
    received_at: datetime
    events: list[Any]
    job_id: str | None


def require_owners_sql(partner_ids: Iterable[int], api_key_ids: Iterable[int] = ()) -> str:
    """The statement that checks, once for a transaction, what the event
    tables' foreign keys checked row by row on PostgreSQL (migration 0008):
    each partner (and API key) the rows name exists, locked FOR KEY SHARE
    until the commit; else SQLSTATE 23503, a permanent failure.

    A literal, to travel in one round trip with the transaction's first
    statements: the ids are the job's integers.
    """
    return f"SELECT inlet_require_owners({_integers(partner_ids)}, {_integers(api_key_ids)})"


def _integers(values: Iterable[int]) -> str:
    # int(): a job's data comes from Redis; nothing but a number gets into the text.
    return "ARRAY[" + ", ".join(str(int(v)) for v in sorted(set(values))) + "]::integer[]"
