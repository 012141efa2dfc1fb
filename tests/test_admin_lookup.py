"""'Where is my event?' and the refusals on the admin page: the CLI's answers, on the page."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from app.settings import Settings
from tests.cli_runner import run_cli
from tests.test_find import FAILED, QUEUED, REFUSED, STORED, UNKNOWN, five_places

__all__ = ["five_places"]  # the fixture: one event in each place


def page_answers(client: TestClient, headers: dict[str, str], **query: str) -> list[tuple]:
    """(where, text) of each match the page shows, the text unescaped as a person reads it."""
    response = client.get("/admin/find", params={"partner": "acme", **query}, headers=headers)
    assert response.status_code == 200
    return [
        (where, html.unescape(text))
        for where, text in re.findall(
            r'<section class="found" data-where="(\w+)">.*?<pre>(.*?)</pre>', response.text, re.S
        )
    ]


@pytest.mark.parametrize(
    ("event_id", "where"),
    [
        (STORED, "stored"),
        (QUEUED, "queued"),
        (FAILED, "failed"),
        (REFUSED, "refused"),
        (UNKNOWN, "not_found"),
    ],
)
def test_the_page_answers_where_an_event_is_as_the_cli_does(
    five_places: dict[str, str],
    settings: Settings,
    client: TestClient,
    admin_auth: dict[str, str],
    event_id: str,
    where: str,
) -> None:
    [(shown, text)] = page_answers(client, admin_auth, event_id=event_id)
    assert shown == where
    cli = run_cli(settings, "events", "find", "--partner", "acme", "--event-id", event_id)
    if where == "queued":  # its age moves on between the two asks
        assert text.splitlines()[0] == cli.stdout.splitlines()[0]
        assert f"job {five_places['queued']}" in text
    else:
        assert text == cli.stdout.rstrip("\n")
    if where == "failed":
        page = client.get("/admin/find", params={"partner": "acme", "event_id": event_id},
                          headers=admin_auth).text  # fmt: skip
        assert f'href="/admin/failed/{five_places["failed"]}"' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"partner": "nobody", "event_id": STORED}, "nobody"),
        ({"partner": "acme"}, "event"),
    ],
)
def test_a_search_that_cannot_run_says_why(
    client: TestClient, admin_auth: dict[str, str], query: dict[str, str], message: str
) -> None:
    page = client.get("/admin/find", params=query, headers=admin_auth)
    assert page.status_code == 200
    error = re.search(r'<p class="banner" id="find-error">(.*?)</p>', page.text)
    assert error and message in error.group(1)


def test_the_dashboard_counts_refusals_by_code_and_lists_them(
    client: TestClient, auth: dict[str, str], admin_auth: dict[str, str]
) -> None:
    body = {"events": [{"event_id": "not-a-uuid"}]}
    assert client.post("/attribution-api/v1/events", json=body, headers=auth).status_code == 400
    wrong = {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}
    assert client.post("/attribution-api/v1/events", json=body, headers=wrong).status_code == 401
    page = client.get("/admin", headers=admin_auth).text
    assert page.index('id="find"') < page.index('id="health"')  # support's question first
    table = re.search(r'<table id="refusals".*?</table>', page, re.S)
    assert table, "no refusals section"
    acme = re.search(r'<tr data-partner="acme">(.*?)</tr>', table.group(0), re.S)
    assert acme and "invalid_request: 1" in acme.group(1)
    assert "(unauthenticated)" in table.group(0) and "unauthorized: 1" in table.group(0)
    listed = client.get("/admin/refusals", params={"partner": "acme"}, headers=admin_auth)
    assert listed.status_code == 200
    assert listed.text.count('<tr class="refusal">') == 1
    assert "not-a-uuid" in html.unescape(listed.text)  # the error echoes the bad value
    anonymous = client.get(
        "/admin/refusals", params={"partner": "(unauthenticated)"}, headers=admin_auth
    )
    assert anonymous.text.count('<tr class="refusal">') == 1


def test_search_and_refusals_need_an_admin(client: TestClient, auth: dict[str, str]) -> None:
    for path in ("/admin/find?partner=acme&event_id=x", "/admin/refusals?partner=acme"):
        assert client.get(path, headers=auth).status_code == 401
