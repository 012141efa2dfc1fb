"""The admin page's HTML: self-contained documents, inline CSS and SVG, no script.

Every value that came from outside (partner names, job ids, errors, events)
goes through ``esc``. Narrow screens (a phone, 390 px) get one column: the
wide tables turn into one card per row, each cell labelled, so nothing makes
the page scroll sideways and long errors wrap at words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from typing import Any

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:1rem;color:#222;max-width:80rem}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .6rem;
border-bottom:1px solid #ddd;text-align:left;vertical-align:top}th{background:#f4f4f4}
.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:.6rem;flex-wrap:wrap}.tile{border:1px solid #ccc;border-radius:6px;
padding:.4rem .8rem;min-width:8rem}.tile b{display:block;font-size:1.4rem}
.notice{background:#eef7ee;border:1px solid #9c9;padding:.5rem;border-radius:4px}
.banner{background:#fdecea;border:2px solid #c0392b;padding:.6rem .8rem;border-radius:4px;
font-weight:600}.ok{color:#2e7d32}.bad{color:#c0392b;font-weight:600}
.err{font-family:monospace;font-size:12px;min-width:16rem;overflow-wrap:break-word}
.wrap{font-family:monospace;font-size:12px;min-width:7rem;overflow-wrap:anywhere}
form{display:inline}button{cursor:pointer;font:inherit;padding:.3rem .7rem}
input,select{font:inherit;padding:.25rem;max-width:100%}
pre{background:#f7f7f7;padding:.6rem;font-size:12px;white-space:pre-wrap;
overflow-wrap:anywhere;margin:0}.muted{color:#666}code{overflow-wrap:anywhere}
.verdict{border:2px solid;border-radius:6px;padding:.6rem .9rem;margin:.8rem 0}
.verdict.transient{border-color:#2e8540;background:#f1f8f2}
.verdict.permanent{border-color:#c0392b;background:#fdf1ef}
.verdict h2{margin:.1rem 0 .4rem}.verdict p{margin:.3rem 0}
.danger{border-top:2px solid #c0392b;margin-top:2rem;padding-top:.5rem}
button.delete{background:#c0392b;color:#fff;border:1px solid #922}
.strip{display:flex;align-items:center;gap:.4rem;font-size:12px;color:#555}
.strip svg{flex:none}.find label{display:inline-block;margin:0 .6rem .3rem 0}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .2rem 0 .6rem}
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.5rem}
@media (max-width:700px){
 body{padding:.6rem}
 table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
 table.cards tr:first-child{display:none}
 table.cards tr{border:1px solid #ccc;border-radius:6px;margin:.5rem 0;padding:.3rem}
 table.cards td{border:0;padding:.15rem .3rem;text-align:left}
 table.cards td::before{color:#666;font-weight:600}
 .err{min-width:0}.strip{flex-direction:column;align-items:flex-start;gap:0;margin-bottom:.3rem}
}
"""


def card_labels(table_id: str, columns: list[str]) -> str:
    """CSS that names each cell's column when ``table_id`` turns into cards on a phone.

    Generated content, not a ``data-label`` attribute, so that the cells'
    markup (and the text a screen reader or a test reads) stays the same.
    """
    rules = "".join(
        f'#{table_id} td:nth-child({n})::before{{content:"{label}: "}}'
        for n, label in enumerate(columns, 1)
        if label
    )
    return f"<style>@media (max-width:700px){{{rules}}}</style>"


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def code_spans(text: str) -> str:
    """Escape ``text``, then show its `backquoted` parts as code (the runbook's own markup)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def age(seconds: float | None) -> str:
    if seconds is None:
        return "none waiting"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def button(action: str, label: str, csrf: str, extra: str = "", css: str = "") -> str:
    """A POST form of one button, carrying the CSRF token (and ``extra`` hidden fields)."""
    cls = f' class="{css}"' if css else ""
    return (
        f'<form method="post" action="{esc(action)}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">{extra}'
        f'<button type="submit"{cls}>{esc(label)}</button></form>'
    )


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'


def header(admin: str, csrf: str) -> str:
    sign_out = button("/admin/sign-out", "Sign out", csrf)
    return (
        f'<header><h1><a href="/admin" style="color:inherit;text-decoration:none">Inlet</a>'
        f'</h1><span class="muted">Signed in as {esc(admin)} · {when(datetime.now(UTC))} '
        f"{sign_out}</span></header>"
    )


def banners(problems: dict[str, str | None]) -> str:
    """A red banner for each service that does not answer, saying what that means."""
    meaning = {
        "redis": "the queue, the counts and the failed jobs can't be shown. Partners get "
        "503 and retry later; nothing is lost. Bring Redis back.",
        "database": "workers can't store events and stored events can't be shown. Batches "
        "wait in Redis and are retried; bring the database back, then requeue what failed.",
    }
    return "".join(
        f'<p class="banner" role="alert" id="banner-{name}">'
        f"{'Redis' if name == 'redis' else 'The database'} is unavailable "
        f"({esc(problem)}): {meaning[name]}</p>"
        for name, problem in problems.items()
        if problem is not None
    )


def health_panel(problems: dict[str, str | None]) -> str:
    """The facts of ``/readyz``, one line per service."""
    rows = "".join(
        f'<tr id="health-{name}"><td>{esc(name)}</td>'
        + (
            '<td class="ok">ok</td>'
            if problem is None
            else f'<td class="bad">unavailable: {esc(problem)}</td>'
        )
        + "</tr>"
        for name, problem in problems.items()
    )
    ready = all(problem is None for problem in problems.values())
    verdict = "ready (200)" if ready else "not ready (503)"
    return (
        f'<table id="health" style="width:auto"><tr><th>service</th><th>state</th></tr>'
        f'{rows}</table><p class="muted">Same checks as <code>GET /readyz</code>: '
        f"{verdict}.</p>"
    )


def document(title: str, body: str, refresh_seconds: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )
