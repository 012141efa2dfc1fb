"""Running Alembic from code: the only way Inlet's schema is made.

The migration scripts live in the checkout's top-level ``alembic/`` folder and
install as the package ``inlet_migrations`` (see pyproject.toml), so a regular
``pip install`` migrates as well as a checkout does. The configuration is built
here rather than read from ``alembic.ini``, which is not installed; the ini
file stays for running the ``alembic`` command itself in a checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic.config import Config

from alembic import command


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
