"""core.runs.background: a run trained in a detached process, found again, and replaced once its process is gone.

Real processes on a tiny generated dataset with the tiny model and BERT; the full training of a
background run (``behaviorlens sample --train`` until done) is tests/cli/test_sample_train_cli.py, killing,
resuming and deleting runs is tests/reliability/test_run_lifecycle.py.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import DataError, NotFoundError, RunBusyError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.runs import background as B
from core.runs import watch as W
from core.runs.owner import claim
from core.runs.records import FAILED, INTERRUPTED, RUNNING, list_runs, run_record, set_run
from core.store.workspace import Workspace

DATASET = "tiny"
GONE_S = 30


@pytest.fixture()
def tiny_ws(ws: Workspace, training_data_dir: Path) -> Iterator[Workspace]:
    """The test's workspace with the training dataset; every background process left is killed afterwards."""
    ingest(ws, training_data_dir / "events.csv", training_data_dir / "items.csv", IngestOptions(name=DATASET))
    yield ws
    for run_id in list_runs(ws)["run_id"] if len(list_runs(ws)) else []:
        if (ws.run_dir(run_id) / B.BACKGROUND_FILE).is_file() and B.stop(ws, run_id, signal.SIGKILL):
            wait_gone(ws, run_id)


def settings(encoder: Path) -> dict[str, Any]:
    return {"encoder": str(encoder), "device": "cpu", "model": dict(TINY_MODEL), "train": {"epochs": 1}}


def wait_gone(ws: Workspace, run_id: str) -> None:
    deadline = time.monotonic() + GONE_S
    while B.process_alive(B.pid_of(ws, run_id), run_id):
        assert time.monotonic() < deadline, f"the process of {run_id} is still there after {GONE_S}s"
        time.sleep(0.1)


def test_one_run_starts_a_second_call_finds_it_and_a_gone_process_is_replaced(
    tiny_ws: Workspace, tiny_bert_dir: Path
) -> None:
    first = B.ensure_training(tiny_ws, DATASET, settings(tiny_bert_dir))
    assert first.started and first.status == RUNNING and first.run_id.startswith(f"{DATASET}-demo-")
    assert run_record(tiny_ws, first.run_id)["status"] == RUNNING  # recorded before the process has started
    assert first.log == tiny_ws.run_dir(first.run_id) / B.LOG_FILE and first.log.is_file()
    assert B.process_alive(B.pid_of(tiny_ws, first.run_id), first.run_id)
    state = W.training_state(tiny_ws, DATASET)
    assert state is not None and (state.run_id, state.status, state.background) == (first.run_id, RUNNING, True)
    assert state.demo

    second = B.ensure_training(tiny_ws, DATASET, settings(tiny_bert_dir))
    assert (second.run_id, second.started, second.status) == (first.run_id, False, RUNNING)
    assert len(list_runs(tiny_ws)) == 1

    assert B.stop(tiny_ws, first.run_id, signal.SIGKILL)  # killed: the run stays recorded running
    wait_gone(tiny_ws, first.run_id)
    state = W.training_state(tiny_ws, DATASET)
    assert state is not None and (state.run_id, state.status) == (first.run_id, INTERRUPTED)
    assert not B.stop(tiny_ws, first.run_id)

    third = B.ensure_training(tiny_ws, DATASET, settings(tiny_bert_dir))
    assert third.started and third.run_id != first.run_id
    assert run_record(tiny_ws, first.run_id)["status"] == INTERRUPTED  # kept, resumable
    state = W.training_state(tiny_ws, DATASET)
    assert state is not None and (state.run_id, state.status) == (third.run_id, RUNNING)


def test_a_run_started_elsewhere_counts_as_training_while_its_owner_lives(tiny_ws: Workspace) -> None:
    """A running run of another process (`behaviorlens train`, a script): training while its owner lives."""
    claim(tiny_ws.run_dir("tiny-elsewhere"), "tiny-elsewhere")  # this test's process: alive
    set_run(
        tiny_ws, "tiny-elsewhere", DATASET, RUNNING, {"dataset": DATASET, "settings": {"train": {"epochs": 3}}}, None
    )
    launch = B.ensure_training(tiny_ws, DATASET, {})
    assert (launch.run_id, launch.started, launch.log) == ("tiny-elsewhere", False, None)
    state = W.training_state(tiny_ws, DATASET)
    assert state is not None and (state.status, state.background, state.demo) == (RUNNING, False, False)
    assert state.progress == {"status": RUNNING, "phase": "starting", "epoch": 0, "epochs": 3, "fraction": 0.0}
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(DataError, match="not a run recorded for a worker"):
            B.train_recorded(tiny_ws, "tiny-elsewhere")
    finally:
        signal.signal(signal.SIGTERM, handler)
    claim(tiny_ws.run_dir("tiny-elsewhere"), "tiny-elsewhere")  # train_recorded released this process's claim
    with pytest.raises(RunBusyError, match="trained by this process"):
        B.stop(tiny_ws, "tiny-elsewhere")


def test_a_running_run_without_a_live_owner_reads_interrupted_and_is_replaced(tiny_ws: Workspace) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    claim(tiny_ws.run_dir("tiny-dead"), "tiny-dead", gone.pid)  # a process that has ended
    set_run(tiny_ws, "tiny-dead", DATASET, RUNNING, {"dataset": DATASET, "settings": {}}, None)
    set_run(tiny_ws, "tiny-unowned", DATASET, RUNNING, {"dataset": DATASET, "settings": {}}, None)  # no owner.json
    assert run_record(tiny_ws, "tiny-dead")["status"] == INTERRUPTED
    assert set(list_runs(tiny_ws)["status"]) == {INTERRUPTED}
    state = W.training_state(tiny_ws, DATASET)
    assert state is not None and state.status == INTERRUPTED
    launch = B.ensure_training(tiny_ws, DATASET, {"encoder": "/no/such/encoder", "device": "cpu"})
    assert launch.started and launch.run_id not in ("tiny-dead", "tiny-unowned")


def test_a_dead_process_is_not_alive() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert B.process_alive(proc.pid, "30")  # its command line names the run: here the argument
        assert not B.process_alive(proc.pid, "another-run")  # a reused pid
    finally:
        proc.kill()
        proc.wait()
    assert not B.process_alive(proc.pid, "30")


def test_bad_input_is_refused_before_anything_is_recorded(tiny_ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        B.ensure_training(tiny_ws, "nope", {})
    with pytest.raises(DataError, match="epochs"):
        B.ensure_training(tiny_ws, DATASET, {"train": {"epochs": 0}})
    assert list_runs(tiny_ws).empty


def test_demo_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(B.DEMO_CONFIG_ENV, raising=False)
    assert B.demo_settings() == B.DEMO_SETTINGS
    monkeypatch.setenv(B.DEMO_CONFIG_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="BEHAVIORLENS_DEMO_CONFIG=.*missing.json: no such file"):
        B.demo_settings()
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"epochs": "many"}}', encoding="utf-8")
    monkeypatch.setenv(B.DEMO_CONFIG_ENV, str(bad))
    with pytest.raises(DataError, match="bad.json: setting epochs 'many': expected a whole number"):
        B.demo_settings()
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="must hold a JSON object"):
        B.demo_settings()
    good = tmp_path / "good.json"
    good.write_text('{"device": "cpu", "train": {"epochs": 2}}', encoding="utf-8")
    monkeypatch.setenv(B.DEMO_CONFIG_ENV, str(good))
    assert B.demo_settings() == {"device": "cpu", "train": {"epochs": 2}}


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ({"phase": "starting"}, (0.0, "Loading the data and the text encoder…")),
        ({"phase": "encoding", "encode_done": 100, "encode_total": 400}, (0.25, "Encoding the item texts: 100 of 400")),
        (
            {"phase": "training", "epoch": 2, "epochs": 8, "step": 3, "steps": 25, "fraction": 0.16},
            (0.16, "Epoch 2 of 8 (step 3 of 25)"),
        ),
        ({"phase": "training", "epoch": 2, "epochs": 8, "fraction": 0.25}, (0.25, "Epoch 2 of 8 done")),
        (
            {"phase": "finishing", "epoch": 8, "epochs": 8, "fraction": 1.0},
            (1.0, "Epoch 8 of 8: evaluating and saving the model…"),
        ),
    ],
)
def test_progress_in_words(progress: dict[str, Any], expected: tuple[float, str]) -> None:
    assert W.progress_text(progress)[1] == expected[1]
    assert W.progress_text(progress)[0] == pytest.approx(expected[0])


def test_a_failed_background_run_is_recorded_failed_with_its_message_in_the_log(tiny_ws: Workspace) -> None:
    launch = B.ensure_training(tiny_ws, DATASET, {"encoder": "/no/such/encoder", "device": "cpu"})
    deadline = time.monotonic() + 120
    while run_record(tiny_ws, launch.run_id)["status"] == RUNNING:
        assert time.monotonic() < deadline, "the failing run is still recorded running"
        time.sleep(0.2)
    wait_gone(tiny_ws, launch.run_id)
    assert run_record(tiny_ws, launch.run_id)["status"] == FAILED
    log = launch.log.read_text()
    assert f"behaviorlens: training run {launch.run_id} failed: " in log and "/no/such/encoder" in log, log
    state = W.training_state(tiny_ws, DATASET)
    assert state is not None and (state.run_id, state.status, state.log) == (launch.run_id, FAILED, launch.log)
    again = B.ensure_training(tiny_ws, DATASET, {"encoder": "/no/such/encoder", "device": "cpu"})
    assert again.started and again.run_id != launch.run_id  # a failed run does not stop the next try
