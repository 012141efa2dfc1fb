"""The admin page in a real browser: Debian's chromium, driven by Playwright.

A batch is sent over HTTP to a real uvicorn server, fails for real on a
worker whose database is unreachable, shows up on the page, is requeued by
clicking its button, and lands once with a good worker. On failure the test
saves a screenshot (the path is printed in the test's output).
"""

from __future__ import annotations

import base64
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright
from redis import Redis
from sqlalchemy.engine import Engine

from app.credentials.admins import NewAdmin
from app.credentials.partners import NewPartner
from app.main import create_app
from app.settings import Settings
from tests.events import onside_event
from tests.queued import event_ids, unreachable
from tests.services import free_port, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """A real uvicorn serving the app on a free port, in a thread."""
    quick = settings.replace(retry_delays=(0, 0))
    config = uvicorn.Config(
        create_app(quick),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        ws="none",
        http="h11",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=20, message="uvicorn to start")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, admin: NewAdmin, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(
        http_credentials={"username": admin.username, "password": admin.password}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        # The call phase's report is logged before teardown: a failure is counted by now.
        if request.session.testsfailed > failed_before:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / f"{request.node.name}.png".replace("/", "_")
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot of the admin page at failure: {shot}")
        context.close()


def post_batch(server: str, partner: NewPartner, events: list[dict]) -> int:
    """Send a batch over real HTTP, as a partner's backend does."""
    token = base64.b64encode(f"{partner.username}:{partner.password}".encode()).decode()
    request = urllib.request.Request(
        f"{server}/attribution-api/v1/events",
        data=orjson.dumps({"events": events}),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


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
    assert partner_row.locator("svg.chart rect").count() >= 2

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
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/admin?done=deleted*")
    assert page.locator("tr.failed-job").count() == 0
    drain()
    assert event_ids(engine) == []


def test_partner_credentials_get_no_page(
    server: str, browser: Browser, partner: NewPartner
) -> None:
    context = browser.new_context(
        http_credentials={"username": partner.username, "password": partner.password}
    )
    try:
        response = context.new_page().goto(f"{server}/admin")
        assert response is not None and response.status == 401
    finally:
        context.close()
