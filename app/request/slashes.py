"""Trailing-slash redirects that say only a path, never a host.

Starlette's router answers ``/admin/`` with a redirect to an absolute URL
built from the request's Host header. Behind a proxy or cache that passes a
client's Host along, that is an open redirect (or a poisoned cache entry)
pointing anywhere. A relative Location needs no host: the browser resolves it
against the address it already asked for.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send


def relative_slash_redirects(router: Router) -> None:
    """Replace ``router``'s slash redirects with relative ones (same routes, same 307)."""
    not_found = router.default
    router.redirect_slashes = False

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path != "/":
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            # A path starting with // or /\\ would be read as another host.
            if other.startswith("/") and not other.startswith(("//", "/\\")):
                other_scope = {**scope, "path": other}
                if any(route.matches(other_scope)[0] is not Match.NONE for route in router.routes):
                    location = quote(scope.get("root_path", "") + other)
                    if query := scope.get("query_string", b""):
                        location += "?" + query.decode("latin-1")
                    await RedirectResponse(location)(scope, receive, send)
                    return
        await not_found(scope, receive, send)

    router.default = default
