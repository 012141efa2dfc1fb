"""How every admin page answers: its headers, its CSRF cookie, its forms, its redirects."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.admin.security import (
    CSRF_COOKIE,
    SignInRequired,
    check_csrf,
    csrf_token,
    new_csrf_cookie,
)
from app.errors import InvalidRequest
from app.request.body import read_body
from app.request.client import forwarded_scheme
from app.state import AppState

MAX_FORM_BYTES = 4096
# The page shows everything it knows; frames, scripts and other origins get nothing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


def https(request: Request) -> bool:
    """Whether the browser used https: itself, or through a trusted TLS proxy."""
    state: AppState = request.app.state.inlet
    peer = request.client.host if request.client else None
    forwarded = forwarded_scheme(peer, request.headers, state.settings.trusted_proxies)
    return request.url.scheme == "https" or forwarded == "https"


def html(
    request: Request, admin: str, render: Callable[[str], str], status_code: int = 200
) -> Response:
    """Render with this browser's CSRF token, setting the cookie on first visit."""
    state: AppState = request.app.state.inlet
    sent = request.cookies.get(CSRF_COOKIE)
    cookie = new_csrf_cookie() if sent is None else sent
    response = HTMLResponse(
        render(csrf_token(state.settings.secret_key, cookie, admin)),
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    if sent is None:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=https(request),
        )
    return response


def local_path(target: str | None, default: str = "/admin") -> str:
    """``target`` if it is a path of this page, else ``default``: no open redirect."""
    if target and target.startswith("/admin") and "\\" not in target and "//" not in target:
        return target
    return default


def signed_in_pages(handler: Handler) -> Handler:
    """Send a browser without a session to the sign-in form, then back here."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except SignInRequired:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = urlencode({"next": local_path(here)})
            return RedirectResponse(f"/admin/sign-in?{query}", status_code=303)

    return run


async def read_form(request: Request, admin: str) -> dict[str, str]:
    """The posted form's fields (first value of each), once its CSRF token checks out."""
    state: AppState = request.app.state.inlet
    body = await read_body(request, MAX_FORM_BYTES, state.settings.body_timeout)
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form could not be read") from None
    form = {key: values[0] for key, values in fields.items()}
    check_csrf(request, admin, form.get("csrf"))
    return form
