"""Inlet's settings: declared once, read from the environment once.

Every setting has a default and a sentence of help, from which
``docs/settings.md`` is generated (``python -m app.settings --markdown``);
``tests/test_docs.py`` checks that the committed file is what this generates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import ConfigError
from app.policy import CLOCK_ACTIONS, UNKNOWN_EVENTS
from app.privacy import parse_ip_mode
from app.redis_client import check_redis_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


DEFAULT_DEDUP_DAYS = 30


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "sqlite:///./var/inlet.db",
        "SQLAlchemy URL of the event store (PostgreSQL in production; postgres:// is accepted).",
    ),
    Setting(
        "REDIS_URL",
        "unix://./var/redis.sock",
        "Redis for the queue and the rate limits: `redis://`, `rediss://` (TLS), `unix://`, "
        "or `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE_NAME[/DB]` "
        "to follow the primary that Sentinel names. The default is the embedded Redis "
        "that `make run` starts.",
    ),
    Setting("PORT", "8000", "Port `inlet web` listens on."),
    Setting("HOST", "127.0.0.1", "Address `inlet web` binds (0.0.0.0 behind a load balancer)."),
    Setting("WEB_CONCURRENCY", "1", "Number of uvicorn worker processes `inlet web` runs."),
    Setting(
        "INLET_DATA_DIR",
        "./var",
        "Where the embedded Redis, the SQLite file and the generated secret key live.",
    ),
    Setting(
        "INLET_SECRET_KEY",
        "",
        "Key of the keyed hash that protects stored credentials, at least 32 characters "
        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`). Empty: a "
        "random key is generated once into INLET_DATA_DIR/secret.key. Set it in production.",
    ),
    Setting(
        "INLET_RATE_LIMIT",
        "100/second",
        "Default per-partner request limit, `N/second|minute|hour|day`; "
        "`inlet partners set-rate-limit` overrides it per partner.",
    ),
    Setting(
        "INLET_RETRY_DELAYS",
        "1,5,15,30,60,120,300",
        "Seconds between the retries of a job that failed for a transient reason "
        "(database down, lock timeout); after the last one the job stays failed.",
    ),
    Setting(
        "INLET_JOB_TIMEOUT",
        "20",
        "Seconds a job may run before it is stopped and retried; also bounds how "
        "long a job of a killed worker waits before another worker takes it over.",
    ),
    Setting(
        "INLET_REDIS_TIMEOUT",
        "2",
        "Seconds the web tier waits for a Redis call before answering 503. A group whose "
        "write timed out waits up to once more, asking Redis whether it was written after "
        "all (then the answer is 204): a hung Redis answers such requests in twice this.",
    ),
    Setting(
        "INLET_REDIS_MIN_REPLICAS",
        "0",
        "Replicas that must have received a batch (Redis `WAIT`) before it is answered "
        "204; if fewer confirm within INLET_REDIS_REPLICA_TIMEOUT_MS the answer is 503 "
        "with Retry-After. 0: the primary's acknowledgement is enough.",
    ),
    Setting(
        "INLET_REDIS_REPLICA_TIMEOUT_MS",
        "500",
        "Milliseconds a write waits (Redis `WAIT`) for INLET_REDIS_MIN_REPLICAS replicas "
        "before the requests it carries get 503.",
    ),
    Setting(
        "INLET_MAX_BODY_BYTES",
        "1048576",
        "Largest batch body, after gzip decompression (Onside's 1 MB).",
    ),
    Setting("INLET_MAX_BATCH_EVENTS", "1000", "Most events in one batch (Onside's 1,000)."),
    Setting(
        "INLET_GROUP_MAX_EVENTS",
        "",
        "Group commit: most events one durable Redis write carries for many requests. "
        "Empty: INLET_MAX_BATCH_EVENTS. A request that alone fills a group is written "
        "at once, by itself.",
    ),
    Setting(
        "INLET_GROUP_WAIT_MS",
        "2",
        "Group commit: the longest a request waits for its group to be written while "
        "another write is in flight; with none in flight a group is written at once.",
    ),
    Setting(
        "INLET_TAKE_MAX_EVENTS",
        "5000",
        "Worker takes: a worker that dequeues a job also takes the jobs waiting behind "
        "it while their events, with its own, fit in this many, at most 200 jobs, and "
        "inserts them in one transaction (each job keeps its own rows, log line and "
        "failure). A job bigger than this runs alone. 1: every job alone.",
    ),
    Setting(
        "INLET_MAX_JSON_CONTAINERS",
        "10000",
        "Most JSON objects and arrays in one batch body, counted from its bytes before "
        "parsing (every `{` and `[`, inside strings too); more get 413. A full batch of "
        "flat events holds about 2,000.",
    ),
    Setting("INLET_LOG_LEVEL", "INFO", "Log level of the web and worker processes."),
    Setting(
        "INLET_AUTH_FAILURE_LIMIT",
        "20/minute",
        "Failed authentications one client address may make per window "
        "(`N/second|minute|hour|day`) before it gets 429 with Retry-After instead of 401; "
        "credentials this web process has seen always pass, new names from a throttled "
        "address wait out the window. Counted in Redis, shared by every web process.",
    ),
    Setting(
        "INLET_BODY_TIMEOUT",
        "30",
        "Seconds a client has to send a whole request body; a slower upload gets 408 "
        "and nothing is queued.",
    ),
    Setting(
        "INLET_MAX_HEAD_BYTES",
        "32768",
        "Largest request head (request line and headers together) `inlet web` reads; "
        "a larger one gets 431 and the connection is closed.",
    ),
    Setting(
        "INLET_MAX_HEADERS",
        "100",
        "Most header lines in one request; more get 431 and the connection is closed.",
    ),
    Setting(
        "INLET_HEAD_TIMEOUT",
        "10",
        "Seconds a client has, from connecting (or from the first byte of its next "
        "request), to send a whole request head; a slower one gets 408.",
    ),
    Setting(
        "INLET_REFUSALS_DAYS",
        "7",
        "Days the refusal log keeps an ingest endpoint's 4xx answers (per partner, "
        "and apart for unauthenticated ones by client address); see docs/support.md.",
    ),
    Setting(
        "INLET_REFUSALS_PER_PARTNER",
        "10000",
        "Most refusals the log keeps per partner (and for all unauthenticated "
        "clients together); the older ones go first, whichever of this and "
        "INLET_REFUSALS_DAYS is reached first.",
    ),
    Setting(
        "INLET_KEEP_ALIVE_TIMEOUT",
        "5",
        "Seconds `inlet web` keeps an idle keep-alive connection open.",
    ),
    Setting(
        "INLET_TRUSTED_PROXIES",
        "",
        "Comma-separated addresses or CIDR networks of proxies whose X-Forwarded-For "
        "the Thrad endpoint and the failed-authentication throttle believe; empty: "
        "the direct peer is the client.",
    ),
    Setting(
        "INLET_IP_MODE",
        "full",
        "Default for partners that set none (`inlet partners set --ip-mode`): the Thrad "
        "client address is stored `full`, cut to its network (`truncate`: IPv4 /24, "
        "IPv6 /48) or not at all (`drop`); geo comes from the full address either way.",
    ),
    Setting(
        "INLET_TOMBSTONE_HOURS",
        "168",
        "Hours a deleted identifier (`inlet events delete`) is remembered, so that its "
        "events still queued, or waiting for a retry, are dropped when they land.",
    ),
    Setting(
        "INLET_GEOIP_DATABASE",
        "",
        "Path of a MaxMind-format City database (GeoLite2, DB-IP City Lite) for the "
        "Thrad rows' geo fields; empty: the GeoLite2 City database that the "
        "maxminddb-geolite2 package ships (it dates from 2018). A missing file stops "
        "the process at start-up.",
    ),
    Setting(
        "INLET_ADMIN_SESSION_HOURS",
        "12",
        "Hours an admin stays signed in to `/admin` after signing in with the form; "
        "then the page asks again (Basic credentials are checked on every request).",
    ),
    Setting(
        "INLET_UNKNOWN_EVENTS",
        "accept",
        "Default for partners that set none (`inlet partners set --unknown-events`): an "
        "event whose name has no schema is `accept`ed, accepted flagged (`warn`) or "
        "refused (`reject`).",
    ),
    Setting(
        "INLET_FUTURE_EVENTS",
        "clamp",
        "Default for partners that set none (`inlet partners set --future`): an event "
        "dated more than INLET_MAX_FUTURE_SECONDS after its receipt is `accept`ed as "
        "sent, `clamp`ed to the receive time (the original is kept), or refused (`reject`).",
    ),
    Setting(
        "INLET_MAX_FUTURE_SECONDS",
        "86400",
        "How far ahead of its receipt an event's time may be before the future-events "
        "policy applies (per partner: `inlet partners set --max-future-seconds`).",
    ),
    Setting(
        "INLET_TOO_OLD_EVENTS",
        "clamp",
        "Default for partners that set none (`inlet partners set --too-old`): what "
        "happens to an event older than INLET_MAX_AGE_DAYS (`accept`, `clamp`, `reject`).",
    ),
    Setting(
        "INLET_MAX_AGE_DAYS",
        "",
        "How many days old an event may be before the too-old policy applies; empty: "
        "no limit (per partner: `inlet partners set --max-age-days`).",
    ),
    Setting(
        "INLET_DEDUP_DAYS",
        "30",
        "Days within which a resent event id lands once, exactly (PostgreSQL; SQLite "
        "deduplicates forever); see docs/storage.md for what happens to a later resend.",
    ),
    Setting(
        "INLET_RETENTION_DAYS",
        "",
        "Days of events kept on PostgreSQL: the worker's hourly partition maintenance "
        "drops whole days of events received longer ago; empty keeps everything.",
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "",
        "Directory where every web and worker process writes its metrics, so that "
        "`GET /metrics` adds them up. Empty: INLET_DATA_DIR/metrics. All processes "
        "of one host must share it; each host has its own (docs/deployment.md).",
    ),
)

_SETTING_BY_ENV = {s.env: s for s in SETTINGS}
# The key is all that stands between a copy of the database and the stored
# credentials: anything shorter than 32 characters is refused, not padded.
MIN_SECRET_KEY_LENGTH = 32
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$", re.I)
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class RateLimit:
    """`limit` requests per `period` seconds."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE_RE.match(text or "")
        if not match:
            raise ValueError(f"not a rate limit: {text!r} (expected e.g. 100/second, 5/minute)")
        count, multiple, unit = match.groups()
        limit = int(count)
        period = int(multiple or 1) * _PERIODS[unit.lower()]
        if limit <= 0 or period <= 0:
            raise ValueError(f"a rate limit must be positive: {text!r}")
        return cls(limit, float(period))

    def __str__(self) -> str:
        for unit, seconds in _PERIODS.items():
            if self.period == seconds:
                return f"{self.limit}/{unit}"
        return f"{self.limit}/{int(self.period)}second"


def normalize_database_url(url: str) -> str:
    """Accept Heroku-style ``postgres://`` and bare ``postgresql://`` as psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _parse_delays(text: str) -> tuple[int, ...]:
    try:
        delays = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"INLET_RETRY_DELAYS must be comma-separated seconds: {text!r}") from None
    if any(d < 0 for d in delays):
        raise ValueError(f"INLET_RETRY_DELAYS must not be negative: {text!r}")
    return delays


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    port: int
    host: str
    web_concurrency: int
    data_dir: Path
    secret_key: bytes
    rate_limit: RateLimit
    retry_delays: tuple[int, ...]
    job_timeout: int
    redis_timeout: float
    max_body_bytes: int
    max_batch_events: int
    log_level: str
    group_max_events: int = 1000
    redis_min_replicas: int = 0
    redis_replica_timeout_ms: int = 500
    group_wait_ms: float = 2.0
    # Five full batches: one commit and one round of RQ's records for all five
    # drained 1,000-event jobs ~9% faster than a take each (bench/README.md).
    take_max_events: int = 5000
    max_json_containers: int = 10_000
    trusted_proxies: tuple[IPNetwork, ...] = ()
    auth_failure_limit: RateLimit = RateLimit(20, 60.0)
    ip_mode: str = "full"
    tombstone_hours: float = 168.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 5
    max_head_bytes: int = 32768
    max_headers: int = 100
    head_timeout: float = 10.0
    refusals_days: int = 7
    refusals_per_partner: int = 10_000
    geoip_database: Path | None = None
    metrics_dir: Path = Path("var/metrics")
    admin_session_hours: float = 12.0
    # Defaults of the per-partner policies (app/policy.py).
    unknown_events: str = "accept"
    future_events: str = "clamp"
    max_future_seconds: int = 86400
    too_old_events: str = "clamp"
    max_age_days: int | None = None
    dedup_days: int = DEFAULT_DEDUP_DAYS
    retention_days: int | None = None
    queue_name: str = "inlet"
    # Not an environment setting: the bench turns the refusal log off to
    # measure what it costs.
    refusal_log: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every setting once; invalid values fail loudly at start-up."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            value = env.get(name)
            return _SETTING_BY_ENV[name].default if value in (None, "") else value  # type: ignore[return-value]

        data_dir = Path(get("INLET_DATA_DIR")).resolve()
        try:
            values: dict[str, object] = dict(
                database_url=database_url_from_env(env),
                redis_url=check_redis_url(_absolute_unix(get("REDIS_URL"))),
                port=_whole(get("PORT"), "PORT"),
                host=get("HOST"),
                web_concurrency=_whole(get("WEB_CONCURRENCY"), "WEB_CONCURRENCY"),
                data_dir=data_dir,
                secret_key=b"",
                rate_limit=RateLimit.parse(get("INLET_RATE_LIMIT")),
                retry_delays=_parse_delays(get("INLET_RETRY_DELAYS")),
                job_timeout=_whole(get("INLET_JOB_TIMEOUT"), "INLET_JOB_TIMEOUT"),
                redis_timeout=_number(get("INLET_REDIS_TIMEOUT"), "INLET_REDIS_TIMEOUT"),
                redis_min_replicas=_at_least(
                    get("INLET_REDIS_MIN_REPLICAS"), 0, "INLET_REDIS_MIN_REPLICAS"
                ),
                redis_replica_timeout_ms=_at_least(
                    get("INLET_REDIS_REPLICA_TIMEOUT_MS"), 1, "INLET_REDIS_REPLICA_TIMEOUT_MS"
                ),
                max_body_bytes=_whole(get("INLET_MAX_BODY_BYTES"), "INLET_MAX_BODY_BYTES"),
                max_batch_events=_whole(get("INLET_MAX_BATCH_EVENTS"), "INLET_MAX_BATCH_EVENTS"),
                group_max_events=_positive_int(
                    get("INLET_GROUP_MAX_EVENTS") or get("INLET_MAX_BATCH_EVENTS"),
                    "INLET_GROUP_MAX_EVENTS",
                ),
                group_wait_ms=_not_negative(get("INLET_GROUP_WAIT_MS"), "INLET_GROUP_WAIT_MS"),
                take_max_events=_positive_int(
                    get("INLET_TAKE_MAX_EVENTS"), "INLET_TAKE_MAX_EVENTS"
                ),
                max_json_containers=_at_least(
                    get("INLET_MAX_JSON_CONTAINERS"), 100, "INLET_MAX_JSON_CONTAINERS"
                ),
                log_level=parse_log_level(get("INLET_LOG_LEVEL")),
                trusted_proxies=parse_networks(get("INLET_TRUSTED_PROXIES")),
                auth_failure_limit=RateLimit.parse(get("INLET_AUTH_FAILURE_LIMIT")),
                ip_mode=_ip_mode(get("INLET_IP_MODE")),
                tombstone_hours=_positive(get("INLET_TOMBSTONE_HOURS"), "INLET_TOMBSTONE_HOURS"),
                body_timeout=_positive(get("INLET_BODY_TIMEOUT"), "INLET_BODY_TIMEOUT"),
                keep_alive_timeout=_whole(
                    get("INLET_KEEP_ALIVE_TIMEOUT"), "INLET_KEEP_ALIVE_TIMEOUT"
                ),
                max_head_bytes=_at_least(get("INLET_MAX_HEAD_BYTES"), 1024, "INLET_MAX_HEAD_BYTES"),
                max_headers=_at_least(get("INLET_MAX_HEADERS"), 10, "INLET_MAX_HEADERS"),
                head_timeout=_positive(get("INLET_HEAD_TIMEOUT"), "INLET_HEAD_TIMEOUT"),
                refusals_days=_positive_int(get("INLET_REFUSALS_DAYS"), "INLET_REFUSALS_DAYS"),
                refusals_per_partner=_positive_int(
                    get("INLET_REFUSALS_PER_PARTNER"), "INLET_REFUSALS_PER_PARTNER"
                ),
                geoip_database=_geoip_path(get("INLET_GEOIP_DATABASE")),
                metrics_dir=Path(get("PROMETHEUS_MULTIPROC_DIR") or data_dir / "metrics").resolve(),
                admin_session_hours=_positive(
                    get("INLET_ADMIN_SESSION_HOURS"), "INLET_ADMIN_SESSION_HOURS"
                ),
                unknown_events=_choice(
                    get("INLET_UNKNOWN_EVENTS"), UNKNOWN_EVENTS, "INLET_UNKNOWN_EVENTS"
                ),
                future_events=_choice(
                    get("INLET_FUTURE_EVENTS"), CLOCK_ACTIONS, "INLET_FUTURE_EVENTS"
                ),
                max_future_seconds=_at_least(
                    get("INLET_MAX_FUTURE_SECONDS"), 0, "INLET_MAX_FUTURE_SECONDS"
                ),
                too_old_events=_choice(
                    get("INLET_TOO_OLD_EVENTS"), CLOCK_ACTIONS, "INLET_TOO_OLD_EVENTS"
                ),
                max_age_days=(
                    _positive_int(get("INLET_MAX_AGE_DAYS"), "INLET_MAX_AGE_DAYS")
                    if get("INLET_MAX_AGE_DAYS")
                    else None
                ),
                dedup_days=_positive_int(get("INLET_DEDUP_DAYS"), "INLET_DEDUP_DAYS"),
                retention_days=(
                    _positive_int(get("INLET_RETENTION_DAYS"), "INLET_RETENTION_DAYS")
                    if get("INLET_RETENTION_DAYS")
                    else None
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid setting: {exc}") from None
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.secret_key:
            key = env.get("INLET_SECRET_KEY") or ""
            if not key and not settings.database_url.startswith("sqlite"):
                # Every process must hash credentials with the same key; a
                # key generated per host would turn every login into a 401.
                raise ConfigError(
                    "INLET_SECRET_KEY must be set when DATABASE_URL is not SQLite "
                    "(the same value for every web, worker and CLI process)"
                )
            if key and len(key) < MIN_SECRET_KEY_LENGTH:
                raise ConfigError(
                    f"INLET_SECRET_KEY is too short ({len(key)} characters): use at least "
                    f"{MIN_SECRET_KEY_LENGTH} random characters, e.g. the output of "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
            secret = key.encode() if key else _load_or_create_key(settings.data_dir)
            settings = dataclasses.replace(settings, secret_key=secret)
        return settings

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_environ(self) -> dict[str, str]:
        """The environment that ``from_env`` reads back as these settings.

        Every declared setting is written, so a child process (``inlet web``,
        a CLI run) gets exactly these settings whatever its parent's
        environment holds. ``queue_name`` and ``extra`` are not settings of
        the environment and do not cross.
        """
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "PORT": str(self.port),
            "HOST": self.host,
            "WEB_CONCURRENCY": str(self.web_concurrency),
            "INLET_DATA_DIR": str(self.data_dir),
            "INLET_SECRET_KEY": self.secret_key.decode(),
            "INLET_RATE_LIMIT": str(self.rate_limit),
            # An empty value means "the default", so no retries at all is a
            # lone comma: a list of no numbers.
            "INLET_RETRY_DELAYS": ",".join(map(str, self.retry_delays)) or ",",
            "INLET_JOB_TIMEOUT": str(self.job_timeout),
            "INLET_REDIS_TIMEOUT": str(self.redis_timeout),
            "INLET_REDIS_MIN_REPLICAS": str(self.redis_min_replicas),
            "INLET_REDIS_REPLICA_TIMEOUT_MS": str(self.redis_replica_timeout_ms),
            "INLET_MAX_BODY_BYTES": str(self.max_body_bytes),
            "INLET_MAX_BATCH_EVENTS": str(self.max_batch_events),
            "INLET_GROUP_MAX_EVENTS": str(self.group_max_events),
            "INLET_GROUP_WAIT_MS": str(self.group_wait_ms),
            "INLET_TAKE_MAX_EVENTS": str(self.take_max_events),
            "INLET_MAX_JSON_CONTAINERS": str(self.max_json_containers),
            "INLET_MAX_HEAD_BYTES": str(self.max_head_bytes),
            "INLET_MAX_HEADERS": str(self.max_headers),
            "INLET_HEAD_TIMEOUT": str(self.head_timeout),
            "INLET_REFUSALS_DAYS": str(self.refusals_days),
            "INLET_REFUSALS_PER_PARTNER": str(self.refusals_per_partner),
            "INLET_LOG_LEVEL": self.log_level,
            "INLET_AUTH_FAILURE_LIMIT": str(self.auth_failure_limit),
            "INLET_IP_MODE": self.ip_mode,
            "INLET_TOMBSTONE_HOURS": str(self.tombstone_hours),
            "INLET_BODY_TIMEOUT": str(self.body_timeout),
            "INLET_KEEP_ALIVE_TIMEOUT": str(self.keep_alive_timeout),
            "INLET_TRUSTED_PROXIES": ",".join(map(str, self.trusted_proxies)),
            "INLET_GEOIP_DATABASE": str(self.geoip_database or ""),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "INLET_ADMIN_SESSION_HOURS": str(self.admin_session_hours),
            "INLET_UNKNOWN_EVENTS": self.unknown_events,
            "INLET_FUTURE_EVENTS": self.future_events,
            "INLET_MAX_FUTURE_SECONDS": str(self.max_future_seconds),
            "INLET_TOO_OLD_EVENTS": self.too_old_events,
            "INLET_MAX_AGE_DAYS": "" if self.max_age_days is None else str(self.max_age_days),
            "INLET_DEDUP_DAYS": str(self.dedup_days),
            "INLET_RETENTION_DAYS": "" if self.retention_days is None else str(self.retention_days),
        }


def database_url_from_env(environ: Mapping[str, str]) -> str:
    """DATABASE_URL as Settings reads it, without reading anything else.

    The CLI checks the database with it before the settings are loaded, since
    loading them may create INLET_DATA_DIR and a key in it.
    """
    url = environ.get("DATABASE_URL") or _SETTING_BY_ENV["DATABASE_URL"].default
    return normalize_database_url(_absolute_sqlite(url))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"INLET_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {text!r}")
    return level


def _choice(text: str, choices: tuple[str, ...], name: str) -> str:
    value = text.strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {text!r}")
    return value


def _whole(text: str, name: str) -> int:
    """``int(text)``, or an error that names the setting (int's own doesn't)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None


def _number(text: str, name: str) -> float:
    """``float(text)``, or an error that names the setting."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None


def _positive(text: str, name: str) -> float:
    value = _number(text, name)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds: {text!r}")
    return value


def _positive_int(text: str, name: str) -> int:
    value = _whole(text, name)
    if value <= 0:
        raise ValueError(f"{name} must be a positive whole number: {text!r}")
    return value


def _not_negative(text: str, name: str) -> float:
    value = _number(text, name)
    if not value >= 0:
        raise ValueError(f"{name} must not be negative: {text!r}")
    return value


def _at_least(text: str, minimum: int, name: str) -> int:
    value = _whole(text, name)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}: {text!r}")
    return value


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.1, 10.1.0.0/16`` -> networks; a bare address is a /32 (or /128)."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in text.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ValueError(f"INLET_TRUSTED_PROXIES: {exc}") from None


def _ip_mode(text: str) -> str:
    try:
        return parse_ip_mode(text)
    except ValueError as exc:
        raise ValueError(f"INLET_IP_MODE {exc}") from None


def _geoip_path(text: str) -> Path | None:
    if not text:
        return None
    path = Path(text).resolve()
    if not path.is_file():
        raise ValueError(f"INLET_GEOIP_DATABASE: no such file: {path}")
    return path


def _absolute_sqlite(url: str) -> str:
    """Make a relative SQLite path absolute, so every process finds the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        # Only the name: the file and its folder are made (private) by the
        # engine factory, and only where a database is really opened.
        return prefix + str(Path(url[len(prefix) :]).resolve())
    return url


def _absolute_unix(url: str) -> str:
    prefix = "unix://"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(Path(url[len(prefix) :]).resolve())
    return url


def _load_or_create_key(data_dir: Path) -> bytes:
    path = data_dir / "secret.key"
    if path.exists():
        return _checked_key_file(path)
    # 700: the data dir holds the key, the SQLite store and the queue's AOF.
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written whole to a file of our own, then linked into place: link fails
    # if the key exists, so when two processes race both use the winner's
    # key, and nobody ever reads a half-written one.
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret.key.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_urlsafe(32).encode())
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _checked_key_file(path)


def _checked_key_file(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        # Not replaced silently: the stored credentials are hashed with the
        # key this file once held, and a new one would turn them all into 401s.
        raise ConfigError(
            f"{path} holds {len(key)} characters, a key needs at least "
            f"{MIN_SECRET_KEY_LENGTH}: restore the file from a backup, set "
            "INLET_SECRET_KEY, or delete the file to generate a new key (every "
            "partner and admin credential must then be issued again)"
        )
    return key


def markdown() -> str:
    """The settings table of ``docs/settings.md``, generated from ``SETTINGS``."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated from SETTINGS in app/settings.py by "
        "`python -m app.settings --markdown > docs/settings.md`; do not edit by hand. -->",
        "",
        "Environment variables, read once at start-up; an invalid value stops the",
        "process with a message. Every web, worker and CLI process of a deployment",
        "needs the same values.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "empty"
        meaning = setting.help.replace("|", "\\|")
        lines.append(f"| `{setting.env}` | {default} | {meaning} |")
    lines += [
        "",
        "Tests only: `TEST_DATABASE_URL` makes `make test` use that PostgreSQL",
        "instead of starting a cluster of its own.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m app.settings")
    parser.add_argument(
        "--markdown", action="store_true", help="print docs/settings.md (the settings table)"
    )
    if not parser.parse_args().markdown:
        parser.print_help()
        sys.exit(2)
    sys.stdout.write(markdown())
