"""The admin page in a real browser: Debian's chromium, driven by Playwright.

A batch is sent over HTTP to a real uvicorn server, fails for real on a
worker whose database is unreachable, shows up on the page, is requeued by
clicking its button, and lands once with a good worker. On failure the test
saves a screenshot (the path is printed in the test's output).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page
from redis import Redis
from sqlalchemy.engine import Engine

from app.credentials.admins import NewAdmin
from app.credentials.partners import NewPartner
from app.settings import Settings
from tests.browser import launch, open_page, post_batch, serve, sign_in
from tests.events import onside_event
from tests.queued import event_ids, unreachable

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """A real uvicorn serving the app on a free port, in a thread."""
    with serve(settings.replace(retry_delays=(0, 0))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as chromium:
        yield chromium


@pytest.fixture
def page(
    browser: Browser, admin: NewAdmin, server: str, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A page signed in through the sign-in form (a screenshot is saved if the test fails)."""
    with open_page(browser, request) as page:
        sign_in(page, server, admin.username, admin.password)
        yield page


def test_a_real_failure_is_seen_and_requeued_from_the_page(
    server: str,
    page: Page,
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
) -> None:
    events = [onside_event(n) for n in range(3)]
    assert post_batch(server, partner, events) == 204
    drain(unreachable(settings.replace(retry_delays=(0, 0))))

    page.goto(f"{server}/admin")
    row = page.locator("tr.failed-job")
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[1:4] == ["acme", "onside", "3"]
    assert cells[6] == "3"  # attempts: the first and two retries
    assert "OperationalError" in cells[7]
    assert page.locator("#failed-count b").inner_text() == "1"
    partner_row = page.locator('tr[data-partner="acme"]')
    assert partner_row.locator("td.accepted").inner_text() == "3"
    assert partner_row.locator("td.failed").inner_text() == "3"
    # Bars of the last minute (x=236), not the strips' backgrounds: accepted and failed.
    assert partner_row.locator('.chart rect[x="236"]').count() >= 2

    row.get_by_role("button", name="Requeue").click()
    page.wait_for_url("**/admin?done=requeued*")
    assert "was requeued" in page.locator("#notice").inner_text()
    assert page.locator("tr.failed-job").count() == 0
    assert page.locator("#queue-depth b").inner_text() == "1"

    drain()
    assert event_ids(engine) == sorted(e["event_id"] for e in events)
    page.reload()
    assert page.locator("#queue-depth b").inner_text() == "0"
    assert "No failed jobs." in page.content()


def test_the_detail_page_and_delete_button(
    server: str,
    page: Page,
    settings: Settings,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
) -> None:
    events = [onside_event(7)]
    assert post_batch(server, partner, events) == 204
    drain(unreachable(settings.replace(retry_delays=(0, 0))))
    page.goto(f"{server}/admin")
    page.locator("tr.failed-job a").click()
    assert "Traceback" in page.locator("#traceback").inner_text()
    assert events[0]["event_id"] in page.content()
    page.locator("#delete-link").click()
    page.wait_for_url("**/delete")
    assert "This is permanent" in page.locator("#permanent-warning").inner_text()
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_url("**/admin?done=deleted*")
    assert page.locator("tr.failed-job").count() == 0
    drain()
    assert event_ids(engine) == []


def test_partner_credentials_get_no_page(
    server: str, browser: Browser, partner: NewPartner
) -> None:
    """Neither as Basic credentials (sent up front, as a script does) nor in the sign-in form."""
    token = base64.b64encode(f"{partner.username}:{partner.password}".encode()).decode()
    context = browser.new_context()
    try:
        # (Chromium itself turns a 401 with a challenge into a navigation error, headless.)
        response = context.request.get(
            f"{server}/admin", headers={"Authorization": f"Basic {token}", "Accept": "text/html"}
        )
        assert response.status == 401
        assert 'realm="inlet-admin"' in response.headers["www-authenticate"]
        page = context.new_page()
        page.goto(f"{server}/admin")
        page.get_by_label("Username").fill(partner.username)
        page.get_by_label("Password").fill(partner.password)
        with page.expect_response(f"{server}/admin/sign-in") as answer:
            page.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 401
        assert "Wrong username or password" in page.locator("#sign-in-error").inner_text()
        assert not [c for c in context.cookies() if c["name"] == "inlet_session"]
    finally:
        context.close()
