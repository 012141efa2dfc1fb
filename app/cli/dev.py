"""``inlet dev``: the whole stack on embedded defaults (what ``make run`` runs)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click
import orjson

from app import migrations
from app.cli.common import engine_for, load_settings
from app.credentials import partners as service
from app.credentials.api_keys import DEFAULT_LABEL, create_api_key
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings

DEMO_PARTNER = "demo"
EXAMPLE_EVENT_ID = "550e8400-e29b-41d4-a716-446655440000"


def demo_credentials(settings: Settings) -> dict[str, str]:
    """The demo partner's credentials, created on first run.

    Only the hash is in the database; for the local demo the plain secret is
    also kept in INLET_DATA_DIR/demo-partner.json (mode 600) so every
    ``make run`` can print a working curl command.
    """
    path = settings.data_dir / "demo-partner.json"
    if path.exists():
        return orjson.loads(path.read_bytes())
    with engine_for(settings) as engine:
        if any(row.name == DEMO_PARTNER for row in service.list_partners(engine)):
            return {}
        new = service.create_partner(engine, settings.secret_key, DEMO_PARTNER)
    creds = {"name": new.name, "username": new.username, "password": new.password}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(creds))
    return creds


def demo_api_key(settings: Settings, creds: dict[str, str]) -> str:
    """The demo partner's Bearer key for the Thrad endpoint, made once and kept
    beside its Basic credentials (data dirs from before API keys get one too)."""
    if creds.get("api_key"):
        return creds["api_key"]
    with engine_for(settings) as engine:
        key = create_api_key(engine, settings.secret_key, DEMO_PARTNER, DEFAULT_LABEL)
    creds["api_key"] = key.api_key
    path = settings.data_dir / "demo-partner.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(creds))
    return key.api_key


def thrad_curl_example(settings: Settings, api_key: str) -> str:
    """Thrad's documented example, only the host changed."""
    return (
        f"export THRAD_API_KEY='{api_key}'\n"
        f"curl -i -X POST http://{settings.host}:{settings.port}/api/collect \\\n"
        '  -H "Authorization: Bearer $THRAD_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        """  -d '{"tag_id": "<YOUR_TAG_ID>", "event_name": "items_added", "event_id": "evt_42", """
        """"timestamp": 1748275200, "click_id": "clk_xyz", "session_id": "sess_abc", """
        """"params": {"content_id": "sku_123", "quantity": 2, "value": 58.00, """
        """"currency": "USD"}}'"""
    )


def curl_example(settings: Settings, creds: dict[str, str]) -> str:
    return (
        "curl -i -X POST \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -u '{creds['username']}:{creds['password']}' \\\n"
        '  --data \'{"events": [{"event_name": "purchase_completed", '
        '"payload": {"currency": "USD", "amount": "9.99"}, '
        '"event_datetime": "2026-05-05T12:00:00Z", '
        f'"event_id": "{EXAMPLE_EVENT_ID}", "installation_id": "{EXAMPLE_EVENT_ID}"}}]}}\' \\\n'
        f"  http://{settings.host}:{settings.port}/attribution-api/v1/events"
    )


def inlet_command() -> str:
    """How to run `inlet` from another terminal: ``inlet`` when it is on PATH and
    is this one, else its path in the virtualenv (relative when under here)."""
    own = Path(sys.executable).parent / "inlet"
    found = shutil.which("inlet")
    if found and Path(found).resolve() == own.resolve():
        return "inlet"
    try:
        return str(own.relative_to(Path.cwd()))
    except ValueError:
        return str(own)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command()
def dev() -> None:
    """Run it all locally: Redis, migrations, web, worker.

    Starts the embedded Redis (unless REDIS_URL is set), migrates, then runs
    web + worker until Ctrl-C.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ)
    redis = None
    if not env.get("REDIS_URL"):
        data_dir = Path(env.get("INLET_DATA_DIR") or "./var")
        redis = EmbeddedRedis(data_dir).start()
        env["REDIS_URL"] = redis.url
        click.echo(f"Embedded Redis on {redis.url} (AOF, appendfsync always)", err=True)
    os.environ["REDIS_URL"] = env["REDIS_URL"]
    honcho: subprocess.Popen[bytes] | None = None
    try:
        settings = load_settings(database=False)
        migrations.upgrade(settings.database_url)
        # Metrics files of processes from an earlier run would be added forever.
        shutil.rmtree(settings.metrics_dir, ignore_errors=True)
        creds = demo_credentials(settings)
        if creds:
            click.echo("\nPartner 'demo' is ready. Send the reference's example event:\n")
            click.echo(curl_example(settings, creds))
            click.echo("\nOr a single event in Thrad's format:\n")
            click.echo(thrad_curl_example(settings, demo_api_key(settings, creds)))
            click.echo(
                f"\nThen, in another terminal: {inlet_command()} events export "
                f"--partner {DEMO_PARTNER}\n"
                f"(or `source {Path(sys.executable).parent / 'activate'}` first, "
                "then `inlet ...`)\n"
            )
        click.echo(
            f"Admin page: http://{settings.host}:{settings.port}/admin "
            f"(a login: {inlet_command()} admin create YOUR_NAME)\n"
        )
        # The venv's bin first, so the Procfile's `inlet` is this one.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "start",
                "--port",
                str(settings.port),
                "web",
                "worker",
            ],
            env=env,
        )
        honcho.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches honcho as well; a SIGTERM sent to us
        # alone does not, so pass it on. Honcho stops web and worker.
        if honcho is not None and honcho.poll() is None:
            honcho.send_signal(signal.SIGTERM)
            try:
                honcho.wait(15)
            except subprocess.TimeoutExpired:
                honcho.kill()
                honcho.wait()
    finally:
        if redis is not None:
            redis.stop()
            click.echo("Embedded Redis stopped.", err=True)
