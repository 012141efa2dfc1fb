"""REDIS_URL: every scheme the factory takes, and clear refusals at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from redis.sentinel import SentinelConnectionPool

from app.cli import main
from app.errors import ConfigError
from app.redis_client import SentinelURL, make_redis, parse_sentinel_url, redacted
from app.settings import Settings

PASSWORD = "hunter2-Secr3t"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://s1:26379/inlet",
            SentinelURL((("s1", 26379),), "inlet"),
        ),
        (
            f"redis+sentinel://:{PASSWORD}@10.0.0.1:5000,10.0.0.2:5001,s3/inlet/4",
            SentinelURL(
                (("10.0.0.1", 5000), ("10.0.0.2", 5001), ("s3", 26379)), "inlet", 4, None, PASSWORD
            ),
        ),
        (
            "redis+sentinel://app:p%40ss%3Aword@[::1]:26380/my-service/",
            SentinelURL((("::1", 26380),), "my-service", 0, "app", "p@ss:word"),
        ),
    ],
)
def test_a_sentinel_url_is_parsed_into_addresses_service_and_db(
    url: str, expected: SentinelURL
) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel:///inlet", "no Sentinel address"),
        ("redis+sentinel://s1:26379", "no service name"),
        ("redis+sentinel://s1:26379/", "no service name"),
        ("redis+sentinel://s1:port/inlet", "port must be a number"),
        ("redis+sentinel://s1:70000/inlet", "port must be a number"),
        ("redis+sentinel://s1:26379,/inlet", "has no host"),
        ("redis+sentinel://s1:26379/inlet/x", "database must be a number"),
        ("redis+sentinel://s1:26379/inlet/1/2", "SERVICE_NAME[/DB]"),
        ("redis+sentinel://[::1:26379/inlet", "unclosed"),
        (f"redis+sentinel://{PASSWORD}@s1:26379/inlet", "USER:PASSWORD@"),
        ("redis+sentinel://s1:26379/inlet?ssl=true", "no query string"),
        ("sentinel://s1:26379/inlet", "must start with one of"),
        (f"http://:{PASSWORD}@example.com/", "must start with one of"),
        (f"redis://:{PASSWORD}@h:notaport/0", "Port could not be cast"),
        (f"rediss://:{PASSWORD}@h:99999/0", "Port out of range"),
    ],
)
def test_a_bad_redis_url_stops_start_up_naming_the_problem_not_the_password(
    url: str, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": url, "INLET_DATA_DIR": str(tmp_path)})
    message = str(caught.value)
    assert problem in message
    assert "REDIS_URL" in message
    assert PASSWORD not in message


def test_redacted_hides_only_the_password() -> None:
    assert redacted(f"rediss://app:{PASSWORD}@h:6380/0") == "rediss://app:***@h:6380/0"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/2", "rediss://:pw@127.0.0.1:6380/0", "unix:///tmp/r.sock"]
)
def test_plain_tls_and_unix_urls_still_make_plain_clients(url: str) -> None:
    client = make_redis(url, timeout=1)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 1
    assert not isinstance(client.connection_pool, SentinelConnectionPool)
    if url.startswith("rediss"):
        assert kwargs["password"] == "pw"
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_a_sentinel_url_makes_a_client_of_the_primary_sentinel_names() -> None:
    client = make_redis(f"redis+sentinel://app:{PASSWORD}@127.0.0.1:1,127.0.0.1:2/inlet/3", 0.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "inlet" and pool.is_master
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == PASSWORD
    assert pool.connection_kwargs["username"] == "app"
    # The Sentinels are asked without the data nodes' credentials, within the timeout.
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in sentinels)
    assert all(s.connection_pool.connection_kwargs["socket_timeout"] == 0.5 for s in sentinels)


@pytest.mark.parametrize("command", [["worker"], ["web"], ["failed", "list"]])
def test_every_command_refuses_a_bad_redis_url_in_one_line_without_the_password(
    command: list[str], tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379,127.0.0.1:x/inlet",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'inlet.db'}",
        "INLET_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert "REDIS_URL" in line and "port must be a number" in line
    assert PASSWORD not in result.output
