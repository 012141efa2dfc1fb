"""A failed job's page (verdict first, then the details) and the delete confirmation."""

from __future__ import annotations

from typing import Any

import orjson

from app.admin.page import (
    banners,
    button,
    code_spans,
    document,
    esc,
    header,
    health_panel,
    hidden,
    when,
)
from app.ops.causes import KIND_MEANING, verdict
from app.ops.failed import FailedJob


def last_line(traceback: str) -> str:
    """The traceback's last non-empty line, as Python prints it: where it ends."""
    lines = [line for line in traceback.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def verdict_box(job: FailedJob) -> str:
    cause = verdict(job.error)
    return (
        f'<section class="verdict {cause.kind}" id="verdict" data-cause="{cause.name}">'
        f'<h2 id="verdict-kind">{esc(KIND_MEANING[cause.kind])}</h2>'
        f'<p><b>Cause:</b> <span id="verdict-cause">{code_spans(cause.cause)}</span></p>'
        f'<p><b>What to do:</b> <span id="verdict-action">{code_spans(cause.action)}</span></p>'
        f'<p><b>Error:</b> <code id="error-line">{esc(job.error)}</code></p></section>'
    )


def job_detail(admin: str, job: FailedJob, events: list[Any], csrf: str) -> str:
    meta = orjson.dumps(job.meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    shown = "\n".join(orjson.dumps(e).decode() for e in events)
    traceback = job.traceback or job.error
    ending = last_line(traceback)
    requeue = button(f"/admin/failed/{job.job_id}/requeue", "Requeue", csrf)
    body = (
        f'{header(admin, csrf)}<p><a href="/admin">← all failed jobs</a></p>'
        f'<h1 style="overflow-wrap:anywhere">Failed job {esc(job.job_id)}</h1>'
        f"{verdict_box(job)}<p>{requeue}</p>"
        f"<h2>Details</h2><p>{esc(job.partner)} · {esc(job.endpoint)} · "
        f"{esc(job.events)} events · {job.attempts} attempts · "
        f"first failure {when(job.first_failure)} · last failure {when(job.last_failure)}</p>"
        f'<h2>Traceback</h2><p>It ends with:</p><pre id="traceback-last">{esc(ending)}</pre>'
        f'<details open><summary>the whole traceback</summary><pre id="traceback">'
        f"{esc(traceback)}</pre></details>"
        f"<h2>Metadata</h2><pre>{esc(meta)}</pre>"
        f"<h2>First {len(events)} events of the batch</h2><pre>{esc(shown)}</pre>"
        f'<section class="danger"><h2>Delete this job</h2><p>Deleting throws the batch away '
        f"for good. Requeue instead once the cause is fixed.</p>"
        f'<p><a id="delete-link" href="/admin/failed/{esc(job.job_id)}/delete">'
        f"Delete job {esc(job.job_id)}…</a></p></section>"
    )
    return document(f"Failed job {job.job_id}", body)


def confirm_delete(admin: str, job: FailedJob, csrf: str) -> str:
    """The confirmation step: a form of its own, so it works without JavaScript."""
    delete = button(
        f"/admin/failed/{job.job_id}/delete",
        "Delete for good",
        csrf,
        extra=hidden("confirm", "yes"),
        css="delete",
    )
    body = (
        f"{header(admin, csrf)}<h1>Delete failed job {esc(job.job_id)}?</h1>"
        f'<p class="banner" id="permanent-warning">This is permanent: the batch of '
        f"{esc(job.events)} events of {esc(job.partner)} is thrown away and will never be "
        f"stored. It cannot be undone.</p>"
        f"{verdict_box(job)}"
        f"<p>If the cause is fixed, requeue instead: nothing can be stored twice.</p>"
        f'<p>{delete} <a href="/admin/failed/{esc(job.job_id)}">Cancel, keep the job</a></p>'
    )
    return document(f"Delete failed job {job.job_id}?", body)


def unreadable(admin: str, problems: dict[str, str | None], csrf: str) -> str:
    """A job's page while Redis does not answer: what is down, and nothing else."""
    body = (
        f'{header(admin, csrf)}<p><a href="/admin">← admin page</a></p>{banners(problems)}'
        f"<h2>Health</h2>{health_panel(problems)}"
        "<p>The failed job can't be read now; reload once Redis answers.</p>"
    )
    return document("Failed job: Redis unavailable", body)
