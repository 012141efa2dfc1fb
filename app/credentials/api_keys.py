"""Bearer API keys for Thrad's Events API: creation, listing, revocation, checks.

A key reads ``ik_<16 hex>_<secret>``. The first part (the key id) is how a
key is found and named, like a Basic username; the secret is a random 256-bit
value stored only as its BLAKE2b hash keyed with INLET_SECRET_KEY, and
compared in constant time, exactly as the Basic passwords are (app/credentials/auth.py).
A partner holds any number of keys, each with a label that the endpoint
stamps into the rows it accepts.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.credentials.auth import (
    CREDENTIAL_CACHE_SECONDS,
    MISS,
    PARTNER_COLUMNS,
    CachedLookup,
    Miss,
    Partner,
    SecretHashes,
    hash_secret,
    new_secret,
    partner_from_row,
)
from app.credentials.partners import PartnerError, get_partner_id
from app.db import api_keys, partners
from app.policy import DEFAULT_POLICY, PartnerPolicy

KEY_PREFIX = "ik_"
_KEY_RE = re.compile(r"(ik_[0-9a-f]{16})_([A-Za-z0-9_-]{16,128})")
DEFAULT_LABEL = "default"


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    label: str
    api_key: str


@dataclass(frozen=True)
class KeyOwner:
    """Who a valid key belongs to: its partner, and the key's row id and label."""

    partner: Partner
    api_key_id: int
    label: str


def split_key(api_key: str) -> tuple[str, str] | None:
    """``ik_<id>_<secret>`` -> (key id, secret), or None if it has not that shape."""
    match = _KEY_RE.fullmatch(api_key)
    return (match.group(1), match.group(2)) if match else None


def create_api_key(engine: Engine, secret_key: bytes, partner: str, label: str) -> NewApiKey:
    """Give PARTNER a new key; the full key is returned this once only."""
    label = label.strip()
    if not label:
        raise PartnerError("an API key needs a label")
    partner_id = get_partner_id(engine, partner)
    key_id, secret = KEY_PREFIX + secrets.token_hex(8), new_secret()
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                partner_id=partner_id,
                key_id=key_id,
                label=label,
                key_hash=hash_secret(secret_key, secret),
            )
        )
    return NewApiKey(key_id, label, f"{key_id}_{secret}")


def list_api_keys(engine: Engine, partner: str) -> list[sa.Row]:
    partner_id = get_partner_id(engine, partner)
    query = (
        sa.select(api_keys.c.key_id, api_keys.c.label, api_keys.c.created_at, api_keys.c.revoked_at)
        .where(api_keys.c.partner_id == partner_id)
        .order_by(api_keys.c.id)
    )
    with engine.connect() as conn:
        return list(conn.execute(query))


def revoke_api_key(engine: Engine, key_id: str) -> None:
    with engine.begin() as conn:
        result = conn.execute(
            api_keys.update()
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        if result.rowcount == 0:
            exists = conn.execute(
                sa.select(api_keys.c.id).where(api_keys.c.key_id == key_id)
            ).first()
            raise PartnerError(
                f"API key {key_id!r} is already revoked" if exists else f"no API key {key_id!r}"
            )


@dataclass(frozen=True)
class _StoredKey:
    owner: KeyOwner
    key_hash: bytes


class ApiKeyStore:
    """Looks keys up in SQL behind a short cache, like ``CredentialStore``.

    A revoked key (or a key of a revoked partner) stops working within
    CREDENTIAL_CACHE_SECONDS. ``check`` does blocking I/O on a cache miss:
    call it from a thread.
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
        self._keys = CachedLookup(self._load, ttl)
        self._policy_defaults = policy_defaults

    def check_cached(self, api_key: str) -> KeyOwner | None | Miss:
        """``check`` from the cache alone (no I/O: call it on the event loop and
        save a thread hop per request); MISS when it can't answer."""
        parts = split_key(api_key)
        stored = self._keys.peek(parts[0]) if parts else None
        if stored is MISS:
            return MISS
        return self._verify(api_key, parts, stored)

    def knows(self, api_key: str) -> bool:
        """True if the key's id was found before: the cache holds it, fresh or stale."""
        parts = split_key(api_key)
        return parts is not None and self._keys.knows(parts[0])

    def check(self, api_key: str) -> KeyOwner | None:
        parts = split_key(api_key)
        stored = self._keys.get(parts[0]) if parts else None
        return self._verify(api_key, parts, stored)

    def _verify(
        self, api_key: str, parts: tuple[str, str] | None, stored: _StoredKey | None
    ) -> KeyOwner | None:
        secret = parts[1] if parts else api_key
        # The same hash and comparison whether or not the key id exists.
        matches = self._hashes.matches(secret, stored.key_hash if stored else None)
        return stored.owner if (stored and matches) else None

    def _load(self, key_id: str) -> _StoredKey | None:
        query = (
            sa.select(api_keys.c.id, api_keys.c.label, api_keys.c.key_hash, *PARTNER_COLUMNS)
            .join(partners, partners.c.id == api_keys.c.partner_id)
            .where(
                api_keys.c.key_id == key_id,
                api_keys.c.revoked_at.is_(None),
                partners.c.revoked_at.is_(None),
            )
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        partner = partner_from_row(row, self._policy_defaults)
        return _StoredKey(KeyOwner(partner, row.id, row.label), bytes(row.key_hash))
