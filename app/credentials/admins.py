"""Admin users: the support staff's own credentials for ``/admin``.

Kept in their own table, never in ``partners``: a partner's username and
password are simply unknown here. Passwords are generated 256-bit secrets,
stored as the same keyed BLAKE2b hash as partner secrets (see app/credentials/auth.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.credentials.auth import CachedLookup, SecretHashes, hash_secret, new_secret
from app.db import admin_users

_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# A deleted admin stops working within this many seconds.
CACHE_SECONDS = 2.0


class AdminError(Exception):
    """An admin-user operation that can't be done, with a message for the operator."""


@dataclass(frozen=True)
class NewAdmin:
    username: str
    password: str


def create_admin(engine: Engine, secret_key: bytes, username: str) -> NewAdmin:
    username = username.strip()
    if not _USERNAME_RE.fullmatch(username):
        raise AdminError("an admin username is 1 to 64 letters, digits or . _ @ -")
    password = new_secret()
    with engine.begin() as conn:
        taken = conn.execute(
            sa.select(admin_users.c.id).where(admin_users.c.username == username)
        ).first()
        if taken:
            raise AdminError(f"an admin named {username!r} already exists")
        conn.execute(
            admin_users.insert().values(
                username=username, password_hash=hash_secret(secret_key, password)
            )
        )
    return NewAdmin(username, password)


def delete_admin(engine: Engine, username: str) -> None:
    with engine.begin() as conn:
        result = conn.execute(admin_users.delete().where(admin_users.c.username == username))
    if result.rowcount == 0:
        raise AdminError(f"no admin named {username!r}")


def list_admins(engine: Engine) -> list[sa.Row]:
    query = sa.select(admin_users.c.username, admin_users.c.created_at).order_by(admin_users.c.id)
    with engine.connect() as conn:
        return list(conn.execute(query))


class AdminStore:
    """Checks admin credentials in constant time, with a short cache.

    ``check`` does blocking I/O on a cache miss: call it from a thread.
    """

    def __init__(self, engine: Engine, secret_key: bytes) -> None:
        self._engine = engine
        self._hashes = SecretHashes(secret_key)
        self._secret_key = secret_key
        self._password_hashes = CachedLookup(self._load, CACHE_SECONDS)

    def check(self, username: str, password: str) -> bool:
        return self._hashes.matches(password, self._password_hashes.get(username))

    def session_fingerprint(self, username: str) -> str | None:
        """A short keyed digest of the admin's stored hash; None for no such admin.

        A sign-in session carries it: deleting the admin (or giving it a new
        password) ends every session it had, without a table of sessions.
        """
        stored = self._password_hashes.get(username)
        if stored is None:
            return None
        return hmac.new(self._secret_key, b"session|" + stored, hashlib.sha256).hexdigest()[:32]

    def _load(self, username: str) -> bytes | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(admin_users.c.password_hash).where(admin_users.c.username == username)
            ).first()
        return bytes(row.password_hash) if row is not None else None
