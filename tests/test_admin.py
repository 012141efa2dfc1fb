"""The admin page over HTTP: its own credentials, CSRF on every form, requeue and delete."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import orjson
import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app import migrations
from app.admin.security import csrf_token
from app.credentials.admins import NewAdmin
from app.credentials.partners import NewPartner
from app.main import create_app
from app.ops import stats
from app.settings import Settings
from tests.asgi import STALL, post_without_finishing
from tests.cli_runner import run_cli
from tests.conftest import admin_auth
from tests.test_failed import fail_for_real
from tests.test_jobs import event_ids, make_event


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_admin_create_prints_a_password_once_and_it_opens_the_page(
    settings: Settings, client: TestClient
) -> None:
    created = orjson.loads(run_cli(settings, "admin", "create", "alice", "--json").stdout)
    assert set(created) == {"username", "password"} and created["username"] == "alice"
    assert len(created["password"]) >= 40
    response = client.get("/admin", headers=admin_auth(NewAdmin(**created)))
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


def test_page_shows_queue_partner_counts_and_failed_jobs(
    settings: Settings,
    redis: Redis,
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    drain: Callable[..., None],
    auth: dict[str, str],
) -> None:
    job_id = fail_for_real(settings, redis, partner, drain, [make_event(1), make_event(2)])
    body = {"events": [{**make_event(3), "event_datetime": "2026-05-05T12:00:00Z"}]}
    assert client.post("/attribution-api/v1/events", json=body, headers=auth).status_code == 204
    assert (
        client.post("/attribution-api/v1/events", json={"events": [{}]}, headers=auth).status_code
        == 400
    )
    response = client.get("/admin", headers=admin_auth(admin))
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
    assert f'data-job-id="{job_id}"' in html and "OperationalError" in html
    detail = client.get(f"/admin/failed/{job_id}", headers=admin_auth(admin))
    assert detail.status_code == 200 and "Traceback" in detail.text
    assert make_event(1)["event_id"] in detail.text


def test_requeue_from_the_page_lands_rows_once(
    settings: Settings,
    redis: Redis,
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    job_id = fail_for_real(settings, redis, partner, drain, [make_event(1), make_event(2)])
    csrf = csrf_of(client.get("/admin", headers=admin_auth(admin)).text)
    response = client.post(
        f"/admin/failed/{job_id}/requeue",
        data={"csrf": csrf},
        headers=admin_auth(admin),
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin?done=requeued&job={job_id}"
    page = client.get(response.headers["location"], headers=admin_auth(admin)).text
    assert f"Job {job_id} was requeued." in page and "No failed jobs." in page
    drain()
    assert event_ids(engine) == [make_event(1)["event_id"], make_event(2)["event_id"]]
    again = client.post(
        f"/admin/failed/{job_id}/requeue",
        data={"csrf": csrf},
        headers=admin_auth(admin),
        follow_redirects=False,
    )
    assert again.headers["location"] == f"/admin?done=gone&job={job_id}"


def test_delete_and_requeue_all_from_the_page(
    settings: Settings,
    redis: Redis,
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    doomed = fail_for_real(settings, redis, partner, drain, [make_event(1)])
    fail_for_real(settings, redis, partner, drain, [make_event(2)])
    fail_for_real(settings, redis, partner, drain, [make_event(3)])
    csrf = csrf_of(client.get("/admin", headers=admin_auth(admin)).text)
    deleted = client.post(
        f"/admin/failed/{doomed}/delete",
        data={"csrf": csrf},
        headers=admin_auth(admin),
        follow_redirects=False,
    )
    assert deleted.headers["location"] == f"/admin?done=deleted&job={doomed}"
    everything = client.post(
        "/admin/failed/requeue-all",
        data={"csrf": csrf},
        headers=admin_auth(admin),
        follow_redirects=False,
    )
    assert everything.headers["location"] == "/admin?done=requeued-all&count=2"
    drain()
    assert event_ids(engine) == [make_event(2)["event_id"], make_event(3)["event_id"]]


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
    redis: Redis,
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    drain: Callable[..., None],
    form: dict | None,
    headers: dict,
    message: str,
) -> None:
    job_id = fail_for_real(settings, redis, partner, drain, [make_event(1)])
    csrf = csrf_of(client.get("/admin", headers=admin_auth(admin)).text)
    data = {"csrf": csrf} if form is None else form
    for action in ("requeue", "delete"):
        response = client.post(
            f"/admin/failed/{job_id}/{action}",
            data=data,
            headers={**admin_auth(admin), **headers},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden" and message in response.json()["error"]
    assert run_cli(settings, "failed", "list", "--json").stdout.count(job_id) == 1


def test_forms_work_behind_a_tls_terminating_proxy(
    settings: Settings,
    redis: Redis,
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    drain: Callable[..., None],
) -> None:
    """The browser says https://host, this process sees http: same host, same site."""
    job_id = fail_for_real(settings, redis, partner, drain, [make_event(1)])
    csrf = csrf_of(client.get("/admin", headers=admin_auth(admin)).text)
    response = client.post(
        f"/admin/failed/{job_id}/delete",
        data={"csrf": csrf},
        headers={
            **admin_auth(admin),
            "Origin": "https://testserver",
            "Sec-Fetch-Site": "same-origin",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def test_csrf_token_is_bound_to_the_browser_cookie(
    settings: Settings,
    redis: Redis,
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    drain: Callable[..., None],
) -> None:
    job_id = fail_for_real(settings, redis, partner, drain, [make_event(1)])
    csrf = csrf_of(client.get("/admin", headers=admin_auth(admin)).text)
    client.cookies.clear()
    client.cookies.set("inlet_csrf", "another-browser", path="/admin")
    response = client.post(
        f"/admin/failed/{job_id}/delete",
        data={"csrf": csrf},
        headers=admin_auth(admin),
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_unknown_job_and_action_are_404(
    settings: Settings, client: TestClient, admin: NewAdmin
) -> None:
    assert client.get("/admin/failed/nope", headers=admin_auth(admin)).status_code == 404
    # No failed job means no form on the page: make the token the page would have made.
    assert client.get("/admin", headers=admin_auth(admin)).status_code == 200
    cookie = client.cookies.get("inlet_csrf")
    assert cookie
    csrf = csrf_token(settings.secret_key, cookie, admin.username)
    response = client.post(
        "/admin/failed/x/explode", data={"csrf": csrf}, headers=admin_auth(admin)
    )
    assert response.status_code == 404


def test_page_renders_even_with_redis_down(settings: Settings, admin: NewAdmin) -> None:
    broken = settings.replace(redis_url="unix:///nonexistent/redis.sock")
    with TestClient(create_app(broken)) as client:
        response = client.get("/admin", headers=admin_auth(admin))
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
    admin: NewAdmin,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: bytes,
) -> None:
    response = client.request(
        method, path, content=body, headers=headers if headers is not None else admin_auth(admin)
    )
    assert response.status_code < 500, response.text
    assert "<script>" not in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_admin_forms_are_held_to_the_body_timeout(settings: Settings, admin: NewAdmin) -> None:
    """INLET_BODY_TIMEOUT holds for admin forms too, not only for partners' bodies."""
    app = create_app(settings.replace(body_timeout=0.2))
    headers = {**admin_auth(admin), "Content-Type": "application/x-www-form-urlencoded"}
    with TestClient(app) as client:
        response = client.portal.call(
            post_without_finishing, app, "/admin/failed/requeue-all", headers, STALL, b"csrf="
        )
    assert (response.status_code, response.json()["code"]) == (408, "request_timeout")
    assert response.elapsed.total_seconds() < 5
