"""What crosses the queue is declared once per format (app/onside/contract.py,
app/thrad/contract.py): the tables, the worker's rows, the export, the
enrichment, the validators and the OpenAPI document agree with it."""

from __future__ import annotations

import ast
import importlib
import re
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args, get_type_hints

import orjson
import pytest
import sqlalchemy as sa

from app import openapi
from app.db import events, thrad_events
from app.onside import contract as onside
from app.onside.export import onside_export_row, onside_query
from app.onside.validate import validate_batch, validate_events
from app.queue import JOB_FUNCTIONS
from app.thrad import contract as thrad
from app.thrad.export import thrad_export_row, thrad_query
from app.thrad.validate import server_fields, validate_event
from tests.events import GOOGLEBOT
from tests.events import ONSIDE_EVENT as REFERENCE_EVENT
from worker import onside as onside_store
from worker.enrich import geo_fields, ua_fields
from worker.thrad import thrad_row

ROOT = Path(__file__).resolve().parent.parent
RECEIVED = datetime(2026, 5, 26, 12, 0, tzinfo=UTC)
# Columns that say where and when a row landed, not what the partner sent.
STORAGE_COLUMNS = {"id", "partner_id", "received_at", "job_id"}

ONSIDE_EVENT = {
    **REFERENCE_EVENT,
    "event_name": "Purchase_Completed",
    "payload": {"amount": "9.99"},
}
# Every field a partner may send, each with a value of its declared type.
THRAD_BODY = {
    **{field: f"{field}-value" for field in thrad.STRING_FIELDS},
    "event_name": "items_added",
    "user_agent": GOOGLEBOT,
    "timestamp": 1748275200,
    "view_time_ms": 1200,
    "consent": {"gdpr": True},
    "params": {"content_id": "sku_1"},
}


def queued_thrad_event() -> thrad.QueuedThradEvent:
    return server_fields(
        validate_event(orjson.dumps(THRAD_BODY)),
        headers={},
        ip_address="81.2.69.160",
        partner_id=1,
        api_key_id=2,
        key_label="k",
        received_at=RECEIVED,
    )


def optional(hint: Any) -> bool:
    return type(None) in get_args(hint)


def base_type(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
    return getattr(hint, "__origin__", hint)


def thrad_stored_fields() -> dict[str, Any]:
    """Column name -> declared type, for every field of a stored Thrad event."""
    fields = get_type_hints(thrad.QueuedThradEvent)
    stored = {
        thrad.COLUMN_NAMES.get(name, name): hint
        for name, hint in fields.items()
        if name not in thrad.UNSTORED_FIELDS
    }
    stored.update(get_type_hints(thrad.GeoFields))
    stored.update(get_type_hints(thrad.UserAgentFields))
    return stored


def test_thrad_columns_are_the_contract_fields_with_their_types() -> None:
    fields = thrad_stored_fields()
    columns = {c.name: c for c in thrad_events.columns}
    assert set(columns) == set(fields) | STORAGE_COLUMNS
    optional_keys = {thrad.COLUMN_NAMES.get(k, k) for k in thrad.QueuedThradEvent.__optional_keys__}
    for name, hint in fields.items():
        column = columns[name]
        assert column.nullable == (name in optional_keys or optional(hint)), name
        # JSON columns hand back any JSON value; the contract's objects are
        # dicts, and its lists (violations) lists.
        expected = object if base_type(hint) in (dict, list) else base_type(hint)
        assert column.type.python_type is expected, name


def test_onside_columns_are_the_contract_fields() -> None:
    """The sent name is stored beside its normalized form (event_name)."""
    columns = {c.name: c for c in events.columns}
    assert (
        set(columns)
        == {*onside.FIELDS, *onside.OPTIONAL_FIELDS, "sent_event_name"} | STORAGE_COLUMNS
    )
    assert not any(columns[name].nullable for name in onside.FIELDS)
    assert all(columns[name].nullable for name in onside.OPTIONAL_FIELDS)
    hints = get_type_hints(onside.QueuedOnsideEvent)
    assert set(hints) == {*onside.FIELDS, *onside.OPTIONAL_FIELDS}
    assert onside.QueuedOnsideEvent.__optional_keys__ == set(onside.OPTIONAL_FIELDS)


def test_onside_postgresql_insert_names_every_column() -> None:
    """The COPY path spells its columns out in SQL: they must be the table's."""
    staged = re.search(r"COPY inlet_staging \(([^)]*)\)", onside_store._PG_COPY)
    moved = re.search(r"INSERT INTO events \(([^)]*)\)", onside_store._PG_MOVE)
    assert staged and moved
    names = lambda match: {n.strip() for n in match.group(1).split(",")}  # noqa: E731
    assert names(staged) == {*onside.FIELDS, *onside.OPTIONAL_FIELDS, "sent_event_name"}
    assert names(moved) == set(events.columns.keys()) - {"id"}
    # A take's (worker/take.py): the same, each row numbered with its job.
    staged = re.search(r"COPY inlet_staging \(([^)]*)\)", onside_store._PG_COPY_MANY)
    moved = re.search(r"INSERT INTO events \(([^)]*)\)", onside_store._PG_MOVE_MANY)
    assert staged and moved
    assert names(staged) == {*onside.FIELDS, *onside.OPTIONAL_FIELDS, "sent_event_name", "batch"}
    assert names(moved) == set(events.columns.keys()) - {"id"}


def test_the_worker_fills_every_thrad_column_from_a_queued_event() -> None:
    row = thrad_row(
        queued_thrad_event(),
        partner_id=1,
        received_at=RECEIVED,
        job_id="j",
        geoip_database=None,
    )
    assert set(row) == set(thrad_events.columns.keys()) - {"id"}
    assert row["geo_country"] == "GB" and row["ua_browser"] == "Googlebot"


def test_every_sent_thrad_field_is_checked_and_kept() -> None:
    groups = ("event_name", *thrad.STRING_FIELDS, *thrad.NUMBER_FIELDS, *thrad.OBJECT_FIELDS)
    assert sorted(groups) == sorted(thrad.SENT_FIELDS)
    assert tuple(validate_event(orjson.dumps(THRAD_BODY))) == thrad.SENT_FIELDS
    queued = queued_thrad_event()
    # ``geo`` among them: queued only under an ip_mode other than full (test_privacy_api.py).
    conditional = set(thrad.CONDITIONAL_FIELDS)
    assert set(queued) == set(get_type_hints(thrad.QueuedThradEvent)) - conditional
    assert conditional <= thrad.QueuedThradEvent.__optional_keys__


@pytest.mark.parametrize("extra", [{}, {"extra": "ignored"}])
def test_a_queued_onside_event_has_exactly_the_contract_fields(extra: dict[str, str]) -> None:
    """On the fast path (the event kept, or copied) and on the slow one."""
    assert set(onside.FIELDS) == set(get_type_hints(onside.SentOnsideEvent))
    [fast] = validate_batch(orjson.dumps({"events": [{**ONSIDE_EVENT, **extra}]}), 1)
    [slow] = validate_events([{**ONSIDE_EVENT, **extra}])
    assert set(fast) == set(slow) == set(onside.FIELDS)


def test_geo_looked_up_by_the_web_tier_fills_the_geo_columns() -> None:
    """Under ip_mode truncate the worker stores the queued geo, not the truncated address's."""
    event = {**queued_thrad_event(), "ip_address": "81.2.69.0"}
    # Not what any database says of 81.2.69.0: only the queued geo can give it.
    event["geo"] = {**geo_fields(None, None), "geo_country": "ZZ", "geo_lat": 1.5}
    row = thrad_row(event, partner_id=1, received_at=RECEIVED, job_id="j", geoip_database=None)
    assert set(row) == set(thrad_events.columns.keys()) - {"id"}
    assert row["ip_address"] == "81.2.69.0"
    assert (row["geo_country"], row["geo_lat"], row["geo_city"]) == ("ZZ", 1.5, None)


def test_enrichment_gives_the_contract_fields() -> None:
    assert tuple(geo_fields("81.2.69.160", None)) == thrad.GEO_FIELDS
    assert tuple(geo_fields(None, None)) == thrad.GEO_FIELDS
    assert tuple(ua_fields(THRAD_BODY["user_agent"])) == thrad.UA_FIELDS
    assert tuple(ua_fields(None)) == thrad.UA_FIELDS


def _sample(column: sa.ColumnElement[Any]) -> Any:
    python_type = column.type.python_type
    samples = {datetime: RECEIVED, float: 1.5, int: 1, str: "x", object: {"k": "v"}}
    return samples[python_type]


def _row(query: sa.Select[Any]) -> types.SimpleNamespace:
    """A row with a value in each column the query selects (and no other)."""
    return types.SimpleNamespace(**{c.key: _sample(c) for c in query.selected_columns})


def _iso(value: datetime) -> str:
    return value.isoformat()


def test_the_onside_export_shows_every_stored_field() -> None:
    exported = onside_export_row(_row(onside_query(1)), _iso)
    assert set(exported) == {
        "source",
        *onside.FIELDS,
        *onside.OPTIONAL_FIELDS,
        "sent_event_name",
        "received_at",
    }


def test_the_thrad_export_shows_every_stored_field() -> None:
    """Everything but the server's bookkeeping (ingest_id, api_key_id)."""
    exported = thrad_export_row(_row(thrad_query(1)), _iso)
    stored = {*thrad.SENT_FIELDS, *thrad.SERVER_FIELDS, *thrad.ENRICHED_FIELDS}
    bookkeeping = {"ingest_id", "api_key_id"}
    unstored = set(thrad.UNSTORED_FIELDS)  # exported as the geo fields
    assert set(exported) == (stored - bookkeeping - unstored) | {"source", "received_at"}


def test_openapi_documents_the_contract_fields() -> None:
    schemas = openapi.document()["components"]["schemas"]
    onside_event, thrad_event = schemas["OnsideEvent"], schemas["ThradEvent"]
    assert tuple(onside_event["properties"]) == onside.FIELDS
    assert tuple(onside_event["required"]) == onside.FIELDS
    assert tuple(thrad_event["properties"]) == thrad.SENT_FIELDS
    properties = thrad_event["properties"]
    assert all("string" in properties[f]["type"] for f in thrad.STRING_FIELDS)
    assert all("number" in properties[f]["type"] for f in thrad.NUMBER_FIELDS)
    assert all(
        {"$ref": "#/components/schemas/JsonObject"} in properties[f]["anyOf"]
        for f in thrad.OBJECT_FIELDS
    )


def test_each_endpoint_names_its_job_function_and_it_is_importable() -> None:
    """Jobs stored in Redis (queued, retrying, failed) name these paths: they must not move."""
    assert JOB_FUNCTIONS == {
        "onside": "worker.jobs.ingest_onside",
        "thrad": "worker.jobs.ingest_thrad",
    }
    for path in JOB_FUNCTIONS.values():
        module, name = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("files", "forbidden"),
    [
        ("app/onside/*.py", ("app.thrad", "worker.thrad")),
        ("app/thrad/*.py", ("app.onside", "worker.onside")),
        ("worker/onside.py", ("app.thrad", "worker.thrad")),
        ("worker/thrad.py", ("app.onside", "worker.onside")),
    ],
)
def test_neither_format_imports_the_other(files: str, forbidden: tuple[str, ...]) -> None:
    paths = sorted(ROOT.glob(files))
    assert paths, f"no files match {files}: the test proves nothing"
    for path in paths:
        crossing = {
            name
            for name in _imports(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        }
        assert not crossing, f"{path.relative_to(ROOT)} imports {sorted(crossing)}"
