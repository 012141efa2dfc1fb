"""The README documents every setting."""

from pathlib import Path

import pytest

from app.settings import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_in_the_readme(setting) -> None:  # type: ignore[no-untyped-def]
    assert f"| `{setting.env}` |" in README


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
