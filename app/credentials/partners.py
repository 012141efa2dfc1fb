"""Managing partners and their credentials (used by the CLI and the tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.credentials.auth import hash_secret, new_secret, new_username
from app.db import partners
from app.policy import UNSET
from app.settings import RateLimit


class PartnerError(Exception):
    """A partner operation that can't be done, with a message for the operator."""


@dataclass(frozen=True)
class NewPartner:
    id: int
    name: str
    username: str
    password: str


def create_partner(
    engine: Engine, secret_key: bytes, name: str, rate_limit: str | None = None
) -> NewPartner:
    name = name.strip()
    if not name:
        raise PartnerError("a partner needs a name")
    limit = str(RateLimit.parse(rate_limit)) if rate_limit else None
    username, password = new_username(), new_secret()
    with engine.begin() as conn:
        if conn.execute(sa.select(partners.c.id).where(partners.c.name == name)).first():
            raise PartnerError(f"a partner named {name!r} already exists")
        partner_id = conn.execute(
            partners.insert()
            .values(
                name=name,
                username=username,
                password_hash=hash_secret(secret_key, password),
                rate_limit=limit,
            )
            .returning(partners.c.id)
        ).scalar_one()
    return NewPartner(partner_id, name, username, password)


def list_partners(engine: Engine) -> list[sa.Row]:
    query = sa.select(
        partners.c.id,
        partners.c.name,
        partners.c.username,
        partners.c.rate_limit,
        partners.c.created_at,
        partners.c.revoked_at,
    ).order_by(partners.c.id)
    with engine.connect() as conn:
        return list(conn.execute(query))


def get_partner_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        row = conn.execute(sa.select(partners.c.id).where(partners.c.name == name)).first()
    if row is None:
        raise PartnerError(f"no partner named {name!r}")
    return int(row.id)


def revoke_partner(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        result = conn.execute(
            partners.update()
            .where(partners.c.name == name, partners.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    if result.rowcount == 0:
        get_partner_id(engine, name)  # raises if unknown
        raise PartnerError(f"partner {name!r} is already revoked")


def set_rate_limit(engine: Engine, name: str, rate_limit: str | None) -> str | None:
    """Set a partner's own limit; None goes back to INLET_RATE_LIMIT."""
    limit = str(RateLimit.parse(rate_limit)) if rate_limit else None
    with engine.begin() as conn:
        result = conn.execute(
            partners.update().where(partners.c.name == name).values(rate_limit=limit)
        )
    if result.rowcount == 0:
        raise PartnerError(f"no partner named {name!r}")
    return limit


def get_partner(engine: Engine, name: str) -> sa.Row:
    """NAME's row (never its secrets), with its stored ``policy`` overrides."""
    query = sa.select(
        partners.c.id,
        partners.c.name,
        partners.c.username,
        partners.c.rate_limit,
        partners.c.created_at,
        partners.c.revoked_at,
        partners.c.policy,
    ).where(partners.c.name == name)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise PartnerError(f"no partner named {name!r}")
    return row


def set_policy(engine: Engine, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` (from ``app.policy.parse_changes``; UNSET unsets) to NAME's
    stored policy; return what is stored now.

    Web processes see the change within CREDENTIAL_CACHE_SECONDS.
    """
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(partners.c.id, partners.c.policy)
            .where(partners.c.name == name)
            .with_for_update()
        ).first()
        if row is None:
            raise PartnerError(f"no partner named {name!r}")
        stored = dict(row.policy or {})
        for key, value in changes.items():
            if value is UNSET:
                stored.pop(key, None)
            else:
                stored[key] = value
        conn.execute(partners.update().where(partners.c.id == row.id).values(policy=stored or None))
    return stored
