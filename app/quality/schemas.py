"""Event schemas per partner: JSON Schema (draft 2020-12) for an event's payload.

An operator sets a schema for one of a partner's event names (normalized as
the worker stores them: ``Purchase_Completed`` and ``purchase_completed`` are
one name) with ``inlet schemas set``. It describes an Onside event's
``payload`` or a Thrad event's ``params`` (as the partner sent them, before
the server's stamps). In ``enforce`` mode a violation refuses the request
(400, one entry per violation: the event's index and the JSON path of the
value, e.g. ``payload.amount``); in ``warn`` mode the event is accepted and
its violations are stored with it (the ``violations`` column). A name with no
schema follows the partner's ``unknown_events`` policy (app/policy.py).

Validation is jsonschema-rs (Rust): a schema is compiled once per distinct
document (``compiled``, an LRU keyed by the schema's canonical JSON), and a
valid payload costs one ``is_valid`` call; errors are only listed for the
invalid ones. The web tier reads a partner's schemas through ``SchemaStore``,
a cache with the credentials' TTL: a change takes effect within
CREDENTIAL_CACHE_SECONDS. Compiling offline: a schema may not fetch a
``$ref`` over the network (that would be a request from inside the
service, on the request path); such a schema is refused when it is set.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.credentials.auth import CREDENTIAL_CACHE_SECONDS, MISS, CachedLookup, Miss
from app.credentials.partners import PartnerError, get_partner_id
from app.db import event_schemas
from app.onside.names import normalize_event_name

log = logging.getLogger("inlet.schemas")

MODES = ("warn", "enforce")
DEFAULT_MODE = "warn"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
EMBEDDED_ID = "urn:inlet:event-schema"
# Each distinct schema document compiles once; more distinct documents than
# this across all partners recompile now and then, never wrongly.
_COMPILED_MAX = 1024
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# A batch repeats a handful of names: normalize each once.
_normalized = functools.lru_cache(maxsize=4096)(normalize_event_name)


class SchemaFileError(PartnerError):
    """A schema an operator gave that is not one Inlet can use."""


@functools.lru_cache(maxsize=_COMPILED_MAX)
def _compile(canonical: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(orjson.loads(canonical), offline=True)


@functools.lru_cache(maxsize=_COMPILED_MAX)
def _compile_many(canonical: str) -> jsonschema_rs.Validator:
    # The schema as the items of an array, so that a batch's payloads of one
    # name are checked in one call: each call into jsonschema-rs has a fixed
    # cost that, per payload, was most of the time. Given an $id (unless it
    # has one), the schema stays a resource of its own: its "#/..." refs
    # resolve against it, not against the wrapper.
    schema = orjson.loads(canonical)
    if isinstance(schema, dict) and "$id" not in schema:
        schema = {**schema, "$id": EMBEDDED_ID}
    wrapper = {"$schema": DRAFT_2020_12, "type": "array", "items": schema}
    return jsonschema_rs.Draft202012Validator(wrapper, offline=True)


def canonical_json(schema: Any) -> str:
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()


def compiled(schema: Any) -> jsonschema_rs.Validator:
    """The compiled validator of a schema document, made once per distinct document."""
    return _compile(canonical_json(schema))


def check_schema(document: Any) -> None:
    """Raise SchemaFileError, with the validator's own message, unless ``document``
    is a draft 2020-12 JSON Schema that compiles offline."""
    if not isinstance(document, dict | bool):
        raise SchemaFileError("a JSON Schema must be a JSON object (or true/false)")
    declared = document.get("$schema") if isinstance(document, dict) else None
    if declared is not None and str(declared).rstrip("#") != DRAFT_2020_12:
        raise SchemaFileError(
            f"only JSON Schema draft 2020-12 is supported; this one declares $schema {declared!r}"
        )
    try:
        compiled(document)
        _compile_many(canonical_json(document))
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        raise SchemaFileError(f"not a valid JSON Schema (draft 2020-12): {message}") from None


def json_path(root: str, path: Iterable[str | int]) -> str:
    """``payload`` + ["items", 0, "sku"] -> ``payload.items[0].sku``.

    A key that is not an identifier is quoted: ``payload["a.b"]``.
    """
    parts = [root]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{orjson.dumps(step).decode()}]")
    return "".join(parts)


@dataclass(frozen=True)
class EventSchema:
    mode: str
    validator: jsonschema_rs.Validator
    # The same schema for an array of values: a batch's payloads in one call.
    many: jsonschema_rs.Validator

    @classmethod
    def of(cls, mode: str, document: Any) -> EventSchema:
        """Compiled once per distinct document (both LRUs above)."""
        canonical = canonical_json(document)
        return cls(mode, _compile(canonical), _compile_many(canonical))

    def violations(self, value: Any, root: str) -> list[dict[str, Any]]:
        """``[{"field": <JSON path>, "message": ...}]``; empty when ``value`` is valid."""
        if self.validator.is_valid(value):
            return []
        found = []
        for error in self.validator.iter_errors(value):
            path: list[str | int] = list(error.instance_path)
            if error.kind.name == "required":
                # The offending value is the missing one: name it in the path.
                path.append(error.kind.as_dict()["property"])
            found.append({"field": json_path(root, path), "message": violation_message(error)})
        return found


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _count(limit: int, noun: str, plural: str = "") -> str:
    return f"{limit} {noun}" if limit == 1 else f"{limit} {plural or noun + 's'}"


# What a violation of each keyword says, from the schema's own parameters
# (and, for additionalProperties, the names of the properties it refuses).
# jsonschema-rs's messages quote the offending value ('"jane@x.io" is
# longer than 5 characters'): in a 400, the refusal log, a dry run's
# warnings or a stored violation, that would echo a payload's content, PII
# included, which Inlet never does (docs/api.md).
_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "maxLength": lambda p: f"is longer than {_count(p['limit'], 'character')}",
    "minLength": lambda p: f"is shorter than {_count(p['limit'], 'character')}",
    "pattern": lambda p: f"does not match {_json(p['pattern'])}",
    "format": lambda p: f"is not a valid {_json(p['format'])}",
    "enum": lambda p: "is not one of " + ", ".join(_json(option) for option in p["options"]),
    "const": lambda p: f"is not {_json(p['expected_value'])}",
    "type": lambda p: "is not of type " + " or ".join(_json(t) for t in p["types"]),
    "maximum": lambda p: f"is greater than the maximum of {_json(p['limit'])}",
    "minimum": lambda p: f"is less than the minimum of {_json(p['limit'])}",
    "exclusiveMaximum": lambda p: f"is not less than {_json(p['limit'])}",
    "exclusiveMinimum": lambda p: f"is not greater than {_json(p['limit'])}",
    "multipleOf": lambda p: f"is not a multiple of {_json(p['multiple_of'])}",
    "maxItems": lambda p: f"has more than {_count(p['limit'], 'item')}",
    "minItems": lambda p: f"has fewer than {_count(p['limit'], 'item')}",
    "maxProperties": lambda p: f"has more than {_count(p['limit'], 'property', 'properties')}",
    "minProperties": lambda p: f"has fewer than {_count(p['limit'], 'property', 'properties')}",
    "uniqueItems": lambda p: "has items that are not unique",
    "required": lambda p: f"{_json(p['property'])} is a required property",
    "additionalProperties": lambda p: (
        "has properties the schema does not allow: "
        + ", ".join(_json(name) for name in p["unexpected"])
    ),
    "falseSchema": lambda p: "is not allowed here",
}


def violation_message(error: jsonschema_rs.ValidationError) -> str:
    """What ``error`` says is wrong, naming the schema's limit, never the value."""
    kind = error.kind.name
    make = _MESSAGES.get(kind)
    if make is not None:
        try:
            return make(error.kind.as_dict())
        except (KeyError, TypeError, orjson.JSONEncodeError):
            pass  # parameters of another shape: say it the general way
    return f"does not satisfy the schema's {_json(kind)} keyword"


@dataclass(frozen=True)
class SchemaCheck:
    """What one request's events are checked against: the partner's schemas, by
    normalized event name, and its policy for names without one."""

    schemas: Mapping[str, EventSchema]
    unknown_events: str

    def check(self, name: str, value: Any, root: str) -> tuple[str, list[dict[str, Any]]]:
        """(``enforce``|``warn``|``accept``, violations) for one event.

        ``enforce``: the violations refuse the request; ``warn``: they are
        stored with the event; ``accept`` comes with no violations.
        """
        schema = self.schemas.get(_normalized(name)) if self.schemas else None
        if schema is None:
            if self.unknown_events == "accept":
                return "accept", []
            mode = "enforce" if self.unknown_events == "reject" else "warn"
            return mode, [{"field": "event_name", "message": "has no schema for this partner"}]
        found = schema.violations(value, root)
        return (schema.mode if found else "accept"), found

    def check_many(
        self, items: Sequence[tuple[str, Any]], root: str
    ) -> list[tuple[int, str, list[dict[str, Any]]]]:
        """``check`` for a batch of (event name, value): the (index, mode,
        violations) of each event with any, in index order.

        The values of one name are checked in one call; only a group that
        fails is checked again value by value, to list what is wrong where.
        """
        groups: dict[str, list[int]] = {}
        for index, (name, _) in enumerate(items):
            groups.setdefault(_normalized(name), []).append(index)
        flagged: list[tuple[int, str, list[dict[str, Any]]]] = []
        for name, indexes in groups.items():
            schema = self.schemas.get(name)
            if schema is None or not schema.many.is_valid([items[i][1] for i in indexes]):
                for index in indexes:
                    mode, found = self.check(items[index][0], items[index][1], root)
                    if found:
                        flagged.append((index, mode, found))
        flagged.sort(key=lambda item: item[0])
        return flagged


# ---- the store ---------------------------------------------------------------


def _read_schema_file(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaFileError(f"the schema file is not JSON: {exc}") from None


def set_schema(
    engine: Engine, partner: str, event_name: str, text: str | bytes, mode: str = DEFAULT_MODE
) -> str:
    """Set (or replace) PARTNER's schema for EVENT_NAME; return the normalized name."""
    if mode not in MODES:
        raise SchemaFileError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    name = normalize_event_name(event_name)
    if not name:
        raise SchemaFileError("an event name must not be empty")
    document = _read_schema_file(text)
    check_schema(document)
    partner_id = get_partner_id(engine, partner)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        updated = conn.execute(
            event_schemas.update()
            .where(event_schemas.c.partner_id == partner_id, event_schemas.c.event_name == name)
            .values(schema=document, mode=mode, updated_at=now)
        )
        if updated.rowcount == 0:
            conn.execute(
                event_schemas.insert().values(
                    partner_id=partner_id,
                    event_name=name,
                    schema=document,
                    mode=mode,
                    updated_at=now,
                )
            )
    return name


def list_schemas(engine: Engine, partner: str) -> list[sa.Row]:
    partner_id = get_partner_id(engine, partner)
    query = (
        sa.select(
            event_schemas.c.event_name,
            event_schemas.c.mode,
            event_schemas.c.schema,
            event_schemas.c.updated_at,
        )
        .where(event_schemas.c.partner_id == partner_id)
        .order_by(event_schemas.c.event_name)
    )
    with engine.connect() as conn:
        return list(conn.execute(query))


def delete_schema(engine: Engine, partner: str, event_name: str) -> str:
    partner_id = get_partner_id(engine, partner)
    name = normalize_event_name(event_name)
    with engine.begin() as conn:
        deleted = conn.execute(
            event_schemas.delete().where(
                event_schemas.c.partner_id == partner_id, event_schemas.c.event_name == name
            )
        )
    if deleted.rowcount == 0:
        raise PartnerError(f"partner {partner!r} has no schema for {name!r}")
    return name


class SchemaStore:
    """A partner's compiled schemas, behind the credentials' short cache.

    Like ``CredentialStore``: ``cached`` answers from memory on the event
    loop; ``get`` may read SQL (call it from a thread). A partner with no
    schema is cached too (an empty mapping), and while the database is
    down a partner's schemas read earlier keep counting for the stale grace.
    """

    def __init__(self, engine: Engine, ttl: float = CREDENTIAL_CACHE_SECONDS) -> None:
        self._engine = engine
        self._lookup: CachedLookup[Mapping[str, EventSchema]] = CachedLookup(self._load, ttl)

    def cached(self, partner_id: int) -> Mapping[str, EventSchema] | Miss:
        found = self._lookup.peek(str(partner_id))
        return MISS if found is MISS or found is None else found

    def get(self, partner_id: int) -> Mapping[str, EventSchema]:
        return self._lookup.get(str(partner_id)) or {}

    def _load(self, key: str) -> Mapping[str, EventSchema]:
        query = sa.select(
            event_schemas.c.event_name, event_schemas.c.mode, event_schemas.c.schema
        ).where(event_schemas.c.partner_id == int(key))
        with self._engine.connect() as conn:
            rows = list(conn.execute(query))
        schemas = {}
        for row in rows:
            # Checked when set; compiled once per distinct document (the LRUs above).
            try:
                schemas[row.event_name] = EventSchema.of(row.mode, row.schema)
            except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError):
                # Only a row written around `inlet schemas set` (or a validator
                # upgrade that got stricter) gets here: the name then counts as
                # one without a schema, and the operator hears of it.
                log.error("partner %s: the schema of %r does not compile", key, row.event_name)
        return schemas
