"""Who may use ``/admin`` and ``/metrics``, and proof that a form came from our page.

Authentication is HTTP Basic against the admin_users table (``inlet admin
create``): partners' credentials live in another table and never match.

Because a browser resends Basic credentials on its own, every POST must also
carry a CSRF token: an HMAC, under INLET_SECRET_KEY, of a random cookie and the
admin's name. Another site can neither read the cookie nor the page holding
the token, and the cookie is SameSite=Strict; a cross-site Origin or
Sec-Fetch-Site header is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.credentials.admins import AdminStore
from app.credentials.auth import parse_basic
from app.credentials.throttle import client_key, count_failed_login
from app.errors import Forbidden, ServiceUnavailable, Unauthorized
from app.request.context import request_context
from app.state import AppState

log = logging.getLogger("inlet.admin")

CSRF_COOKIE = "inlet_csrf"
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="inlet-admin", charset="UTF-8"'}


def admin_store(request: Request) -> AdminStore:
    """One store per app, made on first use (admin traffic is rare)."""
    app_state = request.app.state
    store = getattr(app_state, "admin_store", None)
    if store is None:
        state: AppState = app_state.inlet
        store = AdminStore(state.engine, state.settings.secret_key)
        app_state.admin_store = store
    return store


async def require_admin(request: Request) -> str:
    """The admin's username, or a 401 that makes the browser ask for credentials."""
    credentials = parse_basic(request.headers.get("authorization"))
    if credentials is None:
        raise Unauthorized("Admin credentials are required", headers=_CHALLENGE)
    state: AppState = request.app.state.inlet
    trusted = state.settings.trusted_proxies
    try:
        ok = await run_in_threadpool(admin_store(request).check, *credentials)
    except SQLAlchemyError:
        raise ServiceUnavailable(
            "Admin credentials cannot be checked right now", headers={"Retry-After": "5"}
        ) from None
    if not ok:
        # Counted and logged like a partner's failure; the password never is.
        log.warning(
            "admin login failed for %r from %s", credentials[0], client_key(request, trusted)
        )
        await count_failed_login(state.auth_throttle, request, trusted)
        raise Unauthorized("Invalid admin credentials", headers=_CHALLENGE)
    request_context(request).admin = credentials[0]
    return credentials[0]


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret_key: bytes, cookie: str, username: str) -> str:
    message = f"csrf|{cookie}|{username}".encode()
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


def check_csrf(request: Request, username: str, submitted: str | None) -> None:
    """Raise 403 unless the form's token matches this browser's cookie and admin."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("Cross-site form submissions are refused")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        # Host only: behind a TLS-terminating proxy the browser says https
        # while this process sees http (uvicorn runs without proxy headers).
        if urlsplit(origin).netloc.lower() != request.url.netloc.lower():
            raise Forbidden("Cross-site form submissions are refused")
    elif origin == "null":
        raise Forbidden("Cross-site form submissions are refused")
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted:
        raise Forbidden("The form's CSRF token is missing; reload the page and try again")
    state: AppState = request.app.state.inlet
    expected = csrf_token(state.settings.secret_key, cookie, username)
    # Bytes: compare_digest refuses non-ASCII str, and a form field can hold anything.
    if not hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "surrogatepass")):
        raise Forbidden("The form's CSRF token is invalid; reload the page and try again")
