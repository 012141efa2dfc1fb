"""The documentation: a short README, generated settings, links and paths that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import errors
from app.onside.validate import MAX_EVENT_NAME_CHARS
from app.settings import SETTINGS, Setting, markdown
from app.thrad.validate import MAX_KEY_CHARS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETTINGS_DOC = ROOT / "docs" / "settings.md"
# Every markdown file a reader reaches from the README.
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")]
)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# A repository path in a code span: `app/onside/validate.py`, `bench/`, `tests/test_faults.py`.
REPO_PATH = re.compile(r"^(?:app|worker|tests|bench|alembic|docs)/(?:[\w.\-]+/?)*$")


def prose(text: str) -> str:
    """The text without its fenced code blocks (a curl's `-u "$A:$B"` is no link)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.\-]*:", target, re.I)  # http:, https:, mailto:
    ]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


# The README is a front door: read in five minutes, the rest one link away.


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= 250


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def test_readme_links_every_document() -> None:
    targets = relative_links(ROOT / "README.md")
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in targets}
    for document in DOCUMENTS:
        if document != ROOT / "README.md":
            assert document.resolve() in linked, f"README.md does not link {name(document)}"


def code_map_lines() -> list[tuple[str, str]]:
    """Each line of the README's map as (its last folder, the words after it)."""
    section = README.split("## The code", 1)[1]
    block = re.search(r"^```\n(.*?)^```", section, re.M | re.S)
    assert block, "the README's code map is a fenced block under ## The code"
    lines: list[tuple[str, str]] = []
    parents: dict[int, str] = {}
    for line in block.group(1).splitlines():
        depth = len(line) - len(line.lstrip())
        # Each line starts with its folder(s), `tests/  bench/  docs/` with several.
        words = line.split()
        folders = 0
        for word in words:
            if not word.endswith("/"):
                break
            path = (parents[depth - 2] if depth else "") + word
            parents[depth] = path
            lines.append((path, ""))
            folders += 1
        lines[-1] = (lines[-1][0], " ".join(words[folders:]))
    return lines


def code_map() -> list[str]:
    """The folders the README's map names: `app/`, `app/onside/`, ..., `tests/`."""
    return [folder for folder, _ in code_map_lines()]


def test_code_map_names_real_folders() -> None:
    folders = code_map()
    assert "app/onside/" in folders and "worker/" in folders and "docs/" in folders
    assert [f for f in folders if not (ROOT / f).is_dir()] == []


def test_code_map_names_files_in_their_folder() -> None:
    """`(policy.py)` on a folder's line is that folder's file, not a neighbour's."""
    named = [
        f"{folder}{file}"
        for folder, words in code_map_lines()
        for file in re.findall(r"[\w.]+\.py\b", words)
    ]
    assert "app/policy.py" in named and "worker/jobs.py" in named
    assert [path for path in named if not (ROOT / path).is_file()] == []


def test_code_map_names_every_package() -> None:
    packages = {
        f"{init.parent.relative_to(ROOT)}/"
        for top in ("app", "worker")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert packages - set(code_map()) == set(), "add the new folder to the README's map"


# Settings: docs/settings.md is generated from SETTINGS and documents each one.


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_documented(setting: Setting) -> None:
    assert f"| `{setting.env}` |" in SETTINGS_DOC.read_text()


def test_settings_doc_is_generated_from_settings() -> None:
    assert SETTINGS_DOC.read_text() == markdown(), (
        "docs/settings.md is stale: run "
        "`.venv/bin/python -m app.settings --markdown > docs/settings.md`"
    )


def test_settings_table_has_one_row_per_setting() -> None:
    rows = [line for line in markdown().splitlines() if line.startswith("| `")]
    assert len(rows) == len(SETTINGS)
    for row in rows:
        # An unescaped | in a help text would split the row into more cells.
        assert len(re.findall(r"(?<!\\)\|", row)) == 4, row


# Links and paths: everything the documents point at exists.


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_relative_links_resolve(document: Path) -> None:
    links = relative_links(document)
    broken = []
    for target in links:
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {name(linked)}")
    assert not broken, f"{name(document)}: " + "; ".join(broken)


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_repository_paths_exist(document: Path) -> None:
    paths = [
        span for span in CODE_SPAN.findall(prose(document.read_text())) if REPO_PATH.match(span)
    ]
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"{name(document)} names paths that do not exist: {missing}"


def test_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    """The checks above would pass vacuously if they found no links or headings."""
    assert "docs/settings.md" in relative_links(ROOT / "README.md")
    assert "security-and-limits" in anchors(ROOT / "README.md")
    assert slug("4. A partner lost data, or sent to the wrong partner") == (
        "4-a-partner-lost-data-or-sent-to-the-wrong-partner"
    )
    assert slug("The `inlet` command") == "the-inlet-command"
    assert slug("Health, metrics and logs") == "health-metrics-and-logs"
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](missing.md) [b](#title) [c](#nowhere)\n\n```\n[d](x.md)\n```\n")
    assert relative_links(page) == ["missing.md", "#title", "#nowhere"]
    assert anchors(page) == {"title"}


# What the API promises: docs/api.md and the limits table say what the code does.


def error_codes() -> set[str]:
    classes: list[type[errors.ApiError]] = [errors.ApiError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    return {cls.code for cls in classes}


def test_api_doc_lists_every_error_code() -> None:
    codes = error_codes()
    assert {"invalid_request", "not_found", "method_not_allowed", "bad_request"} <= codes
    listed = set(CODE_SPAN.findall((ROOT / "docs" / "api.md").read_text()))
    assert codes - listed == set(), "docs/api.md: add these codes to the list of error codes"


def test_field_length_limits_are_documented() -> None:
    limits = (ROOT / "docs" / "security.md").read_text().split("## Limits", 1)[1]
    limits = limits.split("\n## ", 1)[0]
    api = (ROOT / "docs" / "api.md").read_text()
    for field, value, source in [
        ("Onside `event_name`", MAX_EVENT_NAME_CHARS, "app/onside/validate.py"),
        ("Thrad `tag_id` and `event_id`", MAX_KEY_CHARS, "app/thrad/validate.py"),
    ]:
        [row] = [line for line in limits.splitlines() if line.startswith(f"| {field}")]
        assert f"| {value} characters" in row and f"`{source}`" in row, row
        assert f"at most {value}" in " ".join(api.split()), f"docs/api.md: {field}"
