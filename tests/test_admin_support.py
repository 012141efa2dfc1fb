"""The admin page for support: sign-in sessions, the delete confirmation, the verdict,
bounded reads with a hung Redis, the failed-events count, the chart, the live view."""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.admins import CACHE_SECONDS, NewAdmin, create_admin, delete_admin
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.ops import causes, stats
from app.settings import RateLimit, Settings
from tests.api import basic_auth
from tests.events import onside_event
from tests.queued import event_ids
from tests.services import make_settings, wait_for

HTML = {"Accept": "text/html,application/xhtml+xml"}
RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str, next_path: str = "/admin"):  # type: ignore[no-untyped-def]
    form = client.get(f"/admin/sign-in?next={next_path}", headers=HTML)
    assert form.status_code == 200
    data = {"csrf": csrf_of(form.text), "username": username, "password": password}
    data["next"] = next_path
    return client.post("/admin/sign-in", data=data, headers=HTML, follow_redirects=False)


# --- item 10: sign-in page, session cookie, sign-out ---------------------------------------


def test_a_browser_without_a_session_is_sent_to_the_sign_in_form(client: TestClient) -> None:
    response = client.get("/admin/failed/abc?x=1", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/sign-in?next=%2Fadmin%2Ffailed%2Fabc%3Fx%3D1"
    # Scripts (no text/html) still get the Basic challenge, as before.
    script = client.get("/admin", follow_redirects=False)
    assert script.status_code == 401 and "Basic" in script.headers["www-authenticate"]


def test_sign_in_sets_a_signed_http_only_lax_session_and_sign_out_clears_it(
    client: TestClient, admin: NewAdmin
) -> None:
    response = sign_in(client, admin.username, admin.password, "/admin/live")
    assert response.status_code == 303 and response.headers["location"] == "/admin/live"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("inlet_session=")
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert "path=/admin" in attributes and "secure" not in attributes  # plain http here
    assert any(a.startswith("max-age=") for a in attributes)
    assert admin.password not in cookie
    page = client.get("/admin", headers=HTML)
    assert page.status_code == 200 and f"Signed in as {admin.username}" in page.text
    out = client.post(
        "/admin/sign-out", data={"csrf": csrf_of(page.text)}, headers=HTML, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/admin/sign-in?out=1"
    assert (
        'inlet_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    )
    assert client.cookies.get("inlet_session") is None
    after = client.get("/admin", headers=HTML, follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/admin/sign-in")


def test_sign_out_needs_the_csrf_token(client: TestClient, admin: NewAdmin) -> None:
    assert sign_in(client, admin.username, admin.password).status_code == 303
    response = client.post("/admin/sign-out", data={}, headers=HTML, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/admin", headers=HTML).status_code == 200  # still signed in


def test_the_sign_in_form_needs_its_csrf_token(client: TestClient, admin: NewAdmin) -> None:
    client.get("/admin/sign-in", headers=HTML)
    data = {"username": admin.username, "password": admin.password}
    response = client.post("/admin/sign-in", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert "inlet_session" not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("peer,secure", [("10.0.0.2", True), ("203.0.113.7", False)])
def test_the_session_cookie_is_secure_behind_a_trusted_tls_proxy(
    settings: Settings, admin: NewAdmin, peer: str, secure: bool
) -> None:
    proxied = settings.replace(trusted_proxies=(ip_network("10.0.0.0/8"),))
    with TestClient(create_app(proxied), client=(peer, 1)) as client:
        form = client.get("/admin/sign-in", headers=HTML)
        response = client.post(
            "/admin/sign-in",
            data={
                "csrf": csrf_of(form.text),
                "username": admin.username,
                "password": admin.password,
            },
            headers={"X-Forwarded-Proto": "https"},
            follow_redirects=False,
        )
    assert response.status_code == 303
    attributes = [p.strip().lower() for p in response.headers["set-cookie"].split(";")]
    assert ("secure" in attributes) is secure


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/admin", "/elsewhere"])
def test_sign_in_never_redirects_off_the_admin_page(
    client: TestClient, admin: NewAdmin, target: str
) -> None:
    response = sign_in(client, admin.username, admin.password, target)
    assert response.status_code == 303 and response.headers["location"] == "/admin"


def test_wrong_passwords_on_the_form_are_refused_then_throttled(
    settings: Settings, admin: NewAdmin, partner: NewPartner
) -> None:
    limit = RateLimit(3, 60.0)
    with TestClient(
        create_app(settings.replace(auth_failure_limit=limit)), client=("203.0.113.9", 1)
    ) as client:
        codes = []
        for username, password in [
            (admin.username, "wrong"),
            (partner.username, partner.password),  # a partner's credentials never sign in
            ("nobody", "x"),
            (admin.username, "wrong again"),
        ]:
            response = sign_in(client, username, password)
            codes.append(response.status_code)
            assert "inlet_session" not in response.headers.get("set-cookie", "")
        assert codes == [401, 401, 401, 429]
        assert "Too many failed" in response.text and response.headers["retry-after"]
        # As for Basic: the right password always gets in.
        assert sign_in(client, admin.username, admin.password).status_code == 303


class _Backdated(TimestampSigner):
    """Signs as if 13 hours ago: past INLET_ADMIN_SESSION_HOURS' default of 12."""

    def get_timestamp(self) -> int:  # type: ignore[override]
        return int(time.time()) - 13 * 3600


def _session_of(client: TestClient, admin: NewAdmin) -> str:
    assert sign_in(client, admin.username, admin.password).status_code == 303
    cookie = client.cookies.get("inlet_session")
    assert cookie
    return cookie


def test_sessions_expire_and_forged_ones_are_refused(
    settings: Settings, client: TestClient, admin: NewAdmin
) -> None:
    cookie = _session_of(client, admin)
    payload = URLSafeTimedSerializer(settings.secret_key, salt="inlet-admin-session").loads(cookie)
    old = URLSafeTimedSerializer(
        settings.secret_key, salt="inlet-admin-session", signer=_Backdated
    ).dumps(payload)
    other_key = URLSafeTimedSerializer(b"another-key", salt="inlet-admin-session").dumps(payload)
    for value, expected in [(cookie, 200), (old, 303), (other_key, 303), ("garbage", 303)]:
        client.cookies.clear()
        client.cookies.set("inlet_session", value, path="/admin")
        response = client.get("/admin", headers=HTML, follow_redirects=False)
        assert response.status_code == expected, value


def test_deleting_an_admin_ends_its_sessions(
    settings: Settings, client: TestClient, engine: Engine
) -> None:
    bob = create_admin(engine, settings.secret_key, "bob")
    _session_of(client, bob)
    assert client.get("/admin", headers=HTML).status_code == 200
    delete_admin(engine, "bob")
    # Within the admin store's cache time (CACHE_SECONDS), like a deleted admin's Basic login.
    wait_for(
        lambda: client.get("/admin", headers=HTML, follow_redirects=False).status_code == 303,
        timeout=CACHE_SECONDS + 3,
        message="the deleted admin's session to end",
    )


def test_basic_still_works_for_metrics_and_scripts(
    client: TestClient, admin_auth: dict[str, str]
) -> None:
    assert client.get("/metrics", headers=admin_auth).status_code == 200
    assert client.get("/admin", headers={**admin_auth, **HTML}).status_code == 200


# --- item 2: delete asks first -----------------------------------------------------------


def test_delete_is_only_offered_on_its_own_confirmation_page(
    client: TestClient, failed_job: Callable[..., str], admin_auth: dict[str, str]
) -> None:
    job_id = failed_job([onside_event(1)])
    dashboard = client.get("/admin", headers=admin_auth).text
    assert f"/admin/failed/{job_id}/delete" not in dashboard  # no delete under Requeue
    detail = client.get(f"/admin/failed/{job_id}", headers=admin_auth).text
    assert f'href="/admin/failed/{job_id}/delete"' in detail
    assert 'name="confirm"' not in detail  # the job page itself deletes nothing
    confirm = client.get(f"/admin/failed/{job_id}/delete", headers=admin_auth)
    assert confirm.status_code == 200
    assert "This is permanent" in confirm.text and "cannot be undone" in confirm.text
    for forged in ("no", "", "YES"):
        response = client.post(
            f"/admin/failed/{job_id}/delete",
            data={"csrf": csrf_of(confirm.text), "confirm": forged},
            headers=admin_auth,
            follow_redirects=False,
        )
        assert response.headers["location"] == f"/admin/failed/{job_id}/delete"
    assert client.get(f"/admin/failed/{job_id}", headers=admin_auth).status_code == 200


# --- item 4: the verdict first -----------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "name", "kind"),
    [
        (
            "OperationalError: (psycopg.OperationalError) connection refused",
            "database-unreachable",
            causes.TRANSIENT,
        ),
        (
            "IntegrityError: insert or update violates foreign key constraint",
            "partner-gone",
            causes.PERMANENT,
        ),
        (
            "OperationalError: index row size 3000 exceeds maximum 2712",
            "data-refused",
            causes.PERMANENT,
        ),
        ("AbandonedJobError: work-horse terminated unexpectedly", "worker-died", causes.TRANSIENT),
        (
            "JobTimeoutException: Task exceeded maximum timeout value (20 seconds)",
            "job-timeout",
            causes.TRANSIENT,
        ),
        ("KeyError: 'event_id'", "unknown", causes.PERMANENT),
        ("", "unknown", causes.PERMANENT),
    ],
)
def test_each_error_gets_its_verdict(error: str, name: str, kind: str) -> None:
    found = causes.verdict(error)
    assert (found.name, found.kind) == (name, kind)


def test_the_runbook_holds_the_pages_table() -> None:
    """docs/runbook.md's cause -> action table is generated from app/ops/causes.py."""
    assert causes.markdown() in RUNBOOK.read_text(), (
        "docs/runbook.md is stale: paste `python -m app.ops.causes --markdown` in its step 2"
    )


def test_the_failed_job_page_opens_with_the_verdict(
    client: TestClient, failed_job: Callable[..., str], admin_auth: dict[str, str]
) -> None:
    job_id = failed_job([onside_event(1)])
    page = client.get(f"/admin/failed/{job_id}", headers=admin_auth).text
    assert 'class="verdict transient"' in page and 'data-cause="database-unreachable"' in page
    assert "Fix the database" in page and "Transient" in page
    assert re.search(r'<code id="error-line">[\w.]*OperationalError: ', page)
    positions = [page.index(mark) for mark in ('id="verdict"', 'id="traceback"', "Metadata")]
    assert positions == sorted(positions), "the verdict comes before the traceback"
    last = re.search(r'<pre id="traceback-last">(.*?)</pre>', page, re.S)
    whole = re.search(r'<pre id="traceback">(.*?)</pre>', page, re.S)
    assert last and whole and "Traceback" in whole.group(1)
    assert last.group(1) == whole.group(1).strip().splitlines()[-1]


# --- item 5: a hung Redis, a database away -----------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="inlet-adm-"))).start()
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_hung_redis_gives_a_page_within_two_seconds_with_a_banner(
    database_url: str, own_redis: EmbeddedRedis, tmp_path: Path, engine: Engine
) -> None:
    settings = make_settings(database_url, own_redis.url, tmp_path, INLET_REDIS_TIMEOUT="2")
    admin = create_admin(engine, settings.secret_key, "carol")
    assert own_redis.process is not None
    with TestClient(create_app(settings)) as client:
        healthy = client.get("/admin", headers=basic_auth(admin))
        assert 'id="health-redis"><td>redis</td><td class="ok">' in healthy.text
        assert "banner-redis" not in healthy.text
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = client.get("/admin", headers=basic_auth(admin))
            elapsed = time.monotonic() - started
            started = time.monotonic()
            job_page = client.get("/admin/failed/some-job", headers=basic_auth(admin))
            job_elapsed = time.monotonic() - started
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
    assert job_page.status_code == 503 and job_elapsed < 2.5, job_elapsed
    assert 'id="banner-redis"' in job_page.text and job_page.headers["retry-after"] == "5"
    assert response.status_code == 200
    assert elapsed < 2.5, f"the page took {elapsed:.1f} s with Redis hung"
    assert 'id="banner-redis"' in response.text and "Redis is unavailable" in response.text
    assert 'id="health-redis"><td>redis</td><td class="bad">unavailable' in response.text
    assert 'id="health-database"><td>database</td><td class="ok">' in response.text
    assert "not ready (503)" in response.text


def test_a_signed_in_admin_sees_the_database_banner(
    settings: Settings, client: TestClient, admin: NewAdmin
) -> None:
    cookie = _session_of(client, admin)
    broken = settings.replace(database_url="postgresql+psycopg://x@127.0.0.1:9/nowhere")
    with TestClient(create_app(broken)) as other:
        other.cookies.set("inlet_session", cookie, path="/admin")
        response = other.get("/admin", headers=HTML, follow_redirects=False)
    assert response.status_code == 200
    assert 'id="banner-database"' in response.text
    assert 'id="health-database"><td>database</td><td class="bad">' in response.text
    assert 'id="health-redis"><td>redis</td><td class="ok">' in response.text


# --- item 6: what "events failed" counts, and the chart ----------------------------------


def test_events_in_failed_jobs_count_what_is_failed_now(
    client: TestClient,
    failed_job: Callable[..., str],
    admin_auth: dict[str, str],
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    job_id = failed_job([onside_event(n) for n in range(11)])

    def failed_cell() -> str:
        page = client.get("/admin", headers=admin_auth).text
        row = re.search(r'<tr data-partner="acme">(.*?)</tr>', page, re.S)
        assert row, page
        cell = re.search(r'<td class="num failed">(\d+)</td>', row.group(1))
        assert cell
        return cell.group(1)

    assert failed_cell() == "11"
    page = client.get("/admin", headers=admin_auth).text
    assert "events in failed jobs now" in page
    assert "events failed for good: 11 in the hour" in page  # the history stays, labelled
    requeue = client.post(
        f"/admin/failed/{job_id}/requeue",
        data={"csrf": csrf_of(page)},
        headers=admin_auth,
        follow_redirects=False,
    )
    assert requeue.status_code == 303
    drain()
    assert len(event_ids(engine)) == 11
    assert failed_cell() == "0"


def test_eleven_failures_beside_a_thousand_accepted_fill_their_own_strip(
    client: TestClient, redis: Redis, admin_auth: dict[str, str]
) -> None:
    now = time.time()
    stats.record(redis, "acme", stats.ACCEPTED, 1000, now=now)
    stats.record(redis, "acme", stats.FAILED, 11, now=now)
    page = client.get("/admin", headers=admin_auth).text
    strips = dict(re.findall(r'<div class="strip" data-kind="(\w+)">(.*?)</div>', page, re.S))
    assert set(strips) == {"accepted", "rejected", "failed"}
    failed_bar = re.search(
        r'<rect x="236" y="([\d.]+)" width="3" height="([\d.]+)"', strips["failed"]
    )
    assert failed_bar and float(failed_bar.group(2)) == 18.0  # full height: its own scale
    assert "peak 11/min" in strips["failed"] and "peak 1000/min" in strips["accepted"]


# --- the live view ------------------------------------------------------------------------


def test_the_live_view_shows_both_formats_queued_then_stored(
    settings: Settings,
    client: TestClient,
    auth: dict[str, str],
    partner: NewPartner,
    engine: Engine,
    admin_auth: dict[str, str],
    drain: Callable[..., None],
) -> None:
    key = create_api_key(engine, settings.secret_key, partner.name, "live")
    event = onside_event(5)
    body = {"events": [event]}
    assert client.post("/attribution-api/v1/events", json=body, headers=auth).status_code == 204
    thrad = {"event_name": "items_added", "tag_id": "tag-live", "event_id": "thrad-live-1"}
    bearer = {"Authorization": f"Bearer {key.api_key}"}
    assert client.post("/v1/api/collect", json=thrad, headers=bearer).status_code == 204

    def live_rows() -> list[tuple[str, str, str]]:
        page = client.get("/admin/live?partner=acme", headers=admin_auth)
        assert page.status_code == 200
        assert '<meta http-equiv="refresh" content="5">' in page.text
        return re.findall(
            r'data-state="(\w+)" data-format="(\w+)">.*?<td class="err">([^<]*)</td>', page.text
        )

    assert sorted(live_rows()) == [
        ("queued", "onside", event["event_id"]),
        ("queued", "thrad", "thrad-live-1"),
    ]
    drain()
    assert sorted(live_rows()) == [
        ("stored", "onside", event["event_id"]),
        ("stored", "thrad", "thrad-live-1"),
    ]
    unknown = client.get("/admin/live?partner=nobody", headers=admin_auth).text
    assert 'id="unknown-partner"' in unknown


def test_live_view_needs_an_admin(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/admin/live?partner=acme", headers=auth).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/admin/sign-in", b"\xff\xfe"),
        ("POST", "/admin/sign-in", b"username=" + b"x" * 5000),
        ("POST", "/admin/sign-in", b"&".join(b"k%d=v" % i for i in range(20))),
        ("GET", "/admin/sign-in?next=%22%3E%3Cscript%3Ealert(1)%3C/script%3E", b""),
        ("GET", "/admin/live?partner=%3Cscript%3E&n=-5", b""),
        ("GET", "/admin/find?partner=acme&event_id=%3Cscript%3E&since=not-a-time", b""),
        ("POST", "/admin/sign-out", b""),
    ],
)
def test_odd_sign_in_and_support_requests_never_get_a_500(
    client: TestClient, admin_auth: dict[str, str], method: str, path: str, body: bytes
) -> None:
    client.get("/admin/sign-in", headers=HTML)  # a CSRF cookie, as a browser has
    response = client.request(
        method, path, content=body, headers={**admin_auth, "Content-Type": "x"}
    )
    assert response.status_code < 500, response.text
    assert "<script>" not in response.text
