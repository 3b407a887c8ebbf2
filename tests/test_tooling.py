"""The project's own tooling, run as part of the suite: ruff (lint and format) over the tree, mypy over core/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_ruff_lint_passes() -> None:
    out = _run("ruff", "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    out = _run("ruff", "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_passes_on_core() -> None:
    out = _run("mypy")  # files, strictness: [tool.mypy] in pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr
