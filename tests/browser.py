"""Driving the admin page in Debian's chromium through Playwright: shared by the browser tests.

``serve(settings)`` runs the app in a real uvicorn on a free port; ``launch()``
starts the browser; ``open_page`` makes a page at a given width that saves a
screenshot when its test fails (the path is printed in the test's output);
``sign_in`` goes through the sign-in form as a person does.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from app.credentials.partners import NewPartner
from app.main import create_app
from app.settings import Settings
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
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """A real uvicorn serving the app on a free port, in a thread."""
    config = uvicorn.Config(
        create_app(settings),
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


@contextlib.contextmanager
def launch() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def open_page(
    browser: Browser, request: pytest.FixtureRequest, viewport: dict[str, int] = DESKTOP
) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
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


def sign_in(page: Page, server: str, username: str, password: str, path: str = "/admin") -> None:
    """Open ``path``, get sent to the sign-in form, fill it in, land back on ``path``."""
    page.goto(f"{server}{path}")
    page.wait_for_url("**/admin/sign-in?next=*")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}{path}")


def page_width(page: Page) -> int:
    """How wide the document is: more than the viewport means sideways scrolling."""
    return int(page.evaluate("document.documentElement.scrollWidth"))


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
