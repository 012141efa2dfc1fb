"""Inlet's own processes, started the way the Procfile starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx

from app.settings import Settings
from tests.services import free_port, wait_for

INLET = str(Path(sys.executable).parent / "inlet")


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a child process with these settings; ``extra`` overrides any."""
    return {**os.environ, **settings.to_environ(), "PYTHONUNBUFFERED": "1", **extra}


def run_inlet(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """``inlet ARGS...`` as a real process (the installed entry point); its stdout.
    Fails unless it exits 0. In-process runs go through tests/cli_runner.py."""
    return subprocess.run(
        [INLET, *args], env=env, check=True, capture_output=True, text=True, timeout=timeout
    ).stdout


class InletProcess:
    """One `inlet ...` process in its own process group (so a kill takes its
    children, such as the worker's scheduler, with it, as a container's would)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [INLET, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, no goodbye: the process and its children die mid-whatever."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()

    def stop(self, timeout: float = 15) -> None:
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class WebProcess(InletProcess):
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        super().__init__(["web"], {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}, log_path)
        self.url = f"http://127.0.0.1:{self.port}"

        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"inlet web exited:\n{self.log()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=30, interval=0.1, message="inlet web to answer /healthz")


def start_worker(env: dict[str, str], log_path: Path) -> InletProcess:
    return InletProcess(["worker"], env, log_path)
