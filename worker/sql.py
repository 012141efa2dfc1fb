"""SQL helpers that both formats' inserts use (``worker/onside.py``, ``worker/thrad.py``)."""

from __future__ import annotations

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
