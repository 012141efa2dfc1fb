"""The admin page's HTML: one self-contained document, inline CSS and SVG, no script.

Every value that came from outside (partner names, job ids, errors, events)
goes through ``esc``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

import orjson

from app.ops.failed import FailedJob, QueueState
from app.ops.stats import ACCEPTED, FAILED, REJECTED, WINDOW_MINUTES, PartnerHour

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:1rem;flex-wrap:wrap}.tile{border:1px solid #ccc;border-radius:6px;
padding:.5rem 1rem;min-width:9rem}.tile b{display:block;font-size:1.5rem}
.notice{background:#eef7ee;border:1px solid #9c9;padding:.5rem;border-radius:4px}
.err{font-family:monospace;font-size:12px;max-width:40rem;word-break:break-word}
form{display:inline}button{cursor:pointer}pre{background:#f7f7f7;padding:.6rem;
overflow:auto;font-size:12px;max-width:70rem}.muted{color:#777}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .2rem 0 .6rem}
"""
COLORS = {ACCEPTED: "#2e8540", REJECTED: "#e08e0b", FAILED: "#c0392b"}


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "none waiting"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def chart(partner: str, hour: PartnerHour) -> str:
    """A 60-bar stacked chart of the last hour, one bar a minute, oldest on the left."""
    width, height, bar = WINDOW_MINUTES * 4, 40, 3
    peak = max((sum(m.values()) for m in hour.per_minute), default=0) or 1
    rects = []
    for slot, minute in enumerate(hour.per_minute):
        y = float(height)
        for kind in (ACCEPTED, REJECTED, FAILED):
            if minute[kind]:
                h = max(minute[kind] / peak * height, 1.0)
                y -= h
                rects.append(
                    f'<rect x="{slot * 4}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                    f'fill="{COLORS[kind]}"/>'
                )
    label = (
        f"{partner}: per minute over the last hour, {hour.accepted} accepted, "
        f"{hour.rejected_total} rejected, {hour.failed} failed"
    )
    return (
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{esc(label)}</title>"
        f'<rect width="{width}" height="{height}" fill="#fafafa"/>{"".join(rects)}</svg>'
    )


def _button(action: str, label: str, csrf: str, extra: str = "") -> str:
    return (
        f'<form method="post" action="{esc(action)}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">{extra}'
        f'<button type="submit">{esc(label)}</button></form>'
    )


def _partners_section(hours: dict[str, PartnerHour] | None) -> str:
    if hours is None:
        return '<p class="muted">Counts unavailable (Redis does not answer).</p>'
    if not hours:
        return '<p class="muted">No traffic in the last hour.</p>'
    rows = []
    for partner, hour in hours.items():
        reasons = ", ".join(f"{esc(r)}: {n}" for r, n in sorted(hour.rejected.items())) or "—"
        rows.append(
            f'<tr data-partner="{esc(partner)}"><td>{esc(partner)}</td>'
            f'<td class="num accepted">{hour.accepted}</td>'
            f'<td class="num rejected">{hour.rejected_total}</td><td class="reasons">{reasons}</td>'
            f'<td class="num failed">{hour.failed}</td><td>{chart(partner, hour)}</td></tr>'
        )
    legend = "".join(f'<span style="background:{c}"></span>{k}' for k, c in COLORS.items())
    return (
        f'<table id="partners"><tr><th>partner</th><th>events accepted</th>'
        f"<th>requests rejected</th><th>by reason</th><th>events failed</th>"
        f"<th>last 60 minutes</th></tr>{''.join(rows)}</table>"
        f'<p class="legend muted">{legend}</p>'
    )


def _failed_section(failed: list[FailedJob] | None, csrf: str) -> str:
    if failed is None:
        return '<p class="muted">Failed jobs unavailable (Redis does not answer).</p>'
    if not failed:
        return "<p>No failed jobs.</p>"
    rows = []
    for job in failed:
        actions = (
            _button(f"/admin/failed/{job.job_id}/requeue", "Requeue", csrf)
            + " "
            + _button(f"/admin/failed/{job.job_id}/delete", "Delete", csrf)
        )
        rows.append(
            f'<tr class="failed-job" data-job-id="{esc(job.job_id)}">'
            f'<td><a href="/admin/failed/{esc(job.job_id)}">{esc(job.job_id)}</a></td>'
            f"<td>{esc(job.partner)}</td><td>{esc(job.endpoint)}</td>"
            f'<td class="num">{esc(job.events)}</td><td>{when(job.first_failure)}</td>'
            f'<td>{when(job.last_failure)}</td><td class="num">{job.attempts}</td>'
            f'<td class="err">{esc(job.error)}</td><td>{actions}</td></tr>'
        )
    requeue_all = _button("/admin/failed/requeue-all", "Requeue all failed jobs", csrf)
    return (
        f'<table id="failed"><tr><th>job</th><th>partner</th><th>endpoint</th>'
        f"<th>events</th><th>first failure</th><th>last failure</th><th>attempts</th>"
        f"<th>error</th><th></th></tr>{''.join(rows)}</table><p>{requeue_all}</p>"
    )


def document(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


def dashboard(
    *,
    admin: str,
    queue: QueueState | None,
    hours: dict[str, PartnerHour] | None,
    failed: list[FailedJob] | None,
    csrf: str,
    notice: str | None,
    extra: str = "",
) -> str:
    """The page; ``extra`` (HTML sections, already escaped) goes at the end."""
    if queue is None:
        tiles = '<p class="muted">Queue state unavailable (Redis does not answer).</p>'
    else:
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
        tiles = f'<div class="tiles">{tiles}</div>'
    notice_html = f'<p class="notice" id="notice">{esc(notice)}</p>' if notice else ""
    body = (
        f'<h1>Inlet</h1><p class="muted">Signed in as {esc(admin)} · '
        f'{when(datetime.now(UTC))} · <a href="/admin">refresh</a></p>{notice_html}'
        f"<h2>Queue</h2>{tiles}<h2>Partners, last hour</h2>{_partners_section(hours)}"
        f"<h2>Failed jobs</h2>{_failed_section(failed, csrf)}{extra}"
    )
    return document("Inlet admin", body)


def job_detail(job: FailedJob, events: list[Any], csrf: str) -> str:
    meta = orjson.dumps(job.meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    shown = "\n".join(orjson.dumps(e).decode() for e in events)
    actions = (
        _button(f"/admin/failed/{job.job_id}/requeue", "Requeue", csrf)
        + " "
        + _button(f"/admin/failed/{job.job_id}/delete", "Delete", csrf)
    )
    body = (
        f'<p><a href="/admin">← back</a></p><h1>Failed job {esc(job.job_id)}</h1>'
        f"<p>{esc(job.partner)} · {esc(job.endpoint)} · {esc(job.events)} events · "
        f"{job.attempts} attempts · first failure {when(job.first_failure)} · "
        f"last failure {when(job.last_failure)}</p><p>{actions}</p>"
        f'<h2>Error</h2><pre id="traceback">{esc(job.traceback or job.error)}</pre>'
        f"<h2>Metadata</h2><pre>{esc(meta)}</pre>"
        f"<h2>First {len(events)} events of the batch</h2><pre>{esc(shown)}</pre>"
    )
    return document(f"Failed job {job.job_id}", body)
