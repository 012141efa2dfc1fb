"""The reference's curl example, verbatim, run by the real curl against a live ``inlet web``.

The only change to the command is the host: Thrad's production address
becomes the uvicorn process the test starts. The key comes from the CLI.
curl's status line comes from a .curlrc (``write-out``), so the command
itself stays as the reference prints it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from app.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.services import free_port, wait_for

REFERENCE_CURL = """curl -X POST https://events.thrad.ai/api/collect \\
  -H "Authorization: Bearer $THRAD_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "tag_id":     "<YOUR_TAG_ID>",
    "event_name": "items_added",
    "event_id":   "evt_42",
    "timestamp":  1748275200,
    "click_id":   "clk_xyz",
    "session_id": "sess_abc",
    "params": {
      "content_id": "sku_123",
      "quantity": 2,
      "value": 58.00,
      "currency": "USD"
    }
  }'
"""
INLET = str(Path(sys.executable).parent / "inlet")


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "INLET_DATA_DIR": str(settings.data_dir),
        "INLET_SECRET_KEY": TEST_SECRET_KEY,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "INLET_LOG_LEVEL": "WARNING",
    }


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def web(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``inlet web`` as its own process; yields its base URL."""
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen([INLET, "web"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        wait_for(
            lambda: process.poll() is not None or _healthy(base + "/healthz"),
            timeout=30,
            message="inlet web to answer /healthz",
        )
        assert process.poll() is None, (tmp_path / "web.log").read_text()
        yield base
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def inlet(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [INLET, *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def test_reference_curl_example_verbatim_against_live_web(
    web: str, env: dict[str, str], tmp_path: Path, drain: Callable[..., None]
) -> None:
    api_key = orjson.loads(inlet(env, "partners", "create", "acme", "--json"))["api_key"]
    (tmp_path / ".curlrc").write_text('silent\nwrite-out = "%{http_code}"\n')
    command = REFERENCE_CURL.replace("https://events.thrad.ai", web)
    assert command.count(web) == 1
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "THRAD_API_KEY": api_key, "CURL_HOME": str(tmp_path)},
    )
    assert (result.returncode, result.stdout) == (0, "204"), result.stderr

    drain()
    exported = inlet(env, "events", "export", "--partner", "acme").splitlines()
    [line] = [orjson.loads(x) for x in exported]
    assert line["source"] == "thrad"
    assert line["channel"] == "server"
    assert line["click_id"] == "clk_xyz"
    assert line["params"] == {
        "content_id": "sku_123",
        "quantity": 2,
        "value": 58.0,
        "currency": "USD",
        "integration": "partner_s2s",
        "partner_id": line["params"]["partner_id"],
        "api_key_label": "default",
    }
    assert (line["tag_id"], line["event_id"], line["timestamp"]) == (
        "<YOUR_TAG_ID>",
        "evt_42",
        1748275200,
    )
    assert line["ip_address"] == "127.0.0.1"
    # The UA fields describe the body's user_agent (the end user's browser),
    # never the User-Agent of the partner's backend that made the request.
    assert (line["user_agent"], line["ua_browser"]) == (None, None)
