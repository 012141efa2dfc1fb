"""Installed like an operator installs it: a wheel, outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import sqlalchemy as sa

from app.db import exists_on, metadata
from tests.services import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    # From a copy: setuptools builds in the source tree, and a build/ folder
    # left there would carry stale modules into the next wheel.
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("app", "worker", "alembic"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    # No build isolation: the venv's own setuptools builds it, with no network.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (wheel,) = out.glob("inlet-*.whl")
    return wheel


def test_the_wheel_holds_every_module_and_the_migrations(tmp_path: Path) -> None:
    """A package left out of pyproject's list would be missing from a regular install."""
    names = set(zipfile.ZipFile(build_wheel(tmp_path)).namelist())
    for folder in ("app", "worker"):
        for path in (ROOT / folder).rglob("*.py"):
            assert path.relative_to(ROOT).as_posix() in names
    for path in (ROOT / "alembic").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert "inlet_migrations/" + path.relative_to(ROOT / "alembic").as_posix() in names


def test_a_regular_install_migrates_a_database_outside_the_checkout(tmp_path: Path) -> None:
    """`pip install .` then `inlet migrate`, as the Procfile's release step runs it."""
    wheel = build_wheel(tmp_path)
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies come from this venv's site-packages (a path line, so its
    # .pth files, among them the editable install of the checkout, stay unread).
    Path(site, "inlet-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
        + ["--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "PATH": f"{target / 'bin'}:/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{elsewhere / 'inlet.db'}",
        "INLET_DATA_DIR": str(elsewhere / "data"),
        "INLET_SECRET_KEY": TEST_SECRET_KEY,
    }
    where = subprocess.run(
        [str(python), "-c", "import app; print(app.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site), f"the test must run the installed copy, not {where}"
    result = subprocess.run(
        [str(target / "bin" / "inlet"), "migrate"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(env["DATABASE_URL"])
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    expected = {t.name for t in metadata.sorted_tables if exists_on(t, engine.dialect.name)}
    assert tables >= expected | {"alembic_version"}
    assert not any(Path(elsewhere).glob("alembic*")), "migrations must come from the package"
