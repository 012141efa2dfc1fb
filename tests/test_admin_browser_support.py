"""The support desk's page items in a real browser, at desktop width and at 390 px.

Each test runs twice (``viewport``: desktop 1280 px, phone 390 px) and saves a
screenshot when it fails (its path is printed). ``INLET_SCREENSHOTS`` set to a
folder also saves the dashboard and the failed-job page there at each width.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from redis import Redis
from sqlalchemy.engine import Engine

from app.credentials.admins import NewAdmin, create_admin
from app.credentials.partners import NewPartner
from app.embedded_redis import EmbeddedRedis
from app.ops import stats
from app.settings import Settings
from tests.browser import VIEWPORTS, launch, open_page, page_width, post_batch, serve, sign_in
from tests.events import onside_event
from tests.queued import event_ids, unreachable
from tests.services import make_settings

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return VIEWPORTS[request.param]


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with serve(settings.replace(retry_delays=(0, 0))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as chromium:
        yield chromium


@pytest.fixture
def page(
    browser: Browser,
    admin: NewAdmin,
    server: str,
    viewport: dict[str, int],
    request: pytest.FixtureRequest,
) -> Iterator[Page]:
    with open_page(browser, request, viewport) as page:
        sign_in(page, server, admin.username, admin.password)
        yield page


def keep_screenshot(page: Page, name: str, viewport: dict[str, int]) -> None:
    folder = os.environ.get("INLET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{folder}/{name}-{viewport['width']}px.png", full_page=True)
        # And the first screen alone: what support sees on opening the page.
        page.screenshot(path=f"{folder}/{name}-{viewport['width']}px-first-screen.png")


def a_real_failure(
    server: str, settings: Settings, partner: NewPartner, drain: Callable[..., None], n: int = 3
) -> list[dict]:
    events = [onside_event(i) for i in range(n)]
    assert post_batch(server, partner, events) == 204
    drain(unreachable(settings.replace(retry_delays=(0, 0))))
    return events


def test_the_dashboard_fits_the_screen_and_its_errors_read_as_lines(
    server: str,
    page: Page,
    viewport: dict[str, int],
    settings: Settings,
    partner: NewPartner,
    drain: Callable[..., None],
) -> None:
    a_real_failure(server, settings, partner, drain)
    page.goto(f"{server}/admin")
    assert page.locator('meta[name="viewport"]').count() == 1
    assert page_width(page) <= viewport["width"], "the page scrolls sideways"
    error = page.locator("tr.failed-job td.err")
    assert "OperationalError" in error.inner_text()
    box = error.bounding_box()
    assert box is not None
    # 12 px monospace: at least ~25 characters a line, not one.
    assert box["width"] >= 180, f"the error column is {box['width']:.0f} px wide"
    assert box["x"] + box["width"] <= viewport["width"]
    assert page.locator("#health-redis td.ok").count() == 1
    assert page.locator("#health-database td.ok").count() == 1
    keep_screenshot(page, "dashboard", viewport)


def test_the_failed_job_page_opens_with_the_verdict_and_shows_the_last_line(
    server: str,
    page: Page,
    viewport: dict[str, int],
    settings: Settings,
    partner: NewPartner,
    drain: Callable[..., None],
) -> None:
    a_real_failure(server, settings, partner, drain)
    page.goto(f"{server}/admin")
    page.locator("tr.failed-job a").click()
    verdict = page.locator("#verdict")
    assert "Transient" in page.locator("#verdict-kind").inner_text()
    assert "Fix the database" in page.locator("#verdict-action").inner_text()
    top = verdict.bounding_box()
    assert top is not None and top["y"] < viewport["height"], "the verdict is below the fold"
    traceback = page.locator("#traceback").bounding_box()
    assert traceback is not None and top["y"] < traceback["y"]
    assert page_width(page) <= viewport["width"], "the page scrolls sideways"
    last = page.locator("#traceback-last")
    whole = page.locator("#traceback").inner_text().strip().splitlines()
    assert last.inner_text() == whole[-1]
    # Nothing of the last line is clipped: it wraps inside its box, on screen.
    clipped = last.evaluate("e => e.scrollWidth > e.clientWidth")
    assert clipped is False
    box = last.bounding_box()
    assert box is not None and box["x"] + box["width"] <= viewport["width"]
    keep_screenshot(page, "failed-job", viewport)


def test_delete_asks_for_confirmation_and_cancel_keeps_the_job(
    server: str,
    page: Page,
    settings: Settings,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    a_real_failure(server, settings, partner, drain, n=1)
    page.goto(f"{server}/admin")
    row = page.locator("tr.failed-job")
    assert row.get_by_role("button", name="Delete").count() == 0  # not under Requeue
    row.locator("a").click()
    page.locator("#delete-link").click()
    assert "permanent" in page.locator("#permanent-warning").inner_text()
    page.get_by_role("link", name="Cancel, keep the job").click()
    page.goto(f"{server}/admin")
    assert page.locator("tr.failed-job").count() == 1
    page.locator("tr.failed-job a").click()
    page.locator("#delete-link").click()
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_url("**/admin?done=deleted*")
    assert page.locator("tr.failed-job").count() == 0
    drain()
    assert event_ids(engine) == []


def test_few_failures_beside_a_big_batch_are_visible(server: str, page: Page, redis: Redis) -> None:
    now = time.time()
    stats.record(redis, "acme", stats.ACCEPTED, 1000, now=now)
    stats.record(redis, "acme", stats.FAILED, 11, now=now)
    page.goto(f"{server}/admin")
    row = page.locator('tr[data-partner="acme"]')
    failed_bar = row.locator('.strip[data-kind="failed"] rect[x="236"]').bounding_box()
    accepted_bar = row.locator('.strip[data-kind="accepted"] rect[x="236"]').bounding_box()
    assert failed_bar and accepted_bar
    assert failed_bar["height"] >= 15 and failed_bar["height"] == accepted_bar["height"]
    assert "peak 11/min" in row.locator('.strip[data-kind="failed"]').inner_text()


def test_sign_out_ends_the_session(server: str, page: Page) -> None:
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["inlet_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/admin"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/admin/sign-in?out=1")
    assert "signed out" in page.content()
    assert "inlet_session" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{server}/admin")
    page.wait_for_url("**/admin/sign-in?next=*")


def test_the_live_view_shows_a_test_send_arrive(
    server: str,
    page: Page,
    viewport: dict[str, int],
    partner: NewPartner,
    drain: Callable[..., None],
) -> None:
    page.goto(f"{server}/admin/live?partner=acme")
    assert "No accepted events yet." in page.content()
    event = onside_event(42)
    assert post_batch(server, partner, [event]) == 204
    # The page reloads itself (meta refresh, no script): wait for it to show the event.
    cell = page.locator(f'tr.live-event[data-state="queued"] td:text-is("{event["event_id"]}")')
    cell.wait_for(timeout=15_000)
    drain()
    page.locator('tr.live-event[data-state="stored"]').wait_for(timeout=15_000)
    assert page_width(page) <= viewport["width"]


def test_a_hung_redis_shows_a_banner_in_time(
    database_url: str,
    browser: Browser,
    engine: Engine,
    tmp_path: Path,
    viewport: dict[str, int],
    request: pytest.FixtureRequest,
) -> None:
    own = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="inlet-admb-"))).start()
    assert own.process is not None
    settings = make_settings(database_url, own.url, tmp_path, INLET_REDIS_TIMEOUT="2")
    admin = create_admin(engine, settings.secret_key, "dana")
    try:
        with serve(settings) as url, open_page(browser, request, viewport) as page:
            sign_in(page, url, admin.username, admin.password)
            os.kill(own.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                page.goto(f"{url}/admin")
                elapsed = time.monotonic() - started
                assert "Redis is unavailable" in page.locator("#banner-redis").inner_text()
                assert "unavailable" in page.locator("#health-redis").inner_text()
                assert page_width(page) <= viewport["width"]
            finally:
                os.kill(own.process.pid, signal.SIGCONT)
        assert elapsed < 3, f"the page took {elapsed:.1f} s with Redis hung"
    finally:
        own.stop()


def test_where_is_my_event_from_the_page(
    server: str,
    page: Page,
    viewport: dict[str, int],
    partner: NewPartner,
    drain: Callable[..., None],
) -> None:
    """Stored, refused and never seen, found from the dashboard's form; refusals counted."""
    stored = onside_event(1)
    assert post_batch(server, partner, [stored]) == 204
    drain()
    refused = onside_event(2, event_datetime="yesterday")
    with pytest.raises(urllib.error.HTTPError) as answer:
        post_batch(server, partner, [refused])
    # The error holds the response and its socket: closed here, not by a
    # garbage collection during some later test (a ResourceWarning there).
    answer.value.close()
    assert answer.value.code == 400
    page.goto(f"{server}/admin")
    counts = page.locator('#refusals tr[data-partner="acme"]')
    assert "invalid_request: 1" in counts.inner_text()
    for event_id, where in [
        (stored["event_id"], "stored"),
        (refused["event_id"], "refused"),
        ("550e8400-e29b-41d4-a716-000000000099", "not_found"),
    ]:
        page.goto(f"{server}/admin")
        form = page.locator("#find")
        form.get_by_label("Partner").fill("acme")
        form.get_by_label("Event id").fill(event_id)
        form.get_by_role("button", name="Find").click()
        page.wait_for_url("**/admin/find?*")
        found = page.locator("section.found")
        assert found.count() == 1 and found.get_attribute("data-where") == where
        assert page_width(page) <= viewport["width"], "the page scrolls sideways"
    assert "event_datetime" in page.goto(f"{server}/admin/refusals?partner=acme").text()  # type: ignore[union-attr]
    assert page.locator("tr.refusal").count() == 1
    assert page_width(page) <= viewport["width"]
