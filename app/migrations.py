"""Running Alembic from code: the only way Inlet's schema is made.

The migration scripts live in the checkout's top-level ``alembic/`` folder and
install as the package ``inlet_migrations`` (see pyproject.toml), so a regular
``pip install`` migrates as well as a checkout does. The configuration is built
here rather than read from ``alembic.ini``, which is not installed; the ini
file stays for running the ``alembic`` command itself in a checkout.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from app.db import make_engine


def script_location() -> str:
    """Where the import system finds ``inlet_migrations``.

    It is a namespace package (no ``__init__.py``: one in the top-level folder
    would shadow the alembic library in a checkout), and an editable install
    adds a placeholder entry to its path, so the real folder is picked out.
    """
    spec = importlib.util.find_spec("inlet_migrations")
    for entry in (spec.submodule_search_locations or []) if spec else []:
        if Path(entry, "env.py").is_file():
            return str(entry)
    raise RuntimeError("the migrations (package inlet_migrations) are not installed")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise if the tables in app.db and the migrations disagree."""
    command.check(alembic_config(database_url))


class SchemaError(Exception):
    """The database can't serve Inlet as it is; the message says what to do."""


def require_current_schema(database_url: str) -> None:
    """Raise SchemaError unless the database answers and is migrated to head.

    Never creates anything: a SQLite file that isn't there is reported, not
    made (SQLite would create an empty one on connect).
    """
    url = sa.engine.make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    path = url.database if url.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
        raise SchemaError(
            f"no Inlet database at {path}: run `inlet migrate` to create it, or run from "
            "the deployment's folder, or set DATABASE_URL and INLET_DATA_DIR "
            "(their defaults are relative to the current folder: ./var)"
        )
    current = current_revisions(database_url)
    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    if not current:
        raise SchemaError(
            f"the database at {shown} has no Inlet tables: run `inlet migrate`, "
            "or set DATABASE_URL to the deployment's database"
        )
    if current != heads:
        raise SchemaError(
            f"the database at {shown} is at schema revision {', '.join(sorted(current))}, "
            f"this Inlet needs {', '.join(sorted(heads))}: run `inlet migrate`"
        )


def current_revisions(database_url: str) -> set[str]:
    """The schema revisions the database is at; SchemaError if it can't be reached."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            # Reading the revision is not migrating: Alembic's INFO lines about
            # its SQLite implementation would only clutter every CLI command.
            quiet = logging.getLogger("alembic.runtime.migration")
            previous = quiet.level
            quiet.setLevel(logging.WARNING)
            try:
                return set(MigrationContext.configure(conn).get_current_heads())
            finally:
                quiet.setLevel(previous)
    except sa.exc.DBAPIError as exc:
        shown = sa.engine.make_url(database_url).render_as_string(hide_password=True)
        # The type only: the driver's text can hold host names or a password.
        raise SchemaError(
            f"cannot reach the database at {shown} ({type(exc.orig).__name__}): "
            "check DATABASE_URL and that the database is up"
        ) from None
    finally:
        engine.dispose()
