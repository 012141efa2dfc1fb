"""Repeated failed authentication from one address gets 429, and never locks out the partner."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network

import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.main import create_app
from app.settings import RateLimit, Settings
from tests.api import assert_error, basic_auth
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.queued import queued_jobs

ATTACKER = "203.0.113.7"
PARTNER_HOST = "198.51.100.20"
LIMIT = RateLimit(5, 60.0)


@pytest.fixture
def throttled(settings: Settings) -> Settings:
    return settings.replace(auth_failure_limit=LIMIT)


@pytest.fixture
def attacker(throttled: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(throttled), client=(ATTACKER, 50000)) as client:
        yield client


def wrong(partner: NewPartner) -> dict[str, str]:
    """The right username with a password differing in the last character."""
    last = "A" if partner.password[-1] != "A" else "B"
    return basic_auth(
        NewPartner(partner.id, partner.name, partner.username, partner.password[:-1] + last)
    )


def test_failures_past_the_limit_get_429_with_retry_after(
    attacker: TestClient, partner: NewPartner
) -> None:
    statuses = [
        attacker.post(URL, json={"events": [onside_event(1)]}, headers=wrong(partner))
        for _ in range(LIMIT.limit + 2)
    ]
    assert [r.status_code for r in statuses] == [401] * LIMIT.limit + [429, 429]
    body = assert_error(statuses[-1], 429, "too_many_failed_logins")
    assert partner.password not in str(body)
    assert 1 <= int(statuses[-1].headers["retry-after"]) <= LIMIT.period


def test_throttled_address_still_gets_in_with_the_right_credentials(
    attacker: TestClient,
    throttled: Settings,
    partner: NewPartner,
    auth: dict[str, str],
    redis: Redis,
) -> None:
    """The decision: correct credentials always pass, even from the throttled address
    (a NAT shared with the attacker, or the partner's own server with an old password)."""
    for _ in range(LIMIT.limit + 3):
        attacker.post(URL, json={"events": [onside_event(1)]}, headers=wrong(partner))
    assert (
        attacker.post(URL, json={"events": [onside_event(1)]}, headers=wrong(partner)).status_code
        == 429
    )
    assert attacker.post(URL, json={"events": [onside_event(2)]}, headers=auth).status_code == 204
    with TestClient(create_app(throttled), client=(PARTNER_HOST, 50000)) as elsewhere:
        assert (
            elsewhere.post(URL, json={"events": [onside_event(3)]}, headers=auth).status_code == 204
        )
        # Another address has its own count: its first wrong password is a plain 401.
        assert (
            elsewhere.post(
                URL, json={"events": [onside_event(4)]}, headers=wrong(partner)
            ).status_code
            == 401
        )
    assert queued_jobs(redis) == 2


def test_unknown_usernames_count_too(attacker: TestClient, partner: NewPartner) -> None:
    stranger = NewPartner(0, "nobody", "pk_" + "0" * 24, "x" * 43)
    codes = [
        attacker.post(
            URL, json={"events": [onside_event(1)]}, headers=basic_auth(stranger)
        ).status_code
        for _ in range(LIMIT.limit + 1)
    ]
    assert codes[-1] == 429 and codes[:-1] == [401] * LIMIT.limit


def test_the_count_is_shared_by_every_web_process(throttled: Settings, partner: NewPartner) -> None:
    """Two apps (as two uvicorn processes would be) add to one count in Redis."""
    with (
        TestClient(create_app(throttled), client=(ATTACKER, 1)) as one,
        TestClient(create_app(throttled), client=(ATTACKER, 2)) as two,
    ):
        codes = [
            c.post(URL, json={"events": [onside_event(1)]}, headers=wrong(partner)).status_code
            for c in [one, two] * 3
        ]
    assert codes == [401] * LIMIT.limit + [429]


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    throttled: Settings, partner: NewPartner, auth: dict[str, str]
) -> None:
    proxied = throttled.replace(trusted_proxies=(ip_network("10.0.0.0/8"),))
    with TestClient(create_app(proxied), client=("10.0.0.2", 1)) as proxy:
        for _ in range(LIMIT.limit):
            proxy.post(
                URL,
                json={"events": [onside_event(1)]},
                headers={**wrong(partner), "X-Forwarded-For": ATTACKER},
            )
        blocked = proxy.post(
            URL,
            json={"events": [onside_event(1)]},
            headers={**wrong(partner), "X-Forwarded-For": ATTACKER},
        )
        assert blocked.status_code == 429
        # Another client behind the same proxy is not the attacker.
        other = proxy.post(
            URL,
            json={"events": [onside_event(1)]},
            headers={**wrong(partner), "X-Forwarded-For": PARTNER_HOST},
        )
        assert other.status_code == 401


def test_a_client_cannot_rotate_its_identity_with_extra_forwarded_for_lines(
    throttled: Settings, partner: NewPartner
) -> None:
    """A made-up first X-Forwarded-For line must not become the throttle's key."""
    proxied = throttled.replace(trusted_proxies=(ip_network("10.0.0.0/8"),))
    with TestClient(create_app(proxied), client=("10.0.0.2", 1)) as proxy:
        codes = [
            proxy.post(
                URL,
                json={"events": [onside_event(1)]},
                headers=[
                    *wrong(partner).items(),
                    ("X-Forwarded-For", f"192.0.2.{attempt}"),  # a new lie each time
                    ("X-Forwarded-For", ATTACKER),  # what the proxy saw
                ],
            ).status_code
            for attempt in range(LIMIT.limit + 1)
        ]
    assert codes == [401] * LIMIT.limit + [429]


def test_redis_down_fails_open_to_401(
    settings: Settings, partner: NewPartner, tmp_path: object
) -> None:
    down = settings.replace(
        redis_url=f"unix://{tmp_path}/nothing.sock", auth_failure_limit=RateLimit(1, 60.0)
    )
    with TestClient(create_app(down)) as client:
        codes = [
            client.post(URL, json={"events": [onside_event(1)]}, headers=wrong(partner)).status_code
            for _ in range(3)
        ]
    assert codes == [401, 401, 401]


def test_thrad_bearer_keys_are_throttled_the_same_way(
    attacker: TestClient, engine: Engine, throttled: Settings, partner: NewPartner
) -> None:
    key = create_api_key(engine, throttled.secret_key, partner.name, "backend")
    wrong_key = {
        "Authorization": f"Bearer {key.api_key[:-1]}{'A' if key.api_key[-1] != 'A' else 'B'}"
    }
    body = {"event_name": "items_added"}
    codes = [
        attacker.post("/v1/api/collect", json=body, headers=wrong_key).status_code
        for _ in range(LIMIT.limit + 1)
    ]
    assert codes == [401] * LIMIT.limit + [429]
    right = {"Authorization": f"Bearer {key.api_key}"}
    assert attacker.post("/v1/api/collect", json=body, headers=right).status_code == 204
