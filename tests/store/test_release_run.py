"""A run folder written by release 0.1 (before the package layout) still loads and scores the same.

``release_0_1_run/`` holds ``model.safetensors`` and ``config.json`` of a tiny run trained by that
release on the generated dataset below (30 users, 30 items, raw user IDs), and ``expected.json``:
its test metrics and one user's top-5 as that release computed them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.runs.records import DONE, set_run
from core.runs.run import open_run
from core.runs.scores import evaluate_run
from core.store.workspace import Workspace

FOLDER = Path(__file__).resolve().parent / "release_0_1_run"
RUN_ID = "release-0.1"


@pytest.fixture()
def workspace(tmp_path: Path, tiny_dataset) -> Workspace:
    """The release's dataset, ingested the same way, with its run folder copied in and registered."""
    ws = tiny_dataset(tmp_path, 5, n_users=30, n_items=30, target_events=900, keep_ids=True).ws
    shutil.copytree(FOLDER, ws.run_dir(RUN_ID), ignore=shutil.ignore_patterns("expected.json"))
    config = json.loads((FOLDER / "config.json").read_text())
    set_run(ws, RUN_ID, "syn", DONE, {"dataset": "syn", "settings": config["settings"]}, None)
    return ws


def test_a_release_0_1_run_loads_and_scores_as_it_did(workspace: Workspace) -> None:
    expected = json.loads((FOLDER / "expected.json").read_text())
    run = open_run(workspace, RUN_ID, "cpu")
    rec = run.recommender()
    assert rec.model_.memory is not None and rec.model_.cfg.use_request_time  # the release's defaults
    # that release asked held-out events at their own time; today's default asks at the stand-in time
    assert evaluate_run(run)["request_time"] == "standin"
    assert not run.protocol().exclude_seen  # so the earlier-seen-target rule cannot change its figures
    test = evaluate_run(run, request_time="actual")["test"]
    for key, value in expected["test"].items():
        assert test[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    top = rec.recommend(expected["user"], 5)
    assert top["item_id"].tolist() == expected["top_items"]
    assert top["engagement"].tolist() == pytest.approx(expected["top_engagement"], rel=1e-5)
    assert top["rating"].tolist() == pytest.approx(expected["top_rating"], rel=1e-5)
