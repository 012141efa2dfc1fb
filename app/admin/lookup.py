"""Support's questions on the page: "where is my event?" and "why was it refused?".

``/admin/find`` runs the search of ``inlet events find`` (``app/ops/find.py``)
and shows each match as the CLI prints it (``describe_found``), under a
heading that says where the event is. The dashboard's refusals section counts
the refusal log (``app/ops/refusals.py``) by partner and code;
``/admin/refusals?partner=NAME`` lists a partner's latest refusals.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.admin import gather
from app.admin.page import banners, card_labels, document, esc, header, when
from app.admin.responses import html, signed_in_pages
from app.admin.security import require_admin
from app.credentials.partners import PartnerError
from app.ops import refusals
from app.ops.find import Found, describe_found, find_events
from app.state import AppState

FIELDS = (
    ("event_id", "Event id"),
    ("installation_id", "or installation id (Onside)"),
    ("tag_id", "or tag id (Thrad)"),
)
PAGE_REFUSALS = 50
REFUSAL_COLUMNS = ["when", "status", "code", "message", "errors", "events", "request"]


def find_form(values: dict[str, str]) -> str:
    inputs = "".join(
        f'<label>{esc(label)} <input name="{name}" value="{esc(values.get(name, ""))}"></label>'
        for name, label in FIELDS
    )
    return (
        '<h2>Where is my event?</h2><form method="get" action="/admin/find" class="find" '
        'id="find" style="display:block">'
        f'<label>Partner <input name="partner" required value="{esc(values.get("partner", ""))}">'
        f"</label>{inputs}"
        '<label>since (Thrad, UTC) <input name="since" placeholder="2026-05-05T14:00" '
        f'value="{esc(values.get("since", ""))}"></label> <button type="submit">Find</button>'
        '</form><p class="muted">Stored, queued, failed, refused at the door, or in none of '
        "these: the same answer as <code>inlet events find</code>.</p>"
    )


def _found(item: Found, partner: str) -> str:
    link = (
        f' · <a href="/admin/failed/{esc(item.job_id)}">open the failed job</a>'
        if item.where == "failed" and item.job_id
        else ""
    )
    return (
        f'<section class="found" data-where="{item.where}"><h3>{esc(item.where.upper())}'
        f"{link}</h3><pre>{esc(describe_found(item, partner))}</pre></section>"
    )


def _since(text: str) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@signed_in_pages
async def find(request: Request) -> Response:
    admin = await require_admin(request)
    state: AppState = request.app.state.inlet
    values = {
        name: request.query_params.get(name, "").strip()[:200]
        for name in ("partner", "event_id", "installation_id", "tag_id", "since")
    }
    health = await gather.health(state)
    result = ""
    if values["partner"]:
        if not (health.ok(gather.REDIS) and health.ok(gather.DATABASE)):
            result = '<p class="muted">The search needs Redis and the database (see above).</p>'
        else:

            def search() -> list[Found] | str:
                try:
                    return find_events(
                        state.engine,
                        state.queue,
                        values["partner"],
                        event_id=values["event_id"] or None,
                        installation_id=values["installation_id"] or None,
                        tag_id=values["tag_id"] or None,
                        since=_since(values["since"]),
                    )
                except (PartnerError, ValueError) as exc:
                    return str(exc)

            found = await gather.gather(state, health, {"found": gather.Read(gather.REDIS, search)})
            outcome = found["found"]
            if outcome is None:
                result = '<p class="banner">The search did not finish in time; try again.</p>'
            elif isinstance(outcome, str):
                result = f'<p class="banner" id="find-error">{esc(outcome)}</p>'
            else:
                shown = "".join(_found(item, values["partner"]) for item in outcome)
                result = f'<div id="results">{shown}</div>'

    def render(csrf: str) -> str:
        body = (
            f"{header(admin, csrf)}{banners(health.problems)}"
            f'<p><a href="/admin">← admin page</a></p>{find_form(values)}{result}'
        )
        return document("Where is my event?", body)

    return html(request, admin, render)


def dashboard_reads(state: AppState) -> dict[str, gather.Read]:
    counts = functools.partial(
        refusals.counts_by_code, state.redis, retention_days=state.settings.refusals_days
    )
    return {"refusal_counts": gather.Read(gather.REDIS, counts)}


def refusals_section(counts: dict[str, dict[str, int]] | None, days: int) -> str:
    if counts is None:
        return '<p class="muted">Refusal counts unavailable (Redis does not answer).</p>'
    if not counts:
        return f"<p>No refusals in the last {days} days.</p>"
    rows = "".join(
        f'<tr data-partner="{esc(partner)}"><td><a href="/admin/refusals?partner={esc(partner)}">'
        f"{esc(partner)}</a></td><td>{sum(by_code.values())}</td><td>"
        + ", ".join(f'<span class="code">{esc(code)}: {n}</span>' for code, n in by_code.items())
        + "</td></tr>"
        for partner, by_code in counts.items()
    )
    columns = ["partner", "refused", "by code"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    return (
        f'{card_labels("refusals", columns)}<table id="refusals" class="cards">'
        f'<tr>{head}</tr>{rows}</table><p class="muted">Every 4xx answer of the ingest '
        f"endpoints in the last {days} days (INLET_REFUSALS_DAYS); a partner's name opens "
        "its latest refusals with their errors.</p>"
    )


def dashboard_sections(state: AppState, found: dict[str, Any]) -> tuple[list[str], list[str]]:
    """HTML for the top of the dashboard (the search) and below the partners (refusals)."""
    days = state.settings.refusals_days
    return [find_form({})], [
        f"<h2>Refusals, by code</h2>{refusals_section(found.get('refusal_counts'), days)}"
    ]


def _refusal_rows(found: list[refusals.Refusal]) -> str:
    rows = []
    for r in found:
        errors = "<br>".join(esc(orjson.dumps(e).decode()) for e in r.errors[:5])
        if r.errors_total > 5:
            errors += f"<br>… {r.errors_total} in all"
        ids = ", ".join(esc(e.event_id or e.tag_id or "?") for e in r.events[:10])
        rows.append(
            f'<tr class="refusal"><td>{when(r.when)}</td><td>{r.status}</td>'
            f"<td>{esc(r.code)}</td><td>{esc(r.message)}</td>"
            f'<td class="wrap">{errors or "—"}</td><td class="wrap">{ids or "—"}</td>'
            f'<td class="wrap">{esc(r.request_id)}{esc(" · " + r.client if r.client else "")}'
            "</td></tr>"
        )
    head = "".join(f"<th>{c}</th>" for c in REFUSAL_COLUMNS)
    return (
        f'{card_labels("refusal-list", REFUSAL_COLUMNS)}<table id="refusal-list" class="cards">'
        f"<tr>{head}</tr>{''.join(rows)}</table>"
    )


@signed_in_pages
async def refusal_list(request: Request) -> Response:
    admin = await require_admin(request)
    state: AppState = request.app.state.inlet
    partner = request.query_params.get("partner", "").strip()[:200]
    health = await gather.health(state)
    if partner == refusals.UNAUTHENTICATED:
        call = functools.partial(refusals.list_unauthenticated, state.redis, limit=PAGE_REFUSALS)
    else:
        call = functools.partial(refusals.list_refusals, state.redis, partner, limit=PAGE_REFUSALS)
    found = await gather.gather(state, health, {"list": gather.Read(gather.REDIS, call)})
    listed = found["list"]
    if listed is None:
        table = '<p class="muted">Refusals unavailable (Redis does not answer).</p>'
    elif not listed:
        table = f"<p>No refusals kept for {esc(partner)}.</p>"
    else:
        table = _refusal_rows(listed)

    def render(csrf: str) -> str:
        body = (
            f'{header(admin, csrf)}{banners(health.problems)}<p><a href="/admin">← admin page</a>'
            f"</p><h2>Latest refusals of {esc(partner)}</h2>{table}"
            '<p class="muted">Also: <code>inlet refusals list --partner NAME</code>.</p>'
        )
        return document(f"Refusals: {partner}", body)

    return html(request, admin, render)


routes = [
    Route("/admin/find", find, methods=["GET"]),
    Route("/admin/refusals", refusal_list, methods=["GET"]),
]
