"""What the command groups share: settings, an engine, errors, logging."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.engine import Engine

from app.credentials.partners import PartnerError
from app.db import make_engine
from app.errors import ConfigError
from app.settings import Settings


def setup_logging() -> None:
    level = os.environ.get("INLET_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def engine_for(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn expected failures into a one-line message and exit status 1."""
    try:
        yield
    except (PartnerError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
