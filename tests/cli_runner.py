"""Running the ``inlet`` command in-process, against the test's own services."""

from __future__ import annotations

from click.testing import CliRunner, Result

from app.cli import main
from app.settings import Settings
from tests.conftest import TEST_SECRET_KEY


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "INLET_DATA_DIR": str(settings.data_dir),
        "INLET_SECRET_KEY": TEST_SECRET_KEY,
        "INLET_RETRY_DELAYS": ",".join(str(d) for d in settings.retry_delays),
        "INLET_MAX_BATCH_EVENTS": str(settings.max_batch_events),
    }


def run_cli(settings: Settings, *args: str, input: bytes | None = None, expect: int = 0) -> Result:
    """``inlet ARGS...`` with the settings' services; fails unless it exits ``expect``."""
    result = CliRunner().invoke(
        main, list(args), env=cli_env(settings), input=input, catch_exceptions=False
    )
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result
