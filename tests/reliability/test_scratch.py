"""Scratch folders that a killed process leaves in the temp folder (raw rows) are removed by the next sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.store.scratch import LEGACY_STALE_S, scratch_dir, sweep_scratch

REPO = Path(__file__).resolve().parents[2]


def _killed_child_folder(tmp: Path) -> Path:
    """A process makes a scratch folder, writes a raw row into it, and is SIGKILLed: the folder it leaves."""
    code = (
        "import os, signal, sys; from core.store.scratch import scratch_dir; "
        "d = scratch_dir('ingest'); (d / 'rows.csv').write_text('alice@example.com,item1\\n'); "
        "print(d, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL
    folder = Path(out.stdout.strip())
    assert folder.parent == tmp and (folder / "rows.csv").is_file()
    return folder


def test_a_killed_process_scratch_folder_is_swept(tmp_path: Path) -> None:
    left = _killed_child_folder(tmp_path)
    assert sweep_scratch(tmp_path) == [left]
    assert not left.exists()
    assert sweep_scratch(tmp_path) == []  # idempotent


def test_a_live_process_folder_and_foreign_names_are_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = scratch_dir("screen")  # this process is alive
    other = tmp_path / "someone-else"
    other.mkdir()
    assert sweep_scratch(tmp_path) == []
    assert mine.is_dir() and other.is_dir()
    assert mine.stat().st_mode & 0o777 == 0o700


def test_an_earlier_release_upload_copy_goes_after_an_hour(tmp_path: Path) -> None:
    old, fresh = tmp_path / "behaviorlens-upload-abc123", tmp_path / "behaviorlens-upload-def456"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "events.csv").write_text("user,item\nalice@example.com,1\n")
    hours_ago = time.time() - LEGACY_STALE_S - 60
    os.utime(old, (hours_ago, hours_ago))
    assert sweep_scratch(tmp_path) == [old]
    assert not old.exists() and fresh.is_dir()
