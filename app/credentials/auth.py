"""Partner credentials: generation, keyed hashing, constant-time checks.

Secrets are 256-bit random values, so a fast keyed hash (BLAKE2b keyed with
INLET_SECRET_KEY) is as strong as a slow password hash against guessing and
costs microseconds per request. Only the hash is stored.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from cachetools import LRUCache
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.db import partners
from app.policy import DEFAULT_POLICY, PartnerPolicy
from app.settings import RateLimit

# How long the web tier trusts what it read about a credential: a revoked
# credential stops working within this many seconds.
CREDENTIAL_CACHE_SECONDS = 2.0
# How long a credential read earlier still counts while the database is down.
STALE_GRACE_SECONDS = 300.0
# Credentials found (kept for the stale grace until evicted, least recently
# used first) and names not found (kept apart, so that no number of bogus
# names can push a real credential out).
_CACHE_MAX_HITS = 10_000
_CACHE_MAX_MISSES = 10_000

T = TypeVar("T")


def new_username() -> str:
    return "pk_" + secrets.token_hex(12)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(key: bytes, secret: str) -> bytes:
    blake_key = hashlib.sha256(key).digest()
    return hashlib.blake2b(
        secret.encode("utf-8", "surrogatepass"), key=blake_key, digest_size=32
    ).digest()


@dataclass(frozen=True)
class Partner:
    """An authenticated partner, as the credential caches hold it.

    ``policy`` is resolved (its stored overrides on the defaults) when the
    credential is read from SQL, so it changes within CREDENTIAL_CACHE_SECONDS
    of ``inlet partners set``.
    """

    id: int
    name: str
    rate_limit: RateLimit | None
    policy: PartnerPolicy = DEFAULT_POLICY


def partner_from_row(row: sa.Row, policy_defaults: PartnerPolicy) -> Partner:
    """A ``Partner`` from a row with ``partner_id``, ``name``, ``rate_limit``, ``policy``."""
    limit = RateLimit.parse(row.rate_limit) if row.rate_limit else None
    return Partner(row.partner_id, row.name, limit, policy_defaults.overlay(row.policy))


# The partner's columns a credential lookup reads, for ``partner_from_row``.
PARTNER_COLUMNS = (
    partners.c.id.label("partner_id"),
    partners.c.name,
    partners.c.rate_limit,
    partners.c.policy,
)


@dataclass(frozen=True)
class _Credential:
    partner: Partner
    secret_hash: bytes


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic base64(user:pass)`` -> (user, pass), or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    # U+0000 is never in a credential Inlet made, and PostgreSQL refuses it
    # in a query (a DataError that would read as "database down").
    if not sep or "\x00" in decoded:
        return None
    return username, password


class Miss(enum.Enum):
    """A cache that can't answer without I/O: ask the store's blocking check."""

    MISS = "miss"


MISS = Miss.MISS


class CachedLookup(Generic[T]):
    """A short cache in front of a SQL lookup by key (a username, an API key id).

    Entries are trusted for ``ttl`` seconds, so a revocation takes effect
    within that. While the database is gone, an entry read earlier keeps
    counting for STALE_GRACE_SECONDS: batches still queue in Redis, so a
    partner seen recently keeps sending; an unknown one can't be checked and
    the SQLAlchemyError reaches the caller, which answers 503.

    Found and not-found keys live in two separate LRU caches: a flood of
    bogus names (each one a miss) only ever evicts other misses, never the
    credentials that the stale grace depends on.
    ``get`` does blocking I/O on a miss: call it from a thread.
    """

    def __init__(
        self,
        load: Callable[[str], T | None],
        ttl: float = CREDENTIAL_CACHE_SECONDS,
        max_hits: int = _CACHE_MAX_HITS,
        max_misses: int = _CACHE_MAX_MISSES,
    ):
        self._load = load
        self._ttl = ttl
        self._hits: LRUCache[str, tuple[float, T]] = LRUCache(max_hits)
        self._misses: LRUCache[str, float] = LRUCache(max_misses)
        # cachetools' caches are not thread-safe (even a read reorders an LRU);
        # the lock is held for dictionary work only, never across I/O.
        self._lock = threading.Lock()

    def _cached(self, key: str) -> tuple[tuple[float, T] | None, float | None]:
        with self._lock:
            return self._hits.get(key), self._misses.get(key)

    def peek(self, key: str) -> T | None | Miss:
        """The fresh cached value, without I/O (safe on the event loop); else MISS."""
        hit, miss = self._cached(key)
        now = time.monotonic()
        if hit is not None:
            return hit[1] if hit[0] > now else MISS
        if miss is not None and miss > now:
            return None
        return MISS

    def knows(self, key: str) -> bool:
        """True if ``key`` was found in SQL before and is still cached, fresh or stale."""
        with self._lock:
            return key in self._hits

    def get(self, key: str) -> T | None:
        now = time.monotonic()
        hit, miss = self._cached(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        if hit is None and miss is not None and miss > now:
            return None
        try:
            value = self._load(key)
        except SQLAlchemyError:
            if hit is not None and hit[0] + STALE_GRACE_SECONDS > now:
                return hit[1]
            raise
        with self._lock:
            if value is None:
                # Gone (or revoked): no stale grace for it either.
                self._hits.pop(key, None)
                self._misses[key] = now + self._ttl
            else:
                self._misses.pop(key, None)
                self._hits[key] = (now + self._ttl, value)
        return value


class SecretHashes:
    """Constant-time checks of a secret against its stored keyed hash.

    With nothing stored (an unknown username or key id) the secret is hashed
    and compared all the same, against a random hash, so that a miss costs
    what a hit costs.
    """

    def __init__(self, secret_key: bytes) -> None:
        self._key = secret_key
        self._dummy_hash = hash_secret(secret_key, new_secret())

    def matches(self, secret: str, stored_hash: bytes | None) -> bool:
        expected = self._dummy_hash if stored_hash is None else stored_hash
        matches = hmac.compare_digest(hash_secret(self._key, secret), expected)
        return matches and stored_hash is not None


class CredentialStore:
    """Checks Basic credentials against SQL, with a short cache in front of it.

    ``check_basic`` does blocking I/O on a cache miss: call it from a thread.
    """

    def __init__(
        self,
        engine: Engine,
        secret_key: bytes,
        ttl: float = CREDENTIAL_CACHE_SECONDS,
        policy_defaults: PartnerPolicy = DEFAULT_POLICY,
    ):
        self._engine = engine
        self._hashes = SecretHashes(secret_key)
        self._credentials = CachedLookup(self._load, ttl)
        self._policy_defaults = policy_defaults

    def check_basic_cached(self, username: str, password: str) -> Partner | None | Miss:
        """``check_basic`` from the cache alone (no I/O: call it on the event
        loop and save a thread hop per request); MISS when it can't answer."""
        credential = self._credentials.peek(username)
        if credential is MISS:
            return MISS
        return self._verify(credential, password)

    def check_basic(self, username: str, password: str) -> Partner | None:
        return self._verify(self._credentials.get(username), password)

    def knows_basic(self, username: str, password: str) -> bool:
        """True if the username was found before: the cache holds it, fresh or stale."""
        return self._credentials.knows(username)

    def _verify(self, credential: _Credential | None, password: str) -> Partner | None:
        # Hashed and compared even when the username is unknown: same cost.
        matches = self._hashes.matches(password, credential.secret_hash if credential else None)
        return credential.partner if (credential and matches) else None

    def _load(self, username: str) -> _Credential | None:
        query = sa.select(*PARTNER_COLUMNS, partners.c.password_hash).where(
            partners.c.username == username, partners.c.revoked_at.is_(None)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        partner = partner_from_row(row, self._policy_defaults)
        return _Credential(partner, bytes(row.password_hash))
