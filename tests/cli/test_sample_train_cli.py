"""`behaviorlens sample --train`: the sample, then one demo run trained in a detached process, never two.

The demo run uses the tiny model and BERT (``BEHAVIORLENS_DEMO_CONFIG``, the ``demo_config``
fixture) so that it trains in seconds; the process is real and trains the real sample.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.runs import background as B
from core.runs.records import list_runs, run_record
from core.store.workspace import Workspace

TRAIN_S = 300


@pytest.fixture()
def root(tmp_path: Path, demo_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh workspace folder; the demo config set; any training process left is killed afterwards."""
    monkeypatch.setenv(B.DEMO_CONFIG_ENV, str(demo_config))
    folder = tmp_path / "demo-ws"
    yield folder
    ws = Workspace(folder)
    for run_id in list_runs(ws)["run_id"] if len(list_runs(ws)) else []:
        if (ws.run_dir(run_id) / B.BACKGROUND_FILE).is_file():
            B.stop(ws, run_id, signal.SIGKILL)


def wait_done(ws: Workspace, run_id: str) -> str:
    deadline = time.monotonic() + TRAIN_S
    while (status := run_record(ws, run_id)["status"]) == "running":
        assert time.monotonic() < deadline, f"run {run_id} still training after {TRAIN_S}s"
        time.sleep(0.5)
    return status


def test_sample_train_starts_one_background_run_and_a_second_call_none(cli, root: Path) -> None:
    started = time.monotonic()
    first = cli("sample", "--train", "--json", workspace=root).json()
    assert time.monotonic() - started < 60  # returns at once: the training goes on in its own process
    assert first["dataset"] == "sample" and first["rows_accepted"] > 0  # ingested on the way
    run_id = first["train"]["run"]
    assert first["train"]["started"] is True and first["train"]["status"] == "running"
    assert run_id.startswith("sample-demo-")
    assert Path(first["train"]["log"]) == root / "runs" / run_id / "train.log"

    second = cli("sample", "--train", "--json", workspace=root).json()
    assert second == {"dataset": "sample", "existing": True, "train": {**first["train"], "started": False}}
    runs = cli("runs", "--json", workspace=root).json()
    assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "running")]

    ws = Workspace(root)
    assert wait_done(ws, run_id) == "done", (root / "runs" / run_id / "train.log").read_text()[-3000:]
    log, deadline = root / "runs" / run_id / "train.log", time.monotonic() + 60
    while f"run {run_id}: done" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # the status is recorded before the process prints its last line
    assert f"run {run_id}: done after 1 epoch(s)" in log.read_text()
    assert run_record(ws, run_id)["config"]["settings"]["model"]["d_model"] == 16  # the demo config's model

    third = cli("sample", "--train", workspace=root)
    assert third.code == 0, third.err
    assert third.out.splitlines() == [
        f"dataset 'sample' is in {ws.root}",
        f"run {run_id} of dataset 'sample' is trained (done): nothing started",
    ]
    assert [r["run_id"] for r in cli("runs", "--json", workspace=root).json()] == [run_id]


def test_a_bad_demo_config_exits_2_and_starts_nothing(cli, root: Path, tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"d_model": -1}}', encoding="utf-8")
    monkeypatch.setenv(B.DEMO_CONFIG_ENV, str(bad))
    got = cli("sample", "--train", workspace=root)
    assert got.code == 2
    assert got.err.startswith(f"behaviorlens: {B.DEMO_CONFIG_ENV}={bad}: setting d_model -1")
    assert list_runs(Workspace(root)).empty


def test_sample_without_train_starts_nothing(cli, root: Path) -> None:
    got = cli("sample", "--json", workspace=root).json()
    assert got["dataset"] == "sample" and "train" not in got
    assert list_runs(Workspace(root)).empty
