"""The admin page at ``/admin``: health, queue, per-partner counts, failed jobs, support tools.

Read-only views are GETs; requeue, delete and sign-out are POST forms carrying
a CSRF token (see ``app.admin.security``); deleting takes a confirmation
page first. Every Redis and database read of a page is bounded in time
(``app.admin.gather``): a page whose Redis is down or hung still renders
within about a second, with a banner saying what it cannot show.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.admin import gather, jobpage, live, lookup, quality, session
from app.admin.dashboard import Dashboard, render
from app.admin.responses import html, read_form, signed_in_pages
from app.admin.security import require_admin
from app.errors import NotFound
from app.ops import failed as failed_jobs
from app.ops import stats
from app.state import AppState

log = logging.getLogger("inlet.admin")

NOTICES = {
    "requeued": "Job {job} was requeued.",
    "deleted": "Job {job} was deleted.",
    "requeued-all": "{count} failed jobs were requeued.",
    "gone": "Job {job} is no longer failed (requeued or deleted already?).",
}


def _notice_signature(secret_key: bytes, admin: str, query: dict[str, str]) -> str:
    message = "notice|" + admin + "|" + urlencode(sorted(query.items()))
    return hmac.new(secret_key, message.encode(), hashlib.sha256).hexdigest()


def _notice(request: Request, admin: str) -> str | None:
    """The notice this page's own redirect asked for, or None.

    The redirect signs its query (INLET_SECRET_KEY, bound to the admin): a
    link made by anyone else, e.g. ``?done=requeued&job=<any sentence>``,
    shows nothing rather than the sentence on a trusted page.
    """
    params = request.query_params
    template = NOTICES.get(params.get("done", ""))
    if not template:
        return None
    query = {key: params[key] for key in ("done", "job", "count") if key in params}
    state: AppState = request.app.state.inlet
    expected = _notice_signature(state.settings.secret_key, admin, query)
    signature = params.get("sig", "").encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected.encode(), signature):
        return None
    return template.format(job=query.get("job", ""), count=query.get("count", ""))


@signed_in_pages
async def dashboard(request: Request) -> Response:
    admin = await require_admin(request)
    state: AppState = request.app.state.inlet
    health = await gather.health(state)
    read = gather.Read
    found = await gather.gather(
        state,
        health,
        {
            "queue": read(gather.REDIS, functools.partial(failed_jobs.queue_state, state.queue)),
            "hours": read(gather.REDIS, functools.partial(stats.last_hour, state.redis)),
            "failed": read(gather.REDIS, functools.partial(failed_jobs.list_failed, state.queue)),
            **lookup.dashboard_reads(state),
            "flagged": read(
                gather.DATABASE, functools.partial(quality.flagged_counts, state.engine)
            ),
        },
    )
    top, bottom = lookup.dashboard_sections(state, found)
    bottom.append(quality.section(found["flagged"]))
    view = Dashboard(
        admin=admin,
        problems=health.problems,
        queue=found["queue"],
        hours=found["hours"],
        failed=found["failed"],
        notice=_notice(request, admin),
        top=top,
        bottom=bottom,
    )
    return html(request, admin, lambda csrf: render(view, csrf))


class _Unreadable(Exception):
    """Redis did not answer for a job's page: the page says so, with the health panel."""

    def __init__(self, problems: dict[str, str | None]) -> None:
        self.problems = problems


async def _failed_job(request: Request, job_id: str) -> tuple[Any, list[Any]]:
    """The failed job and its first events, read within the page's time bound."""
    state: AppState = request.app.state.inlet
    health = await gather.health(state)

    def show() -> Any:
        try:
            return failed_jobs.show_failed(state.queue, job_id)
        except failed_jobs.FailedJobError as exc:
            return exc

    found = await gather.gather(state, health, {"job": gather.Read(gather.REDIS, show)})
    if found["job"] is None:
        problems = dict(health.problems)
        problems["redis"] = problems.get("redis") or "did not answer in time"
        raise _Unreadable(problems)
    if isinstance(found["job"], failed_jobs.FailedJobError):
        raise NotFound(str(found["job"]))
    job, events = found["job"]
    return job, events


def _unreadable(request: Request, admin: str, problems: dict[str, str | None]) -> Response:
    response = html(request, admin, lambda csrf: jobpage.unreadable(admin, problems, csrf), 503)
    response.headers["Retry-After"] = "5"
    return response


@signed_in_pages
async def job_detail(request: Request) -> Response:
    admin = await require_admin(request)
    try:
        job, events = await _failed_job(request, request.path_params["job_id"])
    except _Unreadable as exc:
        return _unreadable(request, admin, exc.problems)
    return html(request, admin, lambda csrf: jobpage.job_detail(admin, job, events, csrf))


@signed_in_pages
async def confirm_delete(request: Request) -> Response:
    admin = await require_admin(request)
    try:
        job, _ = await _failed_job(request, request.path_params["job_id"])
    except _Unreadable as exc:
        return _unreadable(request, admin, exc.problems)
    return html(request, admin, lambda csrf: jobpage.confirm_delete(admin, job, csrf))


def _back(request: Request, admin: str, **values: Any) -> RedirectResponse:
    state: AppState = request.app.state.inlet
    query = {key: str(value) for key, value in values.items()}
    query["sig"] = _notice_signature(state.settings.secret_key, admin, query)
    # 303: the browser follows with a GET, so a reload never repeats the POST.
    return RedirectResponse(f"/admin?{urlencode(query)}", status_code=303)


async def act_on_job(request: Request) -> Response:
    admin = await require_admin(request)
    form = await read_form(request, admin)
    state: AppState = request.app.state.inlet
    job_id, action = request.path_params["job_id"], request.path_params["action"]
    if action == "delete" and form.get("confirm") != "yes":
        # Only the confirmation page's form says yes: anything else is shown it first.
        return RedirectResponse(f"/admin/failed/{job_id}/delete", status_code=303)
    try:
        if action == "requeue":
            await state.run_redis(
                failed_jobs.requeue, state.queue, job_id, len(state.settings.retry_delays)
            )
        elif action == "delete":
            await state.run_redis(failed_jobs.delete, state.queue, job_id)
        else:
            raise NotFound()
    except failed_jobs.FailedJobError:
        return _back(request, admin, done="gone", job=job_id)
    log.info("admin %s: %s job %s", admin, action, job_id)
    return _back(request, admin, done="requeued" if action == "requeue" else "deleted", job=job_id)


async def requeue_all(request: Request) -> Response:
    admin = await require_admin(request)
    form = await read_form(request, admin)
    state: AppState = request.app.state.inlet
    done = await state.run_redis(
        failed_jobs.requeue_all,
        state.queue,
        len(state.settings.retry_delays),
        form.get("partner") or None,
    )
    log.info("admin %s: requeued %d failed jobs", admin, len(done))
    return _back(request, admin, done="requeued-all", count=len(done))


async def metrics_page(request: Request) -> Response:
    """``/metrics`` behind admin credentials: its labels name partners."""
    from app.ops.health import metrics_endpoint

    await require_admin(request)
    return await metrics_endpoint(request)


routes = [
    Route("/admin", dashboard, methods=["GET"]),
    *session.routes,
    *live.routes,
    *lookup.routes,
    Route("/admin/failed/requeue-all", requeue_all, methods=["POST"]),
    Route("/admin/failed/{job_id}", job_detail, methods=["GET"]),
    Route("/admin/failed/{job_id}/delete", confirm_delete, methods=["GET"]),
    Route("/admin/failed/{job_id}/{action}", act_on_job, methods=["POST"]),
    Route("/metrics", metrics_page, methods=["GET"]),
]
