"""Raw uploads never outlive their use: a private copy per read, deleted after it; leftovers swept at app start."""

from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.store.uploads import upload_copy

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def leftover(workspace: Path, name: str, age_s: float) -> Path:
    """An upload folder as a session left it ``age_s`` seconds ago, holding a raw e-mail ID."""
    folder = workspace / "uploads" / name
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text("user_id,item_id\nalice@example.com,i1\n")
    past = time.time() - age_s
    os.utime(folder, (past, past))
    return folder


def test_app_start_sweeps_a_stale_upload_but_not_a_fresh_one(_isolated_workspace_env: Path) -> None:
    stale = leftover(_isolated_workspace_env, "crashed-session", age_s=2 * 3600)
    fresh = leftover(_isolated_workspace_env, "other-session", age_s=60)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert not stale.exists()
    assert (fresh / "log.csv").is_file()


def test_an_upload_copy_is_private_and_deleted_however_its_use_ends(tmp_path: Path) -> None:
    with upload_copy(tmp_path, "../my log.csv", io.BytesIO(b"user_id,item_id\n")) as path:
        assert path.read_bytes() == b"user_id,item_id\n" and path.name == "my_log.csv"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert {stat.S_IMODE(p.stat().st_mode) for p in (path.parent, path.parent.parent)} == {0o700}
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(RuntimeError), upload_copy(tmp_path, "x.csv", io.BytesIO(b"x")) as failed:
        raise RuntimeError("the ingest failed")
    assert not failed.parent.exists() and list((tmp_path / "uploads").iterdir()) == []
