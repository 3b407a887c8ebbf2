"""A dataset stays what its runs were trained on: re-ingesting it under a run is refused, and a run whose
events changed behind its back refuses to evaluate, recommend or resume (core.store.versions)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import DatasetChangedError, DatasetInUseError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.runs import jobs as J
from core.runs.records import run_record
from core.runs.run import open_run
from core.runs.scores import evaluate_run, recommend_run
from core.store.workspace import Workspace

JOIN_S = 180


def metrics(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's test and valid metrics, evaluated now through a fresh handle."""
    result = evaluate_run(open_run(ws, run_id, "cpu"))
    return {"test": result["test"], "valid": result["valid"]}


def reingest(ws: Workspace, folder: Path, name: str = "syn") -> Any:
    return ingest(ws, folder / "events.csv", folder / "items.csv", IngestOptions(name=name))


def test_reingest_under_a_run_is_refused_and_the_run_is_unchanged(tmp_path, tiny_run, tiny_data, cli) -> None:
    run = tiny_run(tmp_path)
    before, n_events = metrics(run.ws, run.run_id), run.ws.dataset("syn").n_events
    other = tmp_path / "other"
    tiny_data(other, 6)
    with pytest.raises(DatasetInUseError, match=rf"dataset 'syn' has 1 run\(s\) trained on it: {run.run_id} \(done\)"):
        reingest(run.ws, other)
    res = cli("ingest", str(other / "events.csv"), "--name", "syn", workspace=run.root)
    assert res.code == 2 and "new name (such as syn-v2)" in res.err and "runs delete" in res.err
    assert run.ws.dataset("syn").n_events == n_events and metrics(run.ws, run.run_id) == before
    assert reingest(run.ws, tmp_path / "data").version == 2  # the same log again: no run can tell, so it passes
    assert reingest(run.ws, other, "syn-v2").version == 1  # the way out the message names
    assert metrics(run.ws, run.run_id) == before


def test_a_run_refuses_once_its_events_changed_behind_its_back(tmp_path, tiny_run, cli) -> None:
    run = tiny_run(tmp_path)
    before = metrics(run.ws, run.run_id)
    first = "(SELECT min(row) FROM events WHERE dataset = 'syn')"
    with run.ws.connect() as con:
        old = con.execute(f"SELECT timestamp FROM events WHERE dataset = 'syn' AND row = {first}").fetchone()[0]
        con.execute(f"UPDATE events SET timestamp = timestamp + INTERVAL 1 SECOND WHERE row = {first}")
    with pytest.raises(DatasetChangedError, match="dataset 'syn'.*still [0-9,]+ events, but not the same ones"):
        metrics(run.ws, run.run_id)
    with run.ws.connect() as con:  # put it back: the same rows again pass
        con.execute(f"UPDATE events SET timestamp = ? WHERE dataset = 'syn' AND row = {first}", [old])
    assert metrics(run.ws, run.run_id) == before
    with run.ws.connect() as con:
        con.execute(f"DELETE FROM events WHERE dataset = 'syn' AND row = {first}")
    with pytest.raises(DatasetChangedError, match=r"version 1 of dataset 'syn'.*1 fewer.*Train a new run"):
        recommend_run(open_run(run.ws, run.run_id, "cpu"), run.user)
    res = cli("evaluate", "--run", run.run_id, workspace=run.root)
    assert res.code == 2 and f"run {run.run_id} was trained on version 1 of dataset 'syn'" in res.err


def test_reingest_under_a_live_run(tmp_path, tiny_dataset, tiny_data, tiny_bert_dir) -> None:
    ws = tiny_dataset(tmp_path, 5).ws
    other = tmp_path / "other"
    tiny_data(other, 6)
    reached, release = threading.Event(), threading.Event()

    class PausedAtFirstStep(J.TrainingJob):
        def _on_progress(self, event: dict[str, Any]) -> None:
            super()._on_progress(event)
            if event["event"] == "step" and not reached.is_set():
                reached.set()
                release.wait(JOIN_S)

    settings = {
        "encoder": str(tiny_bert_dir),
        "device": "cpu",
        "model": dict(TINY_MODEL),
        "train": {"epochs": 1, "batch_size": 32, "threads": 1},
    }
    job = PausedAtFirstStep(str(ws.root), "syn", settings).run_in_thread()
    try:
        assert reached.wait(JOIN_S)
        with pytest.raises(DatasetInUseError, match=rf"{job.run_id} \(running\)"):
            reingest(ws, other)
    finally:
        release.set()
    assert job.join(JOIN_S) and job.snapshot()["status"] == "done"
    stored = run_record(ws, job.run_id)["metrics"]  # what training measured on the rows it started with
    assert metrics(ws, job.run_id) == {"test": stored["test"], "valid": stored["valid"]}
