"""Shared fixtures: every test gets its own workspace; nothing touches ./workspace or the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_workspace_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point BEHAVIORLENS_WORKSPACE at a fresh folder for every test."""
    root = tmp_path / "workspace"
    monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(root))
    return root


@pytest.fixture()
def ws(_isolated_workspace_env: Path):
    """A real, empty DuckDB workspace in a temporary folder."""
    from core.store.workspace import Workspace

    return Workspace(_isolated_workspace_env)


@pytest.fixture()
def write_file(tmp_path: Path):
    """Write bytes or text (UTF-8) to a file under tmp_path and return its path."""

    def write(name: str, content: bytes | str) -> Path:
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write
