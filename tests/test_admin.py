"""The admin page over HTTP: its own credentials, CSRF on every form, requeue and delete."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from ipaddress import ip_network
from types import SimpleNamespace

import orjson
import pytest
from httpx2 import Response
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app import migrations
from app.admin.security import csrf_token
from app.credentials.admins import NewAdmin
from app.main import create_app
from app.ops import stats
from app.settings import RateLimit, Settings
from tests.api import basic_auth
from tests.asgi import STALL, post_without_finishing
from tests.cli_runner import run_cli
from tests.events import onside_event
from tests.queued import event_ids


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def form_token(client: TestClient, headers: dict[str, str]) -> str:
    """Open the admin page as a browser would; return its forms' CSRF token."""
    return csrf_of(client.get("/admin", headers=headers).text)


def submit(client: TestClient, path: str, form: dict, headers: dict[str, str]) -> Response:
    """POST a form of the page, as its browser does, without following the redirect."""
    return client.post(path, data=form, headers=headers, follow_redirects=False)


def test_admin_create_prints_a_password_once_and_it_opens_the_page(
    settings: Settings,
    client: TestClient,
    admin_auth: dict[str, str],
) -> None:
    created = orjson.loads(run_cli(settings, "admin", "create", "alice", "--json").stdout)
    assert set(created) == {"username", "password"} and created["username"] == "alice"
    assert len(created["password"]) >= 40
    response = client.get("/admin", headers=basic_auth(NewAdmin(**created)))
    assert response.status_code == 200
    assert "Signed in as alice" in response.text
    assert "already exists" in run_cli(settings, "admin", "create", "alice", expect=1).stderr
    assert "alice" in run_cli(settings, "admin", "list").stdout
    assert created["password"] not in run_cli(settings, "admin", "list").stdout


@pytest.mark.parametrize("path", ["/admin", "/metrics", "/admin/failed/x"])
def test_partner_credentials_never_open_admin_pages(
    client: TestClient, auth: dict[str, str], admin: NewAdmin, path: str
) -> None:
    for headers in (
        {},
        auth,
        {"Authorization": "Basic " + base64.b64encode(f"{admin.username}:wrong".encode()).decode()},
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert 'realm="inlet-admin"' in response.headers["www-authenticate"]


def basic(username: str, password: str) -> dict[str, str]:
    return basic_auth(SimpleNamespace(username=username, password=password))


def test_failed_admin_logins_are_throttled_and_logged(
    settings: Settings, admin: NewAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    """The partners' failed-login throttle, per address; each failure logged, never its password."""
    limit = RateLimit(5, 60.0)
    guesses = [f"guess-{n}-{admin.password[:8]}" for n in range(limit.limit + 2)]
    with (
        caplog.at_level(logging.INFO),
        TestClient(
            create_app(settings.replace(auth_failure_limit=limit)), client=("203.0.113.7", 1)
        ) as attacker,
    ):
        codes = [
            attacker.get("/admin", headers=basic(admin.username, guess)).status_code
            for guess in guesses
        ]
        assert codes == [401] * limit.limit + [429] * 2
        # Still the decision made for partners: the right password always gets in.
        assert attacker.get("/admin", headers=basic_auth(admin)).status_code == 200
        # An unknown admin name counts as well, and is logged too.
        assert attacker.get("/admin", headers=basic("nobody", "x")).status_code == 429
    failures = [r.getMessage() for r in caplog.records if "admin login failed" in r.getMessage()]
    assert len(failures) == len(guesses) + 1
    assert all("203.0.113.7" in line for line in failures)
    assert sum(repr(admin.username) in line for line in failures) == len(guesses)
    assert "'nobody'" in failures[-1]
    logged = caplog.text
    assert not any(guess in logged for guess in guesses)
    assert admin.password not in logged


def test_page_shows_queue_partner_counts_and_failed_jobs(
    client: TestClient,
    auth: dict[str, str],
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
) -> None:
    job_id = failed_job([onside_event(1), onside_event(2)])
    body = {"events": [onside_event(3)]}
    assert client.post("/attribution-api/v1/events", json=body, headers=auth).status_code == 204
    assert (
        client.post("/attribution-api/v1/events", json={"events": [{}]}, headers=auth).status_code
        == 400
    )
    response = client.get("/admin", headers=admin_auth)
    html = response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-frame-options"] == "DENY"
    assert re.search(r'id="queue-depth"><b>1</b>', html)  # the accepted batch, not yet drained
    assert re.search(r'id="failed-count"><b>1</b>', html)
    row = re.search(r'<tr data-partner="acme">(.*?)</tr>', html)
    assert row is not None
    assert '<td class="num accepted">1</td>' in row.group(1)
    assert "invalid_request: 1" in row.group(1)
    assert '<td class="num failed">2</td>' in row.group(1)
    assert "<svg" in row.group(1)
    assert '<a href="/admin/live?partner=acme">watch live</a>' in row.group(1)
    assert f'data-job-id="{job_id}"' in html and "OperationalError" in html
    detail = client.get(f"/admin/failed/{job_id}", headers=admin_auth)
    assert detail.status_code == 200 and "Traceback" in detail.text
    assert onside_event(1)["event_id"] in detail.text


def test_requests_of_no_known_partner_are_counted_with_nothing_to_watch(
    client: TestClient, admin_auth: dict[str, str]
) -> None:
    """A request with bad credentials counts under "(unknown)": no live page to link to."""
    bad = {"Authorization": "Basic " + base64.b64encode(b"nobody:wrong").decode()}
    body = {"events": [onside_event(1)]}
    assert client.post("/attribution-api/v1/events", json=body, headers=bad).status_code == 401
    html = client.get("/admin", headers=admin_auth).text
    row = re.search(r'<tr data-partner="\(unknown\)">(.*?)</tr>', html)
    assert row is not None, "no (unknown) row: the test proves nothing"
    assert "/admin/live" not in row.group(1)


def test_requeue_from_the_page_lands_rows_once(
    client: TestClient,
    drain: Callable[..., None],
    engine: Engine,
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
) -> None:
    job_id = failed_job([onside_event(1), onside_event(2)])
    csrf = form_token(client, admin_auth)
    response = submit(client, f"/admin/failed/{job_id}/requeue", {"csrf": csrf}, admin_auth)
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/admin?done=requeued&job={job_id}&sig=")
    page = client.get(response.headers["location"], headers=admin_auth).text
    assert f"Job {job_id} was requeued." in page and "No failed jobs." in page
    drain()
    assert event_ids(engine) == [onside_event(1)["event_id"], onside_event(2)["event_id"]]
    again = submit(client, f"/admin/failed/{job_id}/requeue", {"csrf": csrf}, admin_auth)
    assert again.headers["location"].startswith(f"/admin?done=gone&job={job_id}&sig=")
    page = client.get(again.headers["location"], headers=admin_auth).text
    assert f"Job {job_id} is no longer failed" in page


def test_delete_and_requeue_all_from_the_page(
    settings: Settings,
    client: TestClient,
    drain: Callable[..., None],
    engine: Engine,
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
) -> None:
    doomed = failed_job([onside_event(1)])
    failed_job([onside_event(2)])
    failed_job([onside_event(3)])
    csrf = form_token(client, admin_auth)
    unconfirmed = submit(client, f"/admin/failed/{doomed}/delete", {"csrf": csrf}, admin_auth)
    assert unconfirmed.status_code == 303
    assert unconfirmed.headers["location"] == f"/admin/failed/{doomed}/delete"
    confirm_page = client.get(unconfirmed.headers["location"], headers=admin_auth)
    assert "This is permanent" in confirm_page.text
    assert 'name="confirm" value="yes"' in confirm_page.text
    assert run_cli(settings, "failed", "list", "--json").stdout.count(doomed) == 1
    deleted = submit(
        client, f"/admin/failed/{doomed}/delete", {"csrf": csrf, "confirm": "yes"}, admin_auth
    )
    assert deleted.headers["location"].startswith(f"/admin?done=deleted&job={doomed}&sig=")
    everything = submit(client, "/admin/failed/requeue-all", {"csrf": csrf}, admin_auth)
    assert everything.headers["location"].startswith("/admin?done=requeued-all&count=2&sig=")
    page = client.get(everything.headers["location"], headers=admin_auth).text
    assert "2 failed jobs were requeued." in page
    drain()
    assert event_ids(engine) == [onside_event(2)["event_id"], onside_event(3)["event_id"]]


@pytest.mark.parametrize(
    ("form", "headers", "message"),
    [
        ({}, {}, "missing"),
        ({"csrf": "0" * 64}, {}, "invalid"),
        ({"csrf": "é" * 64}, {}, "invalid"),  # compare_digest refuses non-ASCII str: was a 500
        (None, {"Origin": "https://evil.example"}, "Cross-site"),
        (None, {"Origin": "https://testserver.evil.example"}, "Cross-site"),
        (None, {"Sec-Fetch-Site": "cross-site"}, "Cross-site"),
    ],
)
def test_forms_without_a_valid_csrf_token_change_nothing(
    settings: Settings,
    client: TestClient,
    form: dict | None,
    headers: dict,
    message: str,
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
) -> None:
    job_id = failed_job([onside_event(1)])
    csrf = form_token(client, admin_auth)
    data = {"csrf": csrf} if form is None else form
    for action in ("requeue", "delete"):
        response = submit(
            client, f"/admin/failed/{job_id}/{action}", data, {**admin_auth, **headers}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden" and message in response.json()["error"]
    assert run_cli(settings, "failed", "list", "--json").stdout.count(job_id) == 1


def test_forms_work_behind_a_tls_terminating_proxy(
    client: TestClient,
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
) -> None:
    """The browser says https://host, this process sees http: same host, same site."""
    job_id = failed_job([onside_event(1)])
    csrf = form_token(client, admin_auth)
    response = submit(
        client,
        f"/admin/failed/{job_id}/delete",
        {"csrf": csrf, "confirm": "yes"},
        {
            **admin_auth,
            "Origin": "https://testserver",
            "Sec-Fetch-Site": "same-origin",
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"/admin?done=deleted&job={job_id}&sig=")


def test_csrf_token_is_bound_to_the_browser_cookie(
    client: TestClient,
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
) -> None:
    job_id = failed_job([onside_event(1)])
    csrf = form_token(client, admin_auth)
    client.cookies.clear()
    client.cookies.set("inlet_csrf", "another-browser", path="/admin")
    response = submit(client, f"/admin/failed/{job_id}/delete", {"csrf": csrf}, admin_auth)
    assert response.status_code == 403


def test_unknown_job_and_action_are_404(
    settings: Settings,
    client: TestClient,
    admin: NewAdmin,
    admin_auth: dict[str, str],
) -> None:
    assert client.get("/admin/failed/nope", headers=admin_auth).status_code == 404
    # No failed job means no form on the page: make the token the page would have made.
    assert client.get("/admin", headers=admin_auth).status_code == 200
    cookie = client.cookies.get("inlet_csrf")
    assert cookie
    csrf = csrf_token(settings.secret_key, cookie, admin.username)
    response = client.post("/admin/failed/x/explode", data={"csrf": csrf}, headers=admin_auth)
    assert response.status_code == 404


def test_page_renders_even_with_redis_down(
    settings: Settings,
    admin_auth: dict[str, str],
) -> None:
    broken = settings.replace(redis_url="unix:///nonexistent/redis.sock")
    with TestClient(create_app(broken)) as client:
        response = client.get("/admin", headers=admin_auth)
    assert response.status_code == 200
    assert "Queue state unavailable" in response.text


def test_stats_window_counts_the_last_hour_only(redis: Redis) -> None:
    now = 1_800_000_000.0
    stats.record(redis, "acme", stats.ACCEPTED, 5, now=now)
    stats.record(redis, "acme", stats.REJECTED, 1, reason="rate_limited", now=now - 120)
    stats.record(redis, "acme", stats.ACCEPTED, 7, now=now - 3600)  # an hour ago: out
    hour = stats.last_hour(redis, now=now)["acme"]
    assert (hour.accepted, hour.rejected, hour.failed) == (5, {"rate_limited": 1}, 0)
    assert hour.per_minute[-1]["accepted"] == 5 and hour.per_minute[-3]["rejected"] == 1


def test_admin_users_migration_matches_the_table_and_downgrades(database_url: str) -> None:
    """``alembic check`` finds nothing to do, and 0003 goes down and up again cleanly."""
    migrations.check(database_url)
    migrations.downgrade(database_url, "0002")
    migrations.upgrade(database_url)
    migrations.check(database_url)


@pytest.mark.parametrize(
    "query",
    [
        "done=requeued&job=Your+session+expired:+call+support+on+555-0100",
        "done=requeued-all&count=Your+session+expired:+call+support+on+555-0100",
        "done=gone&job=Your+session+expired:+call+support+on+555-0100&sig=" + "0" * 64,
    ],
    ids=["job", "count", "forged-signature"],
)
def test_the_notice_box_never_repeats_text_from_the_address(
    client: TestClient, admin: NewAdmin, query: str
) -> None:
    """Only the notices the page itself redirected to are shown: a link can't put words there."""
    page = client.get(f"/admin?{query}", headers=basic_auth(admin))
    assert page.status_code == 200
    assert "Signed in as" in page.text
    assert "call support" not in page.text and 'id="notice"' not in page.text


@pytest.mark.parametrize(
    ("peer", "headers", "secure"),
    [
        ("10.0.0.2", {"X-Forwarded-Proto": "https"}, True),
        ("10.0.0.2", {"X-Forwarded-Proto": "http"}, False),
        ("10.0.0.2", {}, False),
        # A client can't vouch for itself: only INLET_TRUSTED_PROXIES are believed.
        ("203.0.113.7", {"X-Forwarded-Proto": "https"}, False),
    ],
)
def test_csrf_cookie_is_secure_behind_a_trusted_tls_proxy(
    settings: Settings, admin: NewAdmin, peer: str, headers: dict[str, str], secure: bool
) -> None:
    proxied = settings.replace(trusted_proxies=(ip_network("10.0.0.0/8"),))
    with TestClient(create_app(proxied), client=(peer, 1)) as client:
        response = client.get("/admin", headers={**basic_auth(admin), **headers})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("inlet_csrf=")
    assert ("secure" in cookie.lower().split("; ")) is secure, cookie


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/admin/", "/admin"),
        ("/admin/?done=x", "/admin?done=x"),
        ("/healthz/", "/healthz"),
        ("/admin/failed/abc/", "/admin/failed/abc"),
    ],
)
def test_trailing_slash_redirects_ignore_the_host_header(
    client: TestClient, path: str, location: str
) -> None:
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == location
    assert "evil.example" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/admin", {"Authorization": "Basic !!!"}, b""),
        (
            "GET",
            "/admin",
            {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
            b"",
        ),
        ("GET", "/admin?done=requeued&job=%3Cscript%3E{0}", None, b""),
        ("GET", "/admin/failed/%00%2F..", None, b""),
        ("POST", "/admin/failed/x/requeue", None, b"\xff\xfe"),
        ("POST", "/admin/failed/x/requeue", None, b"a=" + b"x" * 5000),
        ("POST", "/admin/failed/x/requeue", None, b"&".join(b"k%d=v" % i for i in range(20))),
        ("POST", "/admin/failed/requeue-all", {"Content-Type": "multipart/form-data"}, b"--x"),
        ("DELETE", "/admin", None, b""),
        ("GET", "/admin/failed/x/requeue", None, b""),
    ],
)
def test_odd_admin_requests_never_get_a_500(
    client: TestClient,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: bytes,
    admin_auth: dict[str, str],
) -> None:
    response = client.request(
        method, path, content=body, headers=headers if headers is not None else admin_auth
    )
    assert response.status_code < 500, response.text
    assert "<script>" not in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_admin_forms_are_held_to_the_body_timeout(settings: Settings, admin: NewAdmin) -> None:
    """INLET_BODY_TIMEOUT holds for admin forms too, not only for partners' bodies."""
    app = create_app(settings.replace(body_timeout=0.2))
    headers = {**basic_auth(admin), "Content-Type": "application/x-www-form-urlencoded"}
    with TestClient(app) as client:
        response = client.portal.call(
            post_without_finishing, app, "/admin/failed/requeue-all", headers, STALL, b"csrf="
        )
    assert (response.status_code, response.json()["code"]) == (408, "request_timeout")
    assert response.elapsed.total_seconds() < 5
