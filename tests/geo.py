"""A tiny MaxMind-format City database for the tests, built with mmdb-writer.

The records have the GeoLite2 City layout (country, subdivisions, city,
location), so the worker reads them exactly as it reads the real database.
"""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# Public addresses (the worker skips private ones before looking anything up).
LONDON = "81.2.69.142"
MILTON = "216.160.83.56"
NOWHERE = "1.1.1.1"  # public, but not in the test database
ODD = "8.8.8.8"  # a record shaped unlike GeoLite2's

RECORDS = {
    "81.2.69.128/26": {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931},
    },
    "216.160.83.56/29": {
        "country": {"iso_code": "US", "names": {"en": "United States"}},
        "subdivisions": [{"iso_code": "WA", "names": {"en": "Washington"}}],
        "city": {"names": {"en": "Milton"}},
        "location": {"latitude": 47.2513, "longitude": -122.3149},
    },
    "8.8.8.0/24": {
        "country": "US",
        "subdivisions": "nope",
        "city": {"names": {"en": 7}},
        "location": {"latitude": "north", "longitude": True},
    },
}


def build_city_database(path: Path) -> Path:
    writer = MMDBWriter(
        ip_version=4,
        database_type="GeoLite2-City",
        languages=["en"],
        description="Inlet test geo database",
    )
    for network, record in RECORDS.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path
