"""``/admin/live?partner=NAME``: a partner's latest accepted events, refreshed every few seconds.

Support watches a partner's test send arrive, both formats: events still in
the queue first (accepted, not yet stored), then the stored rows, newest
first. The page reloads itself with ``<meta http-equiv="refresh">``: it
works without JavaScript, which the page's Content-Security-Policy forbids.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.admin import gather
from app.admin.page import banners, card_labels, document, esc, header, when
from app.admin.responses import html, signed_in_pages
from app.admin.security import require_admin
from app.ops import recent
from app.ops.recent import Recent
from app.state import AppState

REFRESH_SECONDS = 5
DEFAULT_EVENTS, MAX_EVENTS = 20, 200
COLUMNS = ["state", "format", "received", "event id", "event name", "installation / tag", "job"]


def _count(text: str | None) -> int:
    try:
        return min(max(int(text or DEFAULT_EVENTS), 1), MAX_EVENTS)
    except ValueError:
        return DEFAULT_EVENTS


def _rows(found: list[Recent]) -> str:
    rows = "".join(
        f'<tr class="live-event" data-state="{r.state}" data-format="{r.format}">'
        f"<td>{r.state}</td><td>{r.format}</td><td>{when(r.received_at)}</td>"
        f'<td class="err">{esc(r.event_id or "—")}</td><td>{esc(r.event_name)}</td>'
        f'<td class="err">{esc(r.installation_id or r.tag_id or "—")}</td>'
        f'<td class="err">{esc(r.job_id or "—")}</td></tr>'
        for r in found
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    return (
        f'{card_labels("live", COLUMNS)}<table id="live" class="cards">'
        f"<tr>{head}</tr>{rows}</table>"
    )


def render(
    admin: str,
    csrf: str,
    partner: str,
    count: int,
    problems: dict[str, str | None],
    queued: list[Recent] | None,
    stored: list[Recent] | None,
    known: bool,
) -> str:
    picker = (
        '<form method="get" action="/admin/live" class="find">'
        f'<label>Partner <input name="partner" value="{esc(partner)}" required></label>'
        f'<label>Last <input name="n" type="number" min="1" max="{MAX_EVENTS}" '
        f'value="{count}" style="width:5em"> events</label>'
        '<button type="submit">Watch</button></form>'
    )
    parts = [header(admin, csrf), banners(problems), '<p><a href="/admin">← admin page</a></p>']
    parts.append(f"<h2>Live: the last accepted events of {esc(partner) or '…'}</h2>{picker}")
    if partner and not known:
        parts.append(f'<p class="banner" id="unknown-partner">No partner named {esc(partner)}.</p>')
    elif partner:
        shown = (queued or []) + (stored or [])
        parts.append(
            f'<p class="muted">Refreshed every {REFRESH_SECONDS} s · {when(datetime.now(UTC))} · '
            "queued = accepted (answered 204), not yet stored; stored = in SQL.</p>"
        )
        if queued is None:
            parts.append('<p class="muted">The queue can\'t be read (Redis).</p>')
        if stored is None:
            parts.append('<p class="muted">Stored events can\'t be read (database).</p>')
        parts.append(_rows(shown[:count]) if shown else "<p>No accepted events yet.</p>")
    title = f"Live: {partner}" if partner else "Live events"
    return document(title, "".join(parts), REFRESH_SECONDS if partner and known else None)


UNKNOWN = "unknown partner"


def _stored(state: AppState, partner: str, count: int) -> list[Recent] | str:
    rows = recent.stored(state.engine, partner, count)
    return UNKNOWN if rows is None else rows


@signed_in_pages
async def live(request: Request) -> Response:
    admin = await require_admin(request)
    state: AppState = request.app.state.inlet
    partner = request.query_params.get("partner", "").strip()[:200]
    count = _count(request.query_params.get("n"))
    health = await gather.health(state)
    found: dict[str, object] = {"queued": None, "stored": None}
    if partner:
        found = await gather.gather(
            state,
            health,
            {
                "queued": gather.Read(
                    gather.REDIS, functools.partial(recent.queued, state.queue, partner, count)
                ),
                "stored": gather.Read(
                    gather.DATABASE, functools.partial(_stored, state, partner, count)
                ),
            },
        )
    known = found["stored"] != UNKNOWN
    stored = found["stored"] if isinstance(found["stored"], list) else None
    queued = found["queued"] if isinstance(found["queued"], list) else None
    return html(
        request,
        admin,
        lambda csrf: render(admin, csrf, partner, count, health.problems, queued, stored, known),
    )


routes = [Route("/admin/live", live, methods=["GET"])]
