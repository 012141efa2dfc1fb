"""Sign in to ``/admin`` with a form, and sign out.

The form posts a username and password (and a CSRF token bound to this
browser's cookie, so no other site can sign a browser in under its own
account). A wrong password counts toward the address's failed-login limit,
exactly like a wrong Basic password; past it the form answers 429. A right
one sets the session cookie (see ``app.admin.security``) and goes back to
the page that asked for it.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.admin.page import document, esc, hidden
from app.admin.responses import html, https, local_path, read_form
from app.admin.security import (
    SESSION_COOKIE,
    check_password,
    new_session,
    require_admin,
    session_admin,
)
from app.errors import TooManyFailedLogins
from app.state import AppState

log = logging.getLogger("inlet.admin")

# The CSRF token of the sign-in form is bound to no admin yet.
NOBODY = ""


def _form(csrf: str, next_path: str, message: str = "", username: str = "") -> str:
    problem = f'<p class="banner" id="sign-in-error" role="alert">{esc(message)}</p>'
    body = (
        "<h1>Inlet admin</h1><h2>Sign in</h2>"
        f"{problem if message else ''}"
        '<form method="post" action="/admin/sign-in" id="sign-in" style="display:block">'
        f"{hidden('csrf', csrf)}{hidden('next', next_path)}"
        '<p><label>Username<br><input name="username" autocomplete="username" required '
        f'value="{esc(username)}"></label></p>'
        '<p><label>Password<br><input name="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        '<p><button type="submit">Sign in</button></p></form>'
        '<p class="muted">An admin login comes from <code>inlet admin create NAME</code>; '
        "partner credentials do not work here.</p>"
    )
    return document("Sign in · Inlet admin", body)


async def sign_in_page(request: Request) -> Response:
    next_path = local_path(request.query_params.get("next"))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and await session_admin(request, cookie):
        return RedirectResponse(next_path, status_code=303)
    message = "You are signed out." if request.query_params.get("out") == "1" else ""
    return html(request, NOBODY, lambda csrf: _form(csrf, next_path, message))


async def sign_in(request: Request) -> Response:
    form = await read_form(request, NOBODY)
    next_path = local_path(form.get("next"))
    username, password = form.get("username", ""), form.get("password", "")
    try:
        ok = bool(username and password) and await check_password(request, username, password)
    except TooManyFailedLogins as exc:
        message, headers = exc.message, exc.headers
        answer = html(request, NOBODY, lambda csrf: _form(csrf, next_path, message, username), 429)
        answer.headers.update(headers)
        return answer
    if not ok:
        return html(
            request,
            NOBODY,
            lambda csrf: _form(csrf, next_path, "Wrong username or password.", username),
            401,
        )
    state: AppState = request.app.state.inlet
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        await new_session(request, username),
        max_age=int(state.settings.admin_session_hours * 3600),
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=https(request),
    )
    log.info("admin %s signed in", username)
    return response


async def sign_out(request: Request) -> Response:
    admin = await require_admin(request)
    await read_form(request, admin)
    response = RedirectResponse("/admin/sign-in?out=1", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/admin", httponly=True, samesite="lax", secure=https(request)
    )
    log.info("admin %s signed out", admin)
    return response


routes = [
    Route("/admin/sign-in", sign_in_page, methods=["GET"]),
    Route("/admin/sign-in", sign_in, methods=["POST"]),
    Route("/admin/sign-out", sign_out, methods=["POST"]),
]
