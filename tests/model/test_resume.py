"""An interrupted run resumes from its last saved epoch (training state in safetensors + JSON)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import NotFoundError
from core.runs.records import list_runs, run_record
from core.runs.run import open_run
from core.runs.train import resume_run, train_run
from core.store.run_folder import STATE_JSON, STATE_TENSORS

TINY = {
    "model": dict(TINY_MODEL),
    "train": {"batch_size": 16, "epochs": 3, "patience": 10},
}


@pytest.fixture()
def dataset(ws, tmp_path: Path, tiny_dataset) -> str:
    """The name of a generated dataset (40 users, 30 items) ingested into ``ws``."""
    return tiny_dataset(tmp_path, 3, n_users=40, n_items=30, target_events=1500, workspace=ws).name


def test_cancelled_run_resumes_from_its_last_epoch(ws, dataset: str) -> None:
    seen: list[int] = []

    def cancel_in_epoch_two() -> bool:
        return bool(seen) and seen[-1] >= 1

    def progress(event: dict) -> None:
        if event["event"] == "epoch":
            seen.append(event["epoch"])

    run_id = train_run(ws, dataset, TINY, progress=progress, cancel=cancel_in_epoch_two)
    folder = ws.run_dir(run_id)
    assert run_record(ws, run_id)["status"] == "cancelled"
    assert (folder / STATE_JSON).is_file() and (folder / STATE_TENSORS).is_file()
    assert seen == [1]

    resumed: list[int] = []
    resume_run(open_run(ws, run_id), progress=lambda e: resumed.append(e["epoch"]) if e["event"] == "epoch" else None)
    assert resumed == [2, 3]  # continues after epoch 1, not from scratch
    record = run_record(ws, run_id)
    assert record["status"] == "done"
    assert record["metrics"]["test"]["NDCG@10"] is not None
    assert not (folder / STATE_JSON).exists()  # a finished run keeps only its model
    assert list(list_runs(ws)["run_id"]) == [run_id]


def test_a_finished_run_has_nothing_to_resume(ws, dataset: str) -> None:
    run_id = train_run(ws, dataset, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    with pytest.raises(NotFoundError, match="no saved training state"):
        resume_run(open_run(ws, run_id))
