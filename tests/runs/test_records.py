"""The runs table: a run without metrics yet (running, failed) lists and reads like any other."""

from __future__ import annotations

import pandas as pd

from core.runs.records import DONE, FAILED, RUNNING, list_runs, run_record, set_run, usable_runs


def test_runs_without_metrics_list_and_read(ws) -> None:
    set_run(ws, "d-1", "d", DONE, {"dataset": "d", "settings": {}}, {"test": {"HR@10": 0.5}, "protocol": "p"})
    set_run(ws, "d-2", "d", RUNNING, {"dataset": "d", "settings": {}}, None)
    set_run(ws, "e-1", "e", FAILED, {"dataset": "e", "settings": {}}, None)
    runs = list_runs(ws).set_index("run_id")
    assert set(runs.index) == {"d-1", "d-2", "e-1"}
    assert runs.loc["d-1", "test_HR@10"] == 0.5 and runs.loc["d-1", "protocol"] == "p"
    assert pd.isna(runs.loc["d-2", "protocol"])
    assert run_record(ws, "d-2")["metrics"] is None and run_record(ws, "d-1")["metrics"]["protocol"] == "p"
    assert usable_runs(ws) == ["d-1"] and usable_runs(ws, "e") == []


def test_a_status_change_keeps_the_creation_time(ws) -> None:
    set_run(ws, "d-1", "d", RUNNING, {"dataset": "d", "settings": {}}, None)
    created = run_record(ws, "d-1")
    first = list_runs(ws).set_index("run_id").loc["d-1", "created_at"]
    set_run(ws, "d-1", "d", DONE, {"dataset": "d", "settings": {}}, {"test": {}})
    runs = list_runs(ws).set_index("run_id")
    assert runs.loc["d-1", "status"] == DONE and runs.loc["d-1", "created_at"] == first
    assert run_record(ws, "d-1")["status"] == DONE != created["status"]
