"""The admin page's data-quality section (app/admin/quality.py): flagged events per
partner over the last 24 hours, from both event tables."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.admin.quality import Flagged, flagged_counts, section
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.quality.schemas import set_schema
from app.settings import Settings
from tests.api import basic_auth
from tests.events import ONSIDE_URL, THRAD_URL, onside_event

SCHEMA = {"type": "object", "properties": {"amount": {"type": "string"}}}


def test_the_page_counts_violations_and_clamped_times_per_partner(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    partner: NewPartner,
    auth: dict[str, str],
    admin_auth: dict[str, str],
    drain: Callable[[], None],
) -> None:
    quiet = create_partner(engine, settings.secret_key, "quiet")
    set_schema(engine, "acme", "purchase_completed", orjson.dumps(SCHEMA), "warn")
    ahead = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    body = {
        "events": [
            onside_event(1, payload={"amount": 1}),  # a violation
            onside_event(2, payload={"amount": 1}, event_datetime=ahead),  # both
            onside_event(3, payload={"amount": "1"}),  # clean
        ]
    }
    assert client.post(ONSIDE_URL, json=body, headers=auth).status_code == 204
    key = create_api_key(engine, settings.secret_key, "acme", "k").api_key
    ahead_ts = datetime.now(UTC).timestamp() + 3 * 86400
    thrad = {"event_name": "x", "timestamp": ahead_ts}
    response = client.post(THRAD_URL, json=thrad, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 204
    clean = {"events": [onside_event(4, payload={"amount": "2"})]}
    assert client.post(ONSIDE_URL, json=clean, headers=basic_auth(quiet)).status_code == 204
    drain()

    assert flagged_counts(engine) == [Flagged("acme", violations=2, clamped=2)]
    # Outside the window: nothing.
    assert flagged_counts(engine, datetime.now(UTC) + timedelta(days=2)) == []

    html = client.get("/admin", headers=admin_auth).text
    table = re.search(r'<table id="quality">(.*?)</table>', html)
    assert table is not None
    assert '<td>acme</td><td class="num">2</td><td class="num">2</td>' in table.group(1)
    assert "quiet" not in table.group(1)


def test_the_section_escapes_names_and_says_when_there_is_nothing() -> None:
    assert 'id="quality-none"' in section([])
    assert "Unavailable" in section(None)
    html = section([Flagged("<b>x</b>", 1, 0)])
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
