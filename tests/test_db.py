"""The SQLite store's files: private to the user that runs Inlet."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from app import migrations
from app.db import make_engine, partners


def test_a_new_sqlite_database_and_its_folder_are_private(tmp_path: Path) -> None:
    """Credential hashes and every event live in these files: mode 600, folder 700."""
    folder = tmp_path / "var"
    path = folder / "inlet.db"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(partners.insert().values(name="n", username="u", password_hash=b"h"))
            conn.execute(sa.text("SELECT 1"))
            # The WAL and its index exist while a connection is open.
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)
            modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files}
    finally:
        engine.dispose()
    assert modes == {f.name: "0o600" for f in files}
    assert folder.stat().st_mode & 0o777 == 0o700


def test_postgresql_sessions_are_utc_and_keep_the_urls_own_options(postgresql_url: str) -> None:
    engine = make_engine(postgresql_url + "?options=-c%20statement_timeout%3D1234")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "UTC"
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "1234ms"
    finally:
        engine.dispose()
