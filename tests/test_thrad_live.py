"""The reference's curl example, verbatim, run by the real curl against a live ``inlet web``.

The only change to the command is the host: Thrad's production address
becomes the uvicorn process the test starts. The key comes from the CLI.
curl's status line comes from a .curlrc (``write-out``), so the command
itself stays as the reference prints it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from app.settings import Settings
from tests.events import THRAD_REFERENCE_BODY
from tests.processes import WebProcess, process_env, run_inlet

REFERENCE_CURL = f"""curl -X POST https://events.thrad.ai/api/collect \\
  -H "Authorization: Bearer $THRAD_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{THRAD_REFERENCE_BODY}'
"""


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return process_env(settings, INLET_LOG_LEVEL="WARNING")


@pytest.fixture
def web(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``inlet web`` as its own process; yields its base URL."""
    process = WebProcess(env, tmp_path / "web.log")
    try:
        yield process.url
    finally:
        process.stop()


def test_reference_curl_example_verbatim_against_live_web(
    web: str, env: dict[str, str], tmp_path: Path, drain: Callable[..., None]
) -> None:
    api_key = orjson.loads(run_inlet(env, "partners", "create", "acme", "--json"))["api_key"]
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
    exported = run_inlet(env, "events", "export", "--partner", "acme").splitlines()
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
