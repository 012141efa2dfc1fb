"""Worker-side enrichment of Thrad events: geo from the IP, fields from the user agent.

Geo comes from a MaxMind-format City database (GeoLite2, DB-IP City Lite):
INLET_GEOIP_DATABASE, or the GeoLite2 City database that the
``maxminddb-geolite2`` package ships, so geo works with no setting at all.
User agents are parsed by ``ua-parser`` on its Rust resolver
(``ua-parser-rs``) when installed. Neither can fail a job: an address that
is private, loopback, malformed or unknown to the database, or a user agent
nobody recognizes, gives empty fields. The fields' names and types are
declared in ``app/thrad/contract.py``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from pathlib import Path
from typing import Any, cast

import maxminddb
import ua_parser

from app.errors import ConfigError
from app.thrad.contract import GEO_FIELDS, UA_FIELDS, GeoFields, UserAgentFields

log = logging.getLogger("inlet.enrich")


def packaged_geoip_database() -> Path:
    """The GeoLite2 City database inside the maxminddb-geolite2 package."""
    # The package's own module imports this path; its reader wrapper is not needed.
    from _maxminddb_geolite2 import geolite2_database

    return Path(geolite2_database())


@functools.lru_cache(maxsize=4)
def geo_reader(path: Path) -> maxminddb.Reader:
    """One memory-mapped reader per database file, for the worker's lifetime."""
    reader = maxminddb.open_database(str(path))
    log.info("geo database: %s (%s)", path, reader.metadata().database_type)
    return reader


def open_geo_database(path: Path | None) -> maxminddb.Reader:
    """Open the configured (or packaged) database now, so that a file that is
    not a MaxMind database stops the worker at start-up instead of failing jobs."""
    target = path or packaged_geoip_database()
    try:
        return geo_reader(target)
    except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise ConfigError(f"INLET_GEOIP_DATABASE: cannot read {target}: {exc}") from None


def _english(record: Any) -> str | None:
    if isinstance(record, dict):
        names = record.get("names")
        if isinstance(names, dict) and isinstance(names.get("en"), str):
            return names["en"]
    return None


def geo_fields(ip_address: str | None, database: Path | None) -> GeoFields:
    """Country (ISO code), region (ISO code of the first subdivision), city, lat, lon."""
    empty = cast(GeoFields, dict.fromkeys(GEO_FIELDS))
    try:
        address = ipaddress.ip_address(ip_address) if ip_address else None
    except ValueError:
        return empty
    if address is None or not address.is_global:
        return empty  # private, loopback, link-local, reserved: no place on a map
    try:
        record: Any = geo_reader(database or packaged_geoip_database()).get(address)
    except ValueError:
        # E.g. an IPv6 address looked up in an IPv4-only database.
        return empty
    if not isinstance(record, dict):
        return empty
    # Any database in the format may leave a part out or shape it oddly:
    # every step is checked, so an odd record gives empty fields, not a failed job.
    subdivisions = record.get("subdivisions")
    first = subdivisions[0] if isinstance(subdivisions, list) and subdivisions else None
    return {
        "geo_country": _text(record.get("country"), "iso_code"),
        "geo_region": _text(first, "iso_code"),
        "geo_city": _english(record.get("city")),
        "geo_lat": _number(record.get("location"), "latitude"),
        "geo_lon": _number(record.get("location"), "longitude"),
    }


def _text(record: Any, key: str) -> str | None:
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _number(record: Any, key: str) -> float | None:
    value = record.get(key) if isinstance(record, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _version(part: Any) -> str | None:
    numbers = [n for n in (part.major, part.minor, part.patch) if n]
    return ".".join(numbers) or None


def ua_fields(user_agent: str | None) -> UserAgentFields:
    """Browser and version, OS and version, device family; None where unknown."""
    empty = cast(UserAgentFields, dict.fromkeys(UA_FIELDS))
    if not user_agent:
        return empty
    result = ua_parser.parse(user_agent)
    browser, os, device = result.user_agent, result.os, result.device
    return {
        "ua_browser": browser.family if browser else None,
        "ua_browser_version": _version(browser) if browser else None,
        "ua_os": os.family if os else None,
        "ua_os_version": _version(os) if os else None,
        "ua_device": device.family if device else None,
    }
