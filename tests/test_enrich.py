"""Worker-side enrichment: geo from a MaxMind-format database, fields from user agents."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import Settings
from tests import geo
from tests.events import CHROME_WINDOWS, GOOGLEBOT, SAFARI_IPHONE
from worker.enrich import GEO_FIELDS, geo_fields, packaged_geoip_database, ua_fields
from worker.runner import run_worker


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_WINDOWS, ("Chrome", "124.0.6367", "Windows", "10", None)),
        (SAFARI_IPHONE, ("Mobile Safari", "17.4", "iOS", "17.4.1", "iPhone")),
        (GOOGLEBOT, ("Googlebot", "2.1", None, None, "Spider")),
        ("", (None, None, None, None, None)),
        (None, (None, None, None, None, None)),
        ("\x01\uffff not a browser at all", (None, None, None, None, None)),
    ],
)
def test_user_agents(user_agent: str | None, expected: tuple[str | None, ...]) -> None:
    fields = ua_fields(user_agent)
    got = tuple(
        fields[k]
        for k in ("ua_browser", "ua_browser_version", "ua_os", "ua_os_version", "ua_device")
    )
    assert got == expected


def test_the_native_accelerator_is_in_use() -> None:
    """ua-parser picks its Rust resolver (ua-parser-rs) when it is installed."""
    import ua_parser
    from ua_parser.regex import Resolver

    assert ua_parser.BestAvailableResolver is Resolver


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (geo.LONDON, ("GB", "ENG", "London", 51.5142, -0.0931)),
        (geo.MILTON, ("US", "WA", "Milton", 47.2513, -122.3149)),
        ("::ffff:81.2.69.142", (None,) * 5),  # the web tier unmaps these; raw, no match
    ],
)
def test_geo_of_known_addresses(city_db: Path, address: str, expected: tuple[object, ...]) -> None:
    fields = geo_fields(address, city_db)
    assert tuple(fields[k] for k in GEO_FIELDS) == expected


@pytest.mark.parametrize(
    "address",
    [
        geo.NOWHERE,
        geo.ODD,
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "::1",
        "fe80::1",
        "2a00:1450:4001::1",
        "not-an-ip",
        "",
        None,
    ],
)
def test_private_loopback_unknown_or_malformed_give_empty_geo(
    city_db: Path, address: str | None
) -> None:
    assert geo_fields(address, city_db) == dict.fromkeys(GEO_FIELDS)


def test_geo_works_out_of_the_box_with_the_packaged_database() -> None:
    assert packaged_geoip_database().is_file()
    fields = geo_fields("81.2.69.160", None)
    assert fields["geo_country"] == "GB"
    assert isinstance(fields["geo_lat"], float) and isinstance(fields["geo_lon"], float)


def test_a_geo_database_that_cannot_be_read_stops_the_worker_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    bogus = tmp_path / "not-a.mmdb"
    bogus.write_bytes(b"this is no MaxMind database")
    with pytest.raises(ConfigError, match="INLET_GEOIP_DATABASE"):
        run_worker(settings.replace(geoip_database=bogus), burst=True)


def test_a_missing_geo_database_file_is_refused_with_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="INLET_GEOIP_DATABASE"):
        Settings.from_env(
            {
                "INLET_SECRET_KEY": "k" * 32,
                "INLET_DATA_DIR": str(tmp_path),
                "INLET_GEOIP_DATABASE": str(tmp_path / "nope.mmdb"),
            }
        )
