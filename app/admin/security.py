"""Who may use ``/admin`` and ``/metrics``, and proof that a form came from our page.

Authentication is against the admin_users table (``inlet admin create``):
partners' credentials live in another table and never match. A browser signs
in with the form at ``/admin/sign-in`` and gets a session cookie (signed with
INLET_SECRET_KEY by itsdangerous, HttpOnly, SameSite=Lax, Secure behind TLS,
expiring after INLET_ADMIN_SESSION_HOURS). Scripts and ``/metrics`` scrapers
keep sending HTTP Basic, checked on every request; a browser that sends
neither is sent to the sign-in form, anything else gets the Basic challenge.

The session is not stored server-side: it carries a keyed digest of the
admin's stored password hash, so ``inlet admin delete`` ends every session of
that admin at once; signing out clears the browser's cookie.

Because a browser resends its cookie (or Basic credentials) on its own, every
POST must also carry a CSRF token: an HMAC, under INLET_SECRET_KEY, of a
random cookie and the admin's name (empty on the sign-in form). Another site
can neither read the cookie nor the page holding the token, and the cookie is
SameSite=Strict; a cross-site Origin or Sec-Fetch-Site header is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
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
SESSION_COOKIE = "inlet_session"
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


class SignInRequired(Exception):
    """A browser with no session: the page answers with a redirect to the sign-in form."""


def wants_html(request: Request) -> bool:
    """A browser navigating (it asks for HTML); curl and scrapers send ``*/*``."""
    return "text/html" in request.headers.get("accept", "")


async def require_admin(request: Request) -> str:
    """The admin's username, from the session cookie or Basic credentials.

    Neither: a browser on ``/admin`` gets SignInRequired, anything else a
    401 that makes a client send Basic credentials.
    """
    header = request.headers.get("authorization")
    if header is None:
        cookie = request.cookies.get(SESSION_COOKIE)
        username = await session_admin(request, cookie) if cookie else None
        if username is not None:
            request_context(request).admin = username
            return username
        if wants_html(request) and request.url.path.startswith("/admin"):
            raise SignInRequired()
        raise Unauthorized("Admin credentials are required", headers=_CHALLENGE)
    credentials = parse_basic(header)
    if credentials is None or not await check_password(request, *credentials):
        raise Unauthorized("Invalid admin credentials", headers=_CHALLENGE)
    request_context(request).admin = credentials[0]
    return credentials[0]


async def check_password(request: Request, username: str, password: str) -> bool:
    """Check an admin's password; a failure is logged and counted toward the
    address's failed-login limit (which may raise TooManyFailedLogins)."""
    state: AppState = request.app.state.inlet
    trusted = state.settings.trusted_proxies
    try:
        ok = await run_in_threadpool(admin_store(request).check, username, password)
    except SQLAlchemyError:
        raise ServiceUnavailable(
            "Admin credentials cannot be checked right now", headers={"Retry-After": "5"}
        ) from None
    if not ok:
        # Counted and logged like a partner's failure; the password never is.
        log.warning("admin login failed for %r from %s", username, client_key(request, trusted))
        await count_failed_login(state.auth_throttle, request, trusted)
    return ok


def _sessions(secret_key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="inlet-admin-session")


async def new_session(request: Request, username: str) -> str:
    """The signed cookie value that keeps ``username`` signed in."""
    state: AppState = request.app.state.inlet
    fingerprint = await run_in_threadpool(admin_store(request).session_fingerprint, username)
    return str(_sessions(state.settings.secret_key).dumps({"u": username, "f": fingerprint}))


async def session_admin(request: Request, cookie: str) -> str | None:
    """The admin a session cookie names, or None if forged, expired or ended."""
    state: AppState = request.app.state.inlet
    try:
        data = _sessions(state.settings.secret_key).loads(
            cookie, max_age=round(state.settings.admin_session_hours * 3600)
        )
    except BadSignature:  # SignatureExpired too
        return None
    if not isinstance(data, dict):
        return None
    username, fingerprint = data.get("u"), data.get("f")
    if not isinstance(username, str) or not isinstance(fingerprint, str):
        return None
    try:
        current = await run_in_threadpool(admin_store(request).session_fingerprint, username)
    except SQLAlchemyError as exc:
        # The signature is ours and unexpired: while the database is away the
        # page still opens, to say so (its banner), instead of a bare 503.
        log.warning("admin session of %r not rechecked: %s", username, type(exc).__name__)
        return username
    if current is None or not hmac.compare_digest(current, fingerprint):
        return None
    return username


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
