"""Fixtures of the reliability tests: one tiny trained run, copied afresh into each test's own workspace."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_support import RunCopy  # tests/reliability/reliability_support.py


@pytest.fixture(scope="session")
def trained(tiny_run: Callable[..., object], tmp_path_factory: pytest.TempPathFactory) -> RunCopy:
    """The tiny run, trained once for every reliability test (never modified: tests take :func:`run_copy`)."""
    run = tiny_run(tmp_path_factory.mktemp("reliability-run"))
    return RunCopy(run.root, run.run_id, run.user)  # type: ignore[attr-defined]


@pytest.fixture()
def run_copy(trained: RunCopy, tmp_path: Path) -> RunCopy:
    """A copy of the trained workspace (database, key, run folder) that the test may damage."""
    root = tmp_path / "copy"
    shutil.copytree(trained.root, root)
    return RunCopy(root, trained.run_id, trained.user)
