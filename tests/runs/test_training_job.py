"""core.runs.jobs: train_run in a background thread, snapshots, cancel, failures, the registry.

A tiny generated dataset (40 users, 30 items) and a tiny model; the item side
uses a random 1-layer BERT built offline (fast), not the bundled MiniLM.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import DataError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.runs import jobs as J
from core.runs.records import list_runs, run_record
from core.store.workspace import Workspace

DATASET = "tiny"
JOIN_S = 180


@pytest.fixture()
def tiny_ws(ws: Workspace, training_data_dir: Path) -> Workspace:
    """The test's workspace with the training dataset ingested as DATASET."""
    ingest(ws, training_data_dir / "events.csv", training_data_dir / "items.csv", IngestOptions(name=DATASET))
    return ws


def tiny(encoder: Path, epochs: int = 2, **model: Any) -> dict[str, Any]:
    return {
        "encoder": str(encoder),
        "device": "cpu",
        "model": {**TINY_MODEL, **model},
        "train": {"epochs": epochs, "batch_size": 16, "seed": 1, "patience": 100},
    }


def finished(job: J.TrainingJob) -> dict[str, Any]:
    assert job.join(JOIN_S), f"job {job.run_id} still running after {JOIN_S}s"
    return job.snapshot()


def test_job_trains_in_the_background_and_lists_the_run(tiny_ws: Workspace, tiny_bert_dir: Path) -> None:
    job = J.start(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir, epochs=2))
    assert job.run_id.startswith(f"{DATASET}-")  # known before the thread has done anything
    assert J.get_job(job.run_id) is job
    snap = finished(job)
    assert snap["status"] == "done" and snap["phase"] == "done"
    assert snap["error"] is None and snap["crash"] is None
    assert snap["run_id"] == job.run_id and snap["dataset"] == DATASET
    assert snap["encode_total"] > 0 and snap["encode_done"] == snap["encode_total"]
    assert (snap["epoch"], snap["epochs"], snap["fraction"]) == (2, 2, 1.0)
    assert snap["steps"] >= 1 and snap["step"] == snap["steps"]
    assert [r["epoch"] for r in snap["history"]] == [1, 2]
    assert {"loss", "loss_engagement", "loss_rating", "valid_HR@10", "valid_NDCG@10"} <= set(snap["history"][0])
    assert isinstance(snap["loss"], float) and len(snap["step_losses"]) == 2 * snap["steps"]
    assert snap["step_losses"][-1][0] == pytest.approx(2.0)
    runs = list_runs(tiny_ws)
    row = runs[runs["run_id"] == job.run_id].iloc[0]
    assert row["status"] == "done" and row["dataset"] == DATASET and "test_NDCG@10" in runs
    snap["history"].clear()  # a snapshot is a copy
    assert len(job.snapshot()["history"]) == 2


def test_snapshot_while_training(tiny_ws: Workspace, tiny_bert_dir: Path) -> None:
    reached, release = threading.Event(), threading.Event()

    class PausedAtFirstStep(J.TrainingJob):
        def _on_progress(self, event: dict[str, Any]) -> None:
            super()._on_progress(event)
            if event["event"] == "step" and not reached.is_set():
                reached.set()
                release.wait(JOIN_S)

    job = PausedAtFirstStep(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir, epochs=2)).run_in_thread()
    try:
        assert reached.wait(JOIN_S)
        snap = job.snapshot()
        assert snap["status"] == "running" and snap["phase"] == "training" and job.is_running()
        assert (snap["epoch"], snap["step"]) == (1, 1) and 0 < snap["fraction"] < 0.5
        assert snap["history"] == [] and isinstance(snap["loss"], float)
        assert run_record(tiny_ws, job.run_id)["status"] == "running"
    finally:
        release.set()
    assert finished(job)["status"] == "done"


def test_cancel_stops_the_run_and_records_it_cancelled(tiny_ws: Workspace, tiny_bert_dir: Path) -> None:
    class CancelAfterFirstEpoch(J.TrainingJob):
        def _on_progress(self, event: dict[str, Any]) -> None:
            super()._on_progress(event)
            if event["event"] == "epoch":
                self.cancel()

    job = CancelAfterFirstEpoch(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir, epochs=50)).run_in_thread()
    snap = finished(job)
    assert snap["status"] == "cancelled" and snap["cancel_requested"]
    assert [r["epoch"] for r in snap["history"]] == [1] and snap["fraction"] < 0.1
    assert run_record(tiny_ws, job.run_id)["status"] == "cancelled"
    assert (tiny_ws.run_dir(job.run_id) / "model.safetensors").is_file()  # the best model so far


def test_cancel_before_the_first_step(tiny_ws: Workspace, tiny_bert_dir: Path) -> None:
    job = J.start(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir, epochs=50))
    job.cancel()
    snap = finished(job)
    assert snap["status"] == "cancelled" and snap["history"] == [] and snap["step_losses"] == []
    runs = list_runs(tiny_ws)
    assert runs.loc[runs["run_id"] == job.run_id, "status"].tolist() == ["cancelled"]


def test_bad_setting_is_reported_as_failed(tiny_ws: Workspace, tiny_bert_dir: Path) -> None:
    job = J.start(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir, d_model=15, n_heads=2))
    snap = finished(job)
    assert snap["status"] == "failed" and snap["crash"] is None
    assert snap["error"] == "d_model 15 must be a multiple of n_heads 2"
    assert run_record(tiny_ws, job.run_id)["status"] == "failed"


def test_missing_dataset_is_reported_as_failed(ws: Workspace, tiny_bert_dir: Path) -> None:
    snap = finished(J.start(str(ws.root), "nothere", tiny(tiny_bert_dir)))
    assert snap["status"] == "failed" and "nothere" in snap["error"]


def test_bad_dataset_name_is_refused_up_front(ws: Workspace, tiny_bert_dir: Path) -> None:
    with pytest.raises(DataError, match="invalid run name"):
        J.start(str(ws.root), "no such/name", tiny(tiny_bert_dir))


def test_unknown_setting_is_a_data_error(tiny_ws: Workspace, tiny_bert_dir: Path) -> None:
    snap = finished(J.start(str(tiny_ws.root), DATASET, {**tiny(tiny_bert_dir), "bogus": 1}))
    assert snap["status"] == "failed" and snap["crash"] is None
    assert "unknown setting(s) ['bogus']" in snap["error"]


def test_unexpected_exception_is_recorded_and_reraised(
    tiny_ws: Workspace, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.model.recommender import Recommender

    def broken_fit(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom in fit")

    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    monkeypatch.setattr(Recommender, "fit", broken_fit)
    job = J.start(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir))
    snap = finished(job)
    assert snap["status"] == "failed" and snap["error"] is None
    assert snap["crash"] == "RuntimeError: boom in fit"
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError)  # re-raised in the thread, not swallowed
    assert run_record(tiny_ws, job.run_id)["status"] == "failed"  # never left "running"


def test_registry_and_planned_epochs() -> None:
    assert J.get_job(None) is None and J.get_job("no-such-run") is None
    assert J.planned_epochs({"train": {"epochs": 3}}) == 3
    assert J.planned_epochs({}) == 40  # TrainConfig's default
    assert isinstance(J.cuda_available(), bool)


def test_registry_survives_a_reimport(tiny_ws: Workspace, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's file watcher evicts app modules from sys.modules; running jobs must stay findable."""
    import importlib
    import sys

    import core.runs

    job = J.start(str(tiny_ws.root), DATASET, tiny(tiny_bert_dir, epochs=1))
    monkeypatch.delitem(sys.modules, "core.runs.jobs")  # both restored after the test
    monkeypatch.setattr(core.runs, "jobs", J)
    fresh = importlib.import_module("core.runs.jobs")
    assert fresh is not J and fresh.get_job(job.run_id) is job
    assert finished(job)["status"] == "done"
