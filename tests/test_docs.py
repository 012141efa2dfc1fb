"""The documentation: the README's two commands, a settings table generated from SETTINGS."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SETTINGS, Setting, markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETTINGS_DOC = ROOT / "docs" / "settings.md"


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_documented(setting: Setting) -> None:
    assert f"| `{setting.env}` |" in SETTINGS_DOC.read_text()


def test_settings_doc_is_generated_from_settings() -> None:
    assert SETTINGS_DOC.read_text() == markdown(), (
        "docs/settings.md is stale: run "
        "`.venv/bin/python -m app.settings --markdown > docs/settings.md`"
    )


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= 250
