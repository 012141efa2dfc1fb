"""Running the ``inlet`` command in-process, against the test's own services."""

from __future__ import annotations

from click.testing import CliRunner, Result

from app.cli import main
from app.settings import Settings


def run_cli(settings: Settings, *args: str, input: bytes | None = None, expect: int = 0) -> Result:
    """``inlet ARGS...`` with these settings; fails unless it exits ``expect``."""
    result = CliRunner().invoke(
        main, list(args), env=settings.to_environ(), input=input, catch_exceptions=False
    )
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result
