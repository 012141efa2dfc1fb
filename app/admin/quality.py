"""The admin page's data-quality section: flagged events per partner, last 24 hours.

Flagged means stored with schema violations (warn mode, or an unknown event
name under ``warn``) or with a clamped time (the original kept). Both event
tables have a partial index on exactly those rows (migration 0004), so the
count reads the flagged rows of the window and nothing else, however many
events landed beside them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.admin.page import esc
from app.db import events, partners, thrad_events

log = logging.getLogger("inlet.admin")
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Flagged:
    partner: str
    violations: int
    clamped: int


def _counts(
    table: sa.Table, clamped_column: sa.ColumnElement[object], since: datetime
) -> sa.Select[Any]:
    flagged = sa.or_(table.c.violations.is_not(None), clamped_column.is_not(None))
    return (
        sa.select(
            table.c.partner_id,
            sa.func.sum(sa.case((table.c.violations.is_not(None), 1), else_=0)),
            sa.func.sum(sa.case((clamped_column.is_not(None), 1), else_=0)),
        )
        .where(flagged, table.c.received_at >= since)
        .group_by(table.c.partner_id)
    )


def flagged_counts(engine: Engine, now: datetime | None = None) -> list[Flagged]:
    """Per partner with any: events stored with violations, and with a clamped time."""
    since = (now or datetime.now(UTC)) - WINDOW
    totals: dict[int, list[int]] = {}
    with engine.connect() as conn:
        names = {
            row.id: row.name for row in conn.execute(sa.select(partners.c.id, partners.c.name))
        }
        for query in (
            _counts(events, events.c.original_event_datetime, since),
            _counts(thrad_events, thrad_events.c.original_timestamp, since),
        ):
            for partner_id, violations, clamped in conn.execute(query):
                total = totals.setdefault(partner_id, [0, 0])
                total[0] += int(violations or 0)
                total[1] += int(clamped or 0)
    return sorted(
        (Flagged(names.get(pid, str(pid)), v, c) for pid, (v, c) in totals.items()),
        key=lambda f: f.partner,
    )


def try_flagged_counts(engine: Engine) -> list[Flagged] | None:
    """``flagged_counts``, or None when the database does not answer."""
    try:
        return flagged_counts(engine)
    except SQLAlchemyError as exc:
        log.warning("admin page: database unavailable: %s", type(exc).__name__)
        return None


def section(flagged: list[Flagged] | None) -> str:
    """The HTML section (heading included)."""
    heading = "<h2>Data quality, last 24 hours</h2>"
    if flagged is None:
        return heading + '<p class="muted">Unavailable (the database does not answer).</p>'
    if not flagged:
        return heading + '<p class="muted" id="quality-none">No flagged events.</p>'
    rows = "".join(
        f'<tr><td>{esc(f.partner)}</td><td class="num">{f.violations}</td>'
        f'<td class="num">{f.clamped}</td></tr>'
        for f in flagged
    )
    return (
        heading + '<table id="quality"><tr><th>partner</th><th>with schema violations</th>'
        f"<th>with a clamped time</th></tr>{rows}</table>"
    )
