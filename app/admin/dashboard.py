"""The dashboard's HTML: health, queue, partners' last hour, failed jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from app.admin.charts import chart
from app.admin.page import (
    age,
    banners,
    button,
    card_labels,
    document,
    esc,
    header,
    health_panel,
    when,
)
from app.ops.failed import FailedJob, QueueState
from app.ops.stats import UNKNOWN_PARTNER, PartnerHour

# The page lists the most recent failures; the tile and `inlet failed list` count them all.
PAGE_FAILED_JOBS = 100
FAILED_COLUMNS = [
    "job",
    "partner",
    "endpoint",
    "events",
    "first failure",
    "last failure",
    "attempts",
    "error",
    "",
]
PARTNER_COLUMNS = [
    "partner",
    "events accepted",
    "requests refused",
    "by reason",
    "events in failed jobs now",
    "last 60 minutes",
    "",
]


@dataclass
class Dashboard:
    """Everything the dashboard shows; None where its service did not answer."""

    admin: str
    problems: dict[str, str | None]
    queue: QueueState | None = None
    hours: dict[str, PartnerHour] | None = None
    failed: list[FailedJob] | None = None
    notice: str | None = None
    # Extra sections, already HTML: above the health panel, and below the partners.
    top: list[str] = field(default_factory=list)
    bottom: list[str] = field(default_factory=list)


def failed_events_now(failed: list[FailedJob]) -> dict[str, int]:
    """Per partner, the events of its batches in the failed registry now.

    A requeued or deleted job leaves the registry, so this falls back to 0
    once every failure is dealt with (unlike the last hour's count of
    failures, which is history).
    """
    counts: dict[str, int] = {}
    for job in failed:
        partner = job.partner or UNKNOWN_PARTNER
        counts[partner] = counts.get(partner, 0) + int(job.events or 0)
    return counts


def _tiles(queue: QueueState | None) -> str:
    if queue is None:
        return '<p class="muted">Queue state unavailable (Redis does not answer).</p>'
    tiles = "".join(
        f'<div class="tile" id="{key}"><b>{esc(value)}</b>{esc(label)}</div>'
        for key, value, label in (
            ("queue-depth", queue.depth, "jobs waiting"),
            ("oldest-age", age(queue.oldest_age_seconds), "oldest waiting job"),
            ("scheduled", queue.scheduled, "waiting to retry"),
            ("failed-count", queue.failed, "failed jobs"),
            ("workers", queue.workers, "workers alive"),
        )
    )
    return f'<div class="tiles">{tiles}</div>'


def _partners(hours: dict[str, PartnerHour] | None, failed: list[FailedJob] | None) -> str:
    if hours is None:
        return '<p class="muted">Counts unavailable (Redis does not answer).</p>'
    in_failed = failed_events_now(failed or [])
    names = sorted(set(hours) | set(in_failed))
    if not names:
        return '<p class="muted">No traffic in the last hour, and no failed jobs.</p>'
    rows = []
    for partner in names:
        hour = hours.get(partner) or PartnerHour()
        reasons = ", ".join(f"{esc(r)}: {n}" for r, n in sorted(hour.rejected.items())) or "—"
        now = esc(in_failed.get(partner, 0)) if failed is not None else "?"
        # Requests of no known partner have no partner to watch.
        live = (
            "—"
            if partner == UNKNOWN_PARTNER
            else f'<a href="/admin/live?partner={esc(quote(partner))}">watch live</a>'
        )
        rows.append(
            f'<tr data-partner="{esc(partner)}"><td>{esc(partner)}</td>'
            f'<td class="num accepted">{hour.accepted}</td>'
            f'<td class="num rejected">{hour.rejected_total}</td><td class="reasons">{reasons}</td>'
            f'<td class="num failed">{now}</td><td>{chart(hour)}</td><td>{live}</td></tr>'
        )
    head = "".join(f"<th>{esc(c)}</th>" for c in PARTNER_COLUMNS)
    return (
        f'{card_labels("partners", PARTNER_COLUMNS)}<table id="partners" class="cards">'
        f"<tr>{head}</tr>{''.join(rows)}</table>"
        '<p class="muted">Accepted and refused: the last 60 minutes. '
        "<b>Events in failed jobs now</b>: the events of this partner's batches that sit in "
        "the failed registry at this moment (requeued or deleted jobs no longer count). "
        "Each strip of the chart has its own scale, labelled with its busiest minute.</p>"
    )


def _failed(failed: list[FailedJob] | None, csrf: str) -> str:
    if failed is None:
        return '<p class="muted">Failed jobs unavailable (Redis does not answer).</p>'
    if not failed:
        return "<p>No failed jobs.</p>"
    rows = []
    for job in failed[:PAGE_FAILED_JOBS]:
        link = f"/admin/failed/{esc(job.job_id)}"
        rows.append(
            f'<tr class="failed-job" data-job-id="{esc(job.job_id)}">'
            f'<td><a href="{link}">{esc(job.job_id)}</a></td>'
            f"<td>{esc(job.partner)}</td><td>{esc(job.endpoint)}</td>"
            f'<td class="num">{esc(job.events)}</td><td>{when(job.first_failure)}</td>'
            f'<td>{when(job.last_failure)}</td><td class="num">{job.attempts}</td>'
            f'<td class="err">{esc(job.error)}</td>'
            f"<td>{button(f'/admin/failed/{job.job_id}/requeue', 'Requeue', csrf)}</td></tr>"
        )
    more = (
        f'<p class="muted">The newest {PAGE_FAILED_JOBS} of {len(failed)} are shown; '
        "<code>inlet failed list</code> lists them all.</p>"
        if len(failed) > PAGE_FAILED_JOBS
        else ""
    )
    requeue_all = button("/admin/failed/requeue-all", "Requeue all failed jobs", csrf)
    hint = (
        '<p class="muted">A job\'s id opens its page: the verdict (transient or permanent, '
        "the cause, what to do), the traceback, and Delete.</p>"
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in FAILED_COLUMNS)
    return (
        f'{card_labels("failed", FAILED_COLUMNS)}<table id="failed" class="cards">'
        f"<tr>{head}</tr>{''.join(rows)}</table>{more}{hint}<p>{requeue_all}</p>"
    )


def render(view: Dashboard, csrf: str) -> str:
    notice = f'<p class="notice" id="notice">{esc(view.notice)}</p>' if view.notice else ""
    body = (
        f"{header(view.admin, csrf)}{banners(view.problems)}{notice}"
        f"{''.join(view.top)}"
        f"<h2>Health</h2>{health_panel(view.problems)}"
        f"<h2>Queue</h2>{_tiles(view.queue)}"
        f"<h2>Partners, last hour</h2>{_partners(view.hours, view.failed)}"
        f"{''.join(view.bottom)}"
        f"<h2>Failed jobs</h2>{_failed(view.failed, csrf)}"
    )
    return document("Inlet admin", body)
