"""Placeholder until the search and refusal log land (merged from the backend branch)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from app.admin import gather
from app.state import AppState


def dashboard_reads(state: AppState) -> dict[str, gather.Read]:
    return {}


def dashboard_sections(found: dict[str, Any]) -> list[str]:
    return []


routes: list[Route] = []
