"""Alembic environment: the URL comes from Inlet's settings, never from alembic.ini."""

from __future__ import annotations

import re
from logging.config import fileConfig

import sqlalchemy as sa

from alembic import context
from app.db import exists_on, make_engine, metadata
from app.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


# pg_partman's children and default partitions of the partitioned tables
# (docs/storage.md): made by maintenance, never by a migration.
_PARTITION = re.compile(
    r"^(events|thrad_events|event_keys|thrad_event_keys)_(p\d{4}_\d{2}_\d{2}|default)$"
)


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    dialect = context.get_context().dialect.name
    if type_ == "table" and reflected and compare_to is None and _PARTITION.match(name or ""):
        return False
    # A table or constraint of app.db that exists on the other database only.
    return not isinstance(obj, (sa.Table, sa.Constraint)) or exists_on(obj, dialect)


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or Settings.from_env().database_url
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                # SQLite can't ALTER most things: migrations rebuild tables there.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
                include_object=include_object,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `inlet migrate`")
run_migrations_online()
