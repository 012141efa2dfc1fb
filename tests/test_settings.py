from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import SETTINGS, RateLimit, Settings, normalize_database_url


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("100/second", 100, 1),
        ("5/minute", 5, 60),
        ("1000/hour", 1000, 3600),
        ("7 / 10 seconds", 7, 10),
        ("2/DAY", 2, 86400),
    ],
)
def test_rate_limits_parse(text: str, limit: int, period: int) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, period)


@pytest.mark.parametrize("text", ["", "100", "0/second", "ten/second", "5/fortnight"])
def test_bad_rate_limits_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        RateLimit.parse(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_are_normalized(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings.from_env({"INLET_DATA_DIR": str(tmp_path)})
    assert settings.database_url.startswith("sqlite:////")
    assert settings.redis_url.startswith("unix:///")
    assert settings.port == 8000
    assert str(settings.rate_limit) == "100/second"
    # The generated key is stable across processes.
    assert Settings.from_env({"INLET_DATA_DIR": str(tmp_path)}).secret_key == settings.secret_key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "env",
    [
        {"INLET_RATE_LIMIT": "lots"},
        {"PORT": "eighty"},
        {"INLET_RETRY_DELAYS": "1,x"},
        {"INLET_UNKNOWN_EVENTS": "maybe"},
        {"INLET_FUTURE_EVENTS": "warn"},
        {"INLET_TOO_OLD_EVENTS": "drop"},
        {"INLET_MAX_FUTURE_SECONDS": "-1"},
        {"INLET_MAX_AGE_DAYS": "0"},
        {"INLET_TAKE_MAX_EVENTS": "0"},
        {"INLET_TAKE_MAX_EVENTS": "many"},
    ],
)
def test_invalid_settings_fail_loudly(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path), **env})


NUMERIC_SETTINGS = [
    "PORT",
    "WEB_CONCURRENCY",
    "INLET_JOB_TIMEOUT",
    "INLET_REDIS_TIMEOUT",
    "INLET_REDIS_MIN_REPLICAS",
    "INLET_REDIS_REPLICA_TIMEOUT_MS",
    "INLET_MAX_BODY_BYTES",
    "INLET_MAX_BATCH_EVENTS",
    "INLET_GROUP_MAX_EVENTS",
    "INLET_GROUP_WAIT_MS",
    "INLET_TAKE_MAX_EVENTS",
    "INLET_MAX_JSON_CONTAINERS",
    "INLET_TOMBSTONE_HOURS",
    "INLET_BODY_TIMEOUT",
    "INLET_KEEP_ALIVE_TIMEOUT",
    "INLET_MAX_HEAD_BYTES",
    "INLET_MAX_HEADERS",
    "INLET_HEAD_TIMEOUT",
    "INLET_REFUSALS_DAYS",
    "INLET_REFUSALS_PER_PARTNER",
    "INLET_ADMIN_SESSION_HOURS",
    "INLET_MAX_FUTURE_SECONDS",
    "INLET_MAX_AGE_DAYS",
    "INLET_DEDUP_DAYS",
    "INLET_RETENTION_DAYS",
]


@pytest.mark.parametrize("name", NUMERIC_SETTINGS)
def test_a_numeric_setting_that_is_not_a_number_is_named(name: str, tmp_path: Path) -> None:
    """An operator reads which variable is wrong, not int()'s "invalid literal"."""
    with pytest.raises(ConfigError, match=rf"^invalid setting: {name} must be .*'many'"):
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path), name: "many"})


def test_a_shared_database_needs_a_shared_secret_key(tmp_path: Path) -> None:
    """A key generated per host would make every login a 401: refuse to start instead."""
    with pytest.raises(ConfigError, match="INLET_SECRET_KEY"):
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u@h/db"})
    settings = Settings.from_env(
        {
            "INLET_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u@h/db",
            "INLET_SECRET_KEY": "k" * 32,
        }
    )
    assert settings.secret_key == b"k" * 32


@pytest.mark.parametrize("key", ["x", "k" * 31])
def test_a_short_secret_key_is_refused(key: str, tmp_path: Path) -> None:
    """A short key makes the stored credential hashes cheap to attack."""
    with pytest.raises(ConfigError, match=r"INLET_SECRET_KEY is too short .* at least 32"):
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path), "INLET_SECRET_KEY": key})


@pytest.mark.parametrize("content", [b"", b"\n", b"short\n"])
def test_an_empty_or_short_key_file_is_refused(content: bytes, tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_bytes(content)
    with pytest.raises(ConfigError, match=r"secret\.key .* at least 32"):
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path)})


def test_the_generated_key_and_its_folder_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings.from_env({"INLET_DATA_DIR": str(data_dir)})
    assert len(settings.secret_key) >= 32
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600


def test_to_environ_is_the_inverse_of_from_env(tmp_path: Path) -> None:
    """Every setting crosses to a child process unchanged, defaults and edge values alike."""
    geoip = tmp_path / "city.mmdb"
    geoip.write_bytes(b"")
    environ = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REDIS_URL": "redis://127.0.0.1:6380/2",
        "PORT": "8123",
        "HOST": "0.0.0.0",
        "WEB_CONCURRENCY": "3",
        "INLET_DATA_DIR": str(tmp_path),
        "INLET_SECRET_KEY": "s3cret-s3cret-s3cret-s3cret-s3cret",
        "INLET_RATE_LIMIT": "7 / 10 seconds",
        "INLET_RETRY_DELAYS": "0,2,9",
        "INLET_JOB_TIMEOUT": "41",
        "INLET_REDIS_TIMEOUT": "0.25",
        "INLET_REDIS_MIN_REPLICAS": "2",
        "INLET_REDIS_REPLICA_TIMEOUT_MS": "750",
        "INLET_MAX_BODY_BYTES": "2048",
        "INLET_MAX_BATCH_EVENTS": "12",
        "INLET_GROUP_MAX_EVENTS": "7",
        "INLET_GROUP_WAIT_MS": "0.5",
        "INLET_TAKE_MAX_EVENTS": "2500",
        "INLET_MAX_JSON_CONTAINERS": "150",
        "INLET_MAX_HEAD_BYTES": "4096",
        "INLET_MAX_HEADERS": "12",
        "INLET_HEAD_TIMEOUT": "2.5",
        "INLET_REFUSALS_DAYS": "3",
        "INLET_REFUSALS_PER_PARTNER": "250",
        "INLET_LOG_LEVEL": "debug",
        "INLET_AUTH_FAILURE_LIMIT": "3/hour",
        "INLET_IP_MODE": "Truncate",
        "INLET_TOMBSTONE_HOURS": "0.5",
        "INLET_BODY_TIMEOUT": "1.5",
        "INLET_KEEP_ALIVE_TIMEOUT": "9",
        "INLET_TRUSTED_PROXIES": "10.0.0.1, 2001:db8::/32",
        "INLET_GEOIP_DATABASE": str(geoip),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "INLET_ADMIN_SESSION_HOURS": "0.5",
        "INLET_UNKNOWN_EVENTS": "warn",
        "INLET_FUTURE_EVENTS": "Reject",
        "INLET_MAX_FUTURE_SECONDS": "0",
        "INLET_TOO_OLD_EVENTS": "accept",
        "INLET_MAX_AGE_DAYS": "30",
        "INLET_DEDUP_DAYS": "7",
        "INLET_RETENTION_DAYS": "400",
    }
    assert set(environ) == {s.env for s in SETTINGS}  # the case above sets every setting
    for settings in (
        Settings.from_env(environ),
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path)}),
        Settings.from_env(environ).replace(retry_delays=(), trusted_proxies=()),
        Settings.from_env(environ).replace(max_age_days=None),
        Settings.from_env(
            {**environ, "REDIS_URL": "redis+sentinel://:p%40ss@s1:26379,[::1]:26380/inlet/3"}
        ),
        Settings.from_env(environ).replace(retention_days=None),
    ):
        written = settings.to_environ()
        assert set(written) == {s.env for s in SETTINGS}
        assert Settings.from_env(written) == settings


@pytest.mark.parametrize("env", [{"INLET_IP_MODE": "anonymize"}, {"INLET_TOMBSTONE_HOURS": "0"}])
def test_invalid_privacy_settings_fail_loudly(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env({"INLET_DATA_DIR": str(tmp_path), **env})
