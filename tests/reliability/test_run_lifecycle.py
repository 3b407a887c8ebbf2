"""Fault injection on the run lifecycle: real worker processes killed with SIGKILL, resumed, deleted, raced.

Every training here is the real detached worker (``python -m core.cli train-background``, started by
:func:`core.runs.background.start_training` as the Train page starts it) on a tiny generated dataset
(40 users, 30 items) with the tiny model and BERT on the CPU. A killed run must read ``interrupted``
everywhere, list without error, resume (from scratch when it had no checkpoint yet) and delete; a run
whose process lives must refuse a resume and a delete without ``--force``; two trainings at once with
one seed must give bit-identical results, equal to one trained alone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import RunBusyError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.runs import background as B
from core.runs.lifecycle import LIVE_FILE
from core.runs.owner import HEARTBEAT_FILE, owner_alive
from core.runs.records import DONE, INTERRUPTED, RUNNING, list_runs, run_record
from core.runs.watch import has_checkpoint, live_snapshot, training_state
from core.store.files import load_json
from core.store.run_folder import CONFIG_FILE, STATE_JSON
from core.store.workspace import Workspace

DATASET = "tiny"
WAIT_S = 240  # the longest a tiny worker may take on a busy machine


@pytest.fixture()
def tiny_ws(ws: Workspace, training_data_dir: Path) -> Iterator[Workspace]:
    """The test's workspace with the training dataset; every worker left is killed afterwards."""
    ingest(ws, training_data_dir / "events.csv", training_data_dir / "items.csv", IngestOptions(name=DATASET))
    yield ws
    for run_id in list_runs(ws)["run_id"] if len(list_runs(ws)) else []:
        if B.stop(ws, run_id, signal.SIGKILL):
            wait_for(lambda r=run_id: not owner_alive(ws.run_dir(r)), f"the worker of {run_id} to end")


def tiny(encoder: Path, epochs: int, seed: int = 0) -> dict[str, Any]:
    train = {"epochs": epochs, "batch_size": 32, "threads": 1, "seed": seed, "patience": 1000}
    return {"encoder": str(encoder), "device": "cpu", "model": dict(TINY_MODEL), "train": train}


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT_S, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(every)


def kill(ws: Workspace, run_id: str) -> None:
    """SIGKILL the run's worker (its whole process group) and wait until it is gone."""
    pid = B.pid_of(ws, run_id)
    assert pid is not None and owner_alive(ws.run_dir(run_id))
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not owner_alive(ws.run_dir(run_id)), f"killed worker {pid} to end", 30)


def wait_done(ws: Workspace, run_id: str) -> str:
    wait_for(lambda: run_record(ws, run_id)["status"] != RUNNING, f"run {run_id} to end", every=0.2)
    return str(run_record(ws, run_id)["status"])


def log(ws: Workspace, run_id: str) -> str:
    return (ws.run_dir(run_id) / B.LOG_FILE).read_text(encoding="utf-8")[-3000:]


def listed(cli, ws: Workspace, run_id: str) -> str:
    """The run's status in `behaviorlens runs --json`, after checking that `runs` exits 0 and names it."""
    text = cli("runs", workspace=ws.root)
    assert text.code == 0 and run_id in text.out, text.err
    rows = {row["run_id"]: row for row in cli("runs", "--json", workspace=ws.root).json()}
    return str(rows[run_id]["status"])


def epochs_printed(err: str) -> list[int]:
    """The epochs `behaviorlens train` reported on stderr (``epoch N: loss ...``)."""
    return [int(line.split(":")[0].split()[1]) for line in err.splitlines() if line.startswith("epoch ")]


def test_a_run_killed_after_a_checkpoint_reads_interrupted_then_resumes_and_deletes(
    tiny_ws: Workspace, tiny_bert_dir: Path, cli
) -> None:
    epochs = 12
    run_id = B.start_training(tiny_ws, DATASET, tiny(tiny_bert_dir, epochs)).run_id
    folder = tiny_ws.run_dir(run_id)
    wait_for(lambda: (folder / STATE_JSON).is_file(), "the first checkpoint", every=0.005)
    kill(tiny_ws, run_id)
    saved = int(load_json(folder / STATE_JSON)["epoch"])
    assert 1 <= saved < epochs, f"killed after epoch {saved} of {epochs}: too late to test a resume"

    assert run_record(tiny_ws, run_id)["status"] == INTERRUPTED  # stored running, its process gone
    assert list_runs(tiny_ws).set_index("run_id").loc[run_id, "status"] == INTERRUPTED
    assert listed(cli, tiny_ws, run_id) == INTERRUPTED
    assert live_snapshot(tiny_ws, run_id)["status"] == INTERRUPTED  # the Train page's live panel
    state = training_state(tiny_ws, DATASET)  # the analysis pages' waiting panel
    assert state is not None and (state.run_id, state.status) == (run_id, INTERRUPTED)
    assert has_checkpoint(tiny_ws, run_id)

    resumed = cli("train", "--resume", run_id, workspace=tiny_ws.root)
    assert resumed.code == 0, resumed.err
    assert epochs_printed(resumed.err)[0] == saved + 1  # from the checkpoint, not from scratch
    assert epochs_printed(resumed.err)[-1] == epochs
    record = run_record(tiny_ws, run_id)
    assert record["status"] == DONE and record["metrics"]["test"]["NDCG@10"] is not None
    assert listed(cli, tiny_ws, run_id) == DONE

    gone = cli("runs", "delete", run_id, "--json", workspace=tiny_ws.root).json()
    assert gone == {"run": run_id, "folder": str(folder), "stopped": None}
    assert not folder.exists() and cli("runs", "--json", workspace=tiny_ws.root).json() == []
    again = cli("runs", "delete", run_id, workspace=tiny_ws.root)
    assert again.code == 1 and f"no run {run_id!r}" in again.err and "Traceback" not in again.err


def test_a_run_killed_before_its_first_checkpoint_restarts_from_scratch(
    tiny_ws: Workspace, tiny_bert_dir: Path, cli
) -> None:
    run_id = B.start_training(tiny_ws, DATASET, tiny(tiny_bert_dir, 2)).run_id
    folder = tiny_ws.run_dir(run_id)
    wait_for(lambda: (folder / HEARTBEAT_FILE).is_file(), "the worker's heartbeat", every=0.005)
    kill(tiny_ws, run_id)  # loading the data and the encoder: no epoch has ended
    assert not (folder / STATE_JSON).exists(), log(tiny_ws, run_id)

    assert listed(cli, tiny_ws, run_id) == INTERRUPTED
    assert not has_checkpoint(tiny_ws, run_id)
    resumed = cli("train", "--resume", run_id, workspace=tiny_ws.root)
    assert resumed.code == 0, resumed.err
    assert epochs_printed(resumed.err) == [1, 2]  # from scratch, with the recorded settings
    assert f"run {run_id}: test" in resumed.out  # the same run ID
    record = run_record(tiny_ws, run_id)
    assert record["status"] == DONE and record["config"]["settings"]["train"]["epochs"] == 2
    assert list_runs(tiny_ws)["run_id"].tolist() == [run_id]


def test_a_live_run_refuses_resume_and_delete_until_forced(tiny_ws: Workspace, tiny_bert_dir: Path, cli) -> None:
    run_id = B.start_training(tiny_ws, DATASET, tiny(tiny_bert_dir, 500)).run_id
    folder = tiny_ws.run_dir(run_id)
    wait_for(lambda: (folder / LIVE_FILE).is_file(), "the worker to start")
    pid = B.pid_of(tiny_ws, run_id)

    resume = cli("train", "--resume", run_id, workspace=tiny_ws.root)
    assert resume.code == 2 and f"run {run_id} is still training (process {pid} on host " in resume.err, resume.err
    with pytest.raises(RunBusyError, match="still training"):
        B.resume_training(tiny_ws, run_id)  # the Train page's Resume
    delete = cli("runs", "delete", run_id, workspace=tiny_ws.root)
    assert delete.code == 2 and "--force" in delete.err and "Traceback" not in delete.err, delete.err
    assert run_record(tiny_ws, run_id)["status"] == RUNNING and folder.is_dir() and owner_alive(folder)

    forced = cli("runs", "delete", run_id, "--force", workspace=tiny_ws.root)
    assert forced.code == 0, forced.err
    assert forced.out.strip() == f"deleted run {run_id} and its folder {folder} (its process {pid} was killed first)"
    assert not B.process_alive(pid, run_id) and not folder.exists()
    assert cli("runs", "--json", workspace=tiny_ws.root).json() == []


def test_two_trainings_at_once_are_bit_identical_and_equal_to_one_alone(
    tiny_ws: Workspace, tiny_bert_dir: Path
) -> None:
    settings = tiny(tiny_bert_dir, 2, seed=0)
    pair = [B.start_training(tiny_ws, DATASET, settings).run_id for _ in range(2)]
    assert [wait_done(tiny_ws, r) for r in pair] == [DONE, DONE], [log(tiny_ws, r) for r in pair]
    alone = B.start_training(tiny_ws, DATASET, settings).run_id
    assert wait_done(tiny_ws, alone) == DONE, log(tiny_ws, alone)

    spans = [load_json(tiny_ws.run_dir(r) / LIVE_FILE) for r in pair]
    assert spans[0]["started_at"] < spans[1]["finished_at"] and spans[1]["started_at"] < spans[0]["finished_at"]
    results = [
        (run_record(tiny_ws, r)["metrics"], load_json(tiny_ws.run_dir(r) / CONFIG_FILE)["weights_sha256"])
        for r in (*pair, alone)
    ]
    assert results[0] == results[1] == results[2]  # the same metrics to the bit, the same weights


def test_runs_lists_and_delete_of_a_missing_run_is_a_clear_error(ws: Workspace, cli) -> None:
    assert cli("runs", workspace=ws.root).out.strip() == "no runs"
    assert cli("runs", "--json", workspace=ws.root).json() == []
    missing = cli("runs", "delete", "nope-20260101-000000-abcd", workspace=ws.root)
    assert missing.code == 1 and missing.out == ""
    assert missing.err.strip() == f"behaviorlens: no run 'nope-20260101-000000-abcd' in workspace {ws.root}"
