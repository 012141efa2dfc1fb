"""``python -m bench.serve FACTORY``: serve an app factory exactly as ``inlet web`` does."""

from __future__ import annotations

import sys

import uvicorn

from app.cli.serve import uvicorn_options
from app.settings import Settings

if __name__ == "__main__":
    uvicorn.run(sys.argv[1], factory=True, **uvicorn_options(Settings.from_env()))
