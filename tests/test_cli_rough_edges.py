"""The `inlet` command's rough edges (issue 11, item 9; item 8's job-id prefix):
--version, --json everywhere a list or a show is, header rows, help that is
never cut mid-sentence, and the path `make run` tells people to use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner, Result
from redis import Redis
from rq.registry import FailedJobRegistry

from app.cli import main
from app.cli.dev import inlet_command
from app.queue import make_queue
from app.settings import Settings
from tests.events import onside_event


def all_commands() -> Iterator[tuple[str, click.Command]]:
    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}".strip())

    return walk(main, "")


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"inlet {version('inlet')}\n"


@pytest.mark.parametrize("path", [path for path, _ in all_commands()] or [""])
def test_help_is_never_cut_mid_sentence(path: str) -> None:
    """A command's one-line help is its docstring's whole first paragraph, and the
    listing of its group shows it whole at 80 columns (click cuts at the first
    period and at the terminal's width, with "...")."""
    command = dict(all_commands())[path]
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert first_paragraph, f"`inlet {path}` has no help"
    assert command.get_short_help_str(limit=10_000) == first_paragraph
    result = CliRunner().invoke(main, [*path.split(), "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    listing = result.stdout.partition("Commands:")[2]
    assert "..." not in listing, listing


def test_lists_print_a_header_row(inlet: Callable[..., Result], settings: Settings) -> None:
    inlet("partners", "create", "acme")
    inlet("admin", "create", "support")
    expected = {
        ("partners", "list"): "name\tusername\trate_limit\tstatus\tcreated_at",
        ("keys", "list", "acme"): "key_id\tlabel\tstatus\tcreated_at",
        ("admin", "list"): "username\tcreated_at",
    }
    for args, header in expected.items():
        lines = inlet(*args).stdout.splitlines()
        assert lines[0] == header
        assert len(lines[1].split("\t")) == len(header.split("\t"))
        # --json stays one object per line, no header
        assert all(orjson.loads(line) for line in inlet(*args, "--json").stdout.splitlines())
    [support] = [orjson.loads(x) for x in inlet("admin", "list", "--json").stdout.splitlines()]
    assert support["username"] == "support" and "password" not in str(support)


def test_failed_show_takes_a_prefix_and_json(
    inlet: Callable[..., Result], failed_job: Callable[..., str]
) -> None:
    job_id = failed_job([onside_event(n) for n in range(3)])
    shown = orjson.loads(inlet("failed", "show", job_id[:8], "--json", "--events", "2").stdout)
    assert shown["job_id"] == job_id
    assert shown["attempts"] == 3 and "Traceback" in shown["traceback"]
    assert shown["verdict"]["kind"] == "transient" and shown["verdict"]["action"]
    assert [e["event_id"] for e in shown["first_events"]] == [
        onside_event(n)["event_id"] for n in range(2)
    ]
    assert len(shown["requests"]) == 1
    assert "no failed job 'zzz'" in inlet("failed", "show", "zzz", expect=1).stderr


def test_an_ambiguous_prefix_names_the_candidates(
    inlet: Callable[..., Result],
    failed_job: Callable[..., str],
    settings: Settings,
    redis: Redis,
) -> None:
    first = failed_job([onside_event(1)])
    # A second failed job whose id starts like the first (UUIDs rarely do).
    registry = FailedJobRegistry(queue=make_queue(settings, redis))
    # It differs from the first at the 10th character, so first[:10] stays unique.
    tenth = "1" if first[9] == "0" else "0"
    twin = first[:8] + f"-{tenth}000-4000-8000-000000000000"
    redis.zadd(registry.key, {twin: redis.zscore(registry.key, first) or 0})
    result = inlet("failed", "show", first[:8], expect=1).stderr
    assert "2 failed jobs start with" in result and first in result and twin in result
    assert "no failed job ''" in inlet("failed", "show", "", expect=1).stderr
    assert "2 failed jobs start with" in inlet("failed", "delete", first[:8], expect=1).stderr
    assert redis.zscore(registry.key, first) is not None, "an ambiguous delete deleted"
    assert f"Requeued {first}." in inlet("failed", "requeue", first[:10]).stdout


def test_failed_delete_takes_a_prefix(
    inlet: Callable[..., Result],
    failed_job: Callable[..., str],
    settings: Settings,
    redis: Redis,
) -> None:
    """As show and requeue do: `inlet failed list` prints ids people copy the start of."""
    job_id = failed_job([onside_event(1)])
    assert inlet("failed", "delete", job_id[:8]).stdout == f"Deleted {job_id}.\n"
    assert job_id not in FailedJobRegistry(queue=make_queue(settings, redis))
    assert "no failed job" in inlet("failed", "delete", job_id[:8], expect=1).stderr


def test_make_run_names_an_inlet_that_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the virtualenv's bin off PATH, `make run` prints its `inlet`'s path."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    command = inlet_command()
    assert command.endswith("bin/inlet") and os.access(Path(command), os.X_OK), command
    monkeypatch.setenv("PATH", str(Path(command).resolve().parent))
    assert inlet_command() == "inlet"
