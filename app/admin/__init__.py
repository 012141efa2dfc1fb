"""The admin page at ``/admin``: queue health, per-partner counts, failed jobs.

Read-only views are GETs; requeue and delete are POST forms carrying a CSRF
token (see ``app.admin.security``). A page whose Redis is down still renders,
saying what it cannot show.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import parse_qs, urlencode

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from app.admin import page, quality
from app.admin.security import (
    CSRF_COOKIE,
    check_csrf,
    csrf_token,
    new_csrf_cookie,
    require_admin,
)
from app.errors import InvalidRequest, NotFound
from app.ops import failed as failed_jobs
from app.ops import stats
from app.request.body import read_body
from app.request.client import forwarded_scheme
from app.state import AppState

log = logging.getLogger("inlet.admin")

MAX_FORM_BYTES = 4096
# The page lists the most recent failures; the tile and `inlet failed list` count them all.
PAGE_FAILED_JOBS = 100
# The page shows everything it knows; frames, scripts and other origins get nothing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
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


def _https(request: Request, state: AppState) -> bool:
    """Whether the browser used https: itself, or through a trusted TLS proxy."""
    peer = request.client.host if request.client else None
    forwarded = forwarded_scheme(peer, request.headers, state.settings.trusted_proxies)
    return request.url.scheme == "https" or forwarded == "https"


def _html(request: Request, admin: str, render) -> Response:  # type: ignore[no-untyped-def]
    """Render with this browser's CSRF token, setting the cookie on first visit."""
    state: AppState = request.app.state.inlet
    sent = request.cookies.get(CSRF_COOKIE)
    fresh = sent is None
    cookie = new_csrf_cookie() if sent is None else sent
    response = HTMLResponse(
        render(csrf_token(state.settings.secret_key, cookie, admin)), headers=SECURITY_HEADERS
    )
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=_https(request, state),
        )
    return response


def _try(call, *args: Any) -> Any:  # type: ignore[no-untyped-def]
    try:
        return call(*args)
    except RedisError as exc:
        log.warning("admin page: redis unavailable: %s", type(exc).__name__)
        return None


async def dashboard(request: Request) -> Response:
    admin = await require_admin(request)
    state: AppState = request.app.state.inlet

    def gather() -> tuple[Any, Any, Any, Any]:
        return (
            _try(failed_jobs.queue_state, state.queue),
            _try(stats.last_hour, state.redis),
            _try(failed_jobs.list_failed, state.queue, None, PAGE_FAILED_JOBS),
            quality.try_flagged_counts(state.engine),
        )

    queue, hours, failed, flagged = await run_in_threadpool(gather)
    notice = _notice(request, admin)
    return _html(
        request,
        admin,
        lambda csrf: page.dashboard(
            admin=admin,
            queue=queue,
            hours=hours,
            failed=failed,
            csrf=csrf,
            notice=notice,
            extra=quality.section(flagged),
        ),
    )


async def job_detail(request: Request) -> Response:
    admin = await require_admin(request)
    state: AppState = request.app.state.inlet
    job_id = request.path_params["job_id"]
    try:
        job, events = await state.run_redis(failed_jobs.show_failed, state.queue, job_id)
    except failed_jobs.FailedJobError as exc:
        raise NotFound(str(exc)) from None
    return _html(request, admin, lambda csrf: page.job_detail(job, events, csrf))


async def _form(request: Request, admin: str) -> dict[str, str]:
    state: AppState = request.app.state.inlet
    body = await read_body(request, MAX_FORM_BYTES, state.settings.body_timeout)
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form could not be read") from None
    form = {key: values[0] for key, values in fields.items()}
    check_csrf(request, admin, form.get("csrf"))
    return form


def _back(request: Request, admin: str, **values: Any) -> RedirectResponse:
    state: AppState = request.app.state.inlet
    query = {key: str(value) for key, value in values.items()}
    query["sig"] = _notice_signature(state.settings.secret_key, admin, query)
    # 303: the browser follows with a GET, so a reload never repeats the POST.
    return RedirectResponse(f"/admin?{urlencode(query)}", status_code=303)


async def act_on_job(request: Request) -> Response:
    admin = await require_admin(request)
    await _form(request, admin)
    state: AppState = request.app.state.inlet
    job_id, action = request.path_params["job_id"], request.path_params["action"]
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
    form = await _form(request, admin)
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
    Route("/admin/failed/requeue-all", requeue_all, methods=["POST"]),
    Route("/admin/failed/{job_id}", job_detail, methods=["GET"]),
    Route("/admin/failed/{job_id}/{action}", act_on_job, methods=["POST"]),
    Route("/metrics", metrics_page, methods=["GET"]),
]
