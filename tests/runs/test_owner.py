"""core.runs.owner: who trains a run, its heartbeat, and when a run recorded running reads interrupted.

No training here: owners are this test's process, ended or live helper processes (``true``,
``sleep``), and owner records edited to stand for a reused pid or another host.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from core.runs import owner as O
from core.runs.lifecycle import delete_run
from core.runs.records import DONE, INTERRUPTED, RUNNING, list_runs, run_record, set_run
from core.store.files import save_json
from core.store.workspace import Workspace


def ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_live_process_owns_an_ended_or_reused_one_does_not(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    record = O.claim(folder, "r-1")
    assert O.owner_alive(folder) and O.owner_of(folder) == record
    O.claim(folder, "r-1", ended_pid())
    assert not O.owner_alive(folder)
    if not O.has_procfs():
        pytest.skip("the start time of a process is read from /proc")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        O.claim(folder, "r-1", sleeper.pid)
        assert O.owner_alive(folder)
        save_json(folder / O.OWNER_FILE, {**O.owner_of(folder), "start": "1"})  # the pid, reused by another process
        assert not O.owner_alive(folder)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_owner_on_another_host_lives_by_its_heartbeat(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    now = time.time()
    save_json(folder / O.OWNER_FILE, {"run_id": "r", "pid": 1, "host": "another-host", "start": "5", "at": now - 600})
    assert not O.owner_alive(folder)  # claimed long ago, no heartbeat since
    save_json(folder / O.HEARTBEAT_FILE, {"pid": 1, "at": now - 2})
    assert O.owner_alive(folder)
    assert not O.owner_alive(folder, now=now + O.STALE_SECONDS)  # the heartbeat stopped a minute ago
    save_json(folder / O.HEARTBEAT_FILE, {"pid": 2, "at": now})  # another process's heartbeat does not count
    assert not O.owner_alive(folder)


def test_owning_beats_while_the_block_runs_then_releases_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(O, "HEARTBEAT_SECONDS", 0.05)
    folder = tmp_path / "run"
    with O.owning(folder, "r"):
        first = (folder / O.HEARTBEAT_FILE).read_text()
        with O.owning(folder, "r"):  # nested: one heartbeat thread
            assert sum(t.name == "heartbeat-r" for t in threading.enumerate()) == 1
        time.sleep(0.3)
        assert (folder / O.HEARTBEAT_FILE).read_text() != first  # rewritten by the thread
        assert O.owner_alive(folder)
    assert O.owner_of(folder) is None and not (folder / O.HEARTBEAT_FILE).exists()
    deadline = time.monotonic() + 5
    while any(t.name == "heartbeat-r" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the heartbeat thread outlived its block"
        time.sleep(0.05)


def test_a_running_run_reads_interrupted_without_a_live_owner(ws: Workspace) -> None:
    config = {"dataset": "d", "settings": {}}
    O.claim(ws.run_dir("d-live"), "d-live")
    set_run(ws, "d-live", "d", RUNNING, config, None)
    O.claim(ws.run_dir("d-dead"), "d-dead", ended_pid())
    set_run(ws, "d-dead", "d", RUNNING, config, None)
    set_run(ws, "d-unowned", "d", RUNNING, config, None)
    ws.run_dir("d-garbled").mkdir(parents=True)
    (ws.run_dir("d-garbled") / O.OWNER_FILE).write_text("{not json", encoding="utf-8")
    set_run(ws, "d-garbled", "d", RUNNING, config, None)
    set_run(ws, "d-done", "d", DONE, config, {"test": {"HR@10": 1.0}})
    statuses = list_runs(ws).set_index("run_id")["status"].to_dict()
    assert statuses == {
        "d-live": RUNNING,
        "d-dead": INTERRUPTED,
        "d-unowned": INTERRUPTED,
        "d-garbled": INTERRUPTED,
        "d-done": DONE,
    }
    assert {r: run_record(ws, r)["status"] for r in statuses} == statuses
    assert ws.query("SELECT count(*) AS n FROM runs WHERE status = 'running'")["n"].iloc[0] == 4  # derived, not stored
    delete_run(ws, "d-garbled")  # an unreadable owner record does not block a deletion
    assert "d-garbled" not in list_runs(ws)["run_id"].tolist() and not ws.run_dir("d-garbled").exists()


def test_a_process_still_inside_exec_is_waited_for_not_called_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a worker is started its command line reads empty until exec has set its arguments: a
    check in that moment must wait for them, not report the worker gone (it read "interrupted" once)."""
    proc = tmp_path / "4242"
    proc.mkdir()
    (proc / "stat").write_text("4242 (python3) R 1 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0")
    (proc / "cmdline").write_bytes(b"")
    monkeypatch.setattr(O, "_PROC", tmp_path)
    monkeypatch.setattr(O, "has_procfs", lambda: True)
    later = threading.Timer(0.05, lambda: (proc / "cmdline").write_bytes(b"python3\0-m\0worker\0run-7\0"))
    later.start()
    try:
        assert O.process_alive(4242, "run-7")
    finally:
        later.join()
    assert not O.process_alive(4242, "run-8")
    (proc / "cmdline").write_bytes(b"")
    assert not O.process_alive(4242, "run-7")  # never filled in: after half a second it counts as gone
