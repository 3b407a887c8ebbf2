"""The analysis pages while their dataset's only run is training: the training and its progress, not "No trained run".

A tiny generated dataset (``syn``, 30 users) in the test's workspace. A run recorded running the way
``train_run`` records it (owner record, run row, then ``progress.json`` after each epoch) stands for a
training started elsewhere (its owner: the test's own process, alive); the demo run is a real
background process (``core.runs.background``, the tiny model and BERT), frozen with SIGSTOP while
the page is read, so that it is still training then, and resumed to finish, after which the page
fills in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from page_support import DATASET, charts, no_errors, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.runs import background as B
from core.runs.owner import claim
from core.runs.records import FAILED, INTERRUPTED, RUNNING, list_runs, run_record, set_run
from core.store.files import save_json
from core.store.run_folder import PROGRESS_FILE
from core.store.workspace import Workspace

PAGES = ("pages/explain.py", "pages/influence.py", "pages/fusion.py", "pages/export.py")
TRAIN_S = 300


@pytest.fixture()
def ws(tmp_path: Path, tiny_dataset) -> Iterator[Workspace]:
    """The test's workspace with the tiny dataset ``syn``; a background process left is killed afterwards."""
    workspace = tiny_dataset(tmp_path).ws
    yield workspace
    for run_id in list_runs(workspace)["run_id"] if len(list_runs(workspace)) else []:
        if (workspace.run_dir(run_id) / B.BACKGROUND_FILE).is_file():
            pid = B.pid_of(workspace, run_id)
            if B.process_alive(pid, run_id):
                os.killpg(pid, signal.SIGCONT)
                B.stop(workspace, run_id, signal.SIGKILL)


def tiny(encoder: Path) -> dict[str, Any]:
    return {"encoder": str(encoder), "device": "cpu", "model": dict(TINY_MODEL), "train": {"epochs": 1}}


def infos(at: AppTest) -> list[str]:
    return [unescape(i.value) for i in at.info]


def progress_texts(at: AppTest) -> list[str]:
    return [unescape(p.text) for p in at.get("progress")]


@pytest.mark.parametrize("page", PAGES)
def test_a_training_run_is_shown_instead_of_no_run(open_app, ws: Workspace, page: str) -> None:
    config = {"dataset": DATASET, "settings": {"train": {"epochs": 3}}}
    claim(ws.run_dir("syn-elsewhere"), "syn-elsewhere")  # as train_run records a run it starts
    set_run(ws, "syn-elsewhere", DATASET, RUNNING, config, None)
    save_json(ws.run_dir("syn-elsewhere") / PROGRESS_FILE, {"epoch": 1, "best_epoch": 1, "history": []})
    at = no_errors(open_app(ws.root, None, page))
    assert not any("No trained run" in i for i in infos(at))
    assert any(i.startswith("Training a model on dataset syn (run syn-elsewhere)…") for i in infos(at)), infos(at)
    assert any("This page fills in by itself when the training is done." in i for i in infos(at))
    assert progress_texts(at) == ["Epoch 1 of 3 done"]
    assert at.get("progress")[0].value == 33


@pytest.mark.parametrize("page", ("pages/train.py", *PAGES))
def test_runs_in_every_state_never_break_a_page(open_app, ws: Workspace, page: str) -> None:
    """Running, interrupted (killed, or never owned), failed: rows without metrics, never an exception."""
    config = {"dataset": DATASET, "settings": {"train": {"epochs": 3}}}
    ended = subprocess.Popen(["true"])
    ended.wait()
    claim(ws.run_dir("syn-killed"), "syn-killed", ended.pid)
    for run_id, status in (("syn-killed", RUNNING), ("syn-unowned", RUNNING), ("syn-failed", FAILED)):
        set_run(ws, run_id, DATASET, status, config, None)
        time.sleep(0.01)  # created_at orders the runs
    claim(ws.run_dir("syn-live"), "syn-live")
    set_run(ws, "syn-live", DATASET, RUNNING, config, None)
    at = no_errors(open_app(ws.root, None, page))
    if page == "pages/train.py":
        table = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
        assert dict(zip(table["run_id"], table["status"])) == {
            "syn-live": RUNNING,
            "syn-failed": FAILED,
            "syn-unowned": INTERRUPTED,
            "syn-killed": INTERRUPTED,
        }
    else:
        assert any(i.startswith("Training a model on dataset syn (run syn-live)…") for i in infos(at)), infos(at)


def test_without_any_run_the_page_still_says_so(open_app, ws: Workspace) -> None:
    at = no_errors(open_app(ws.root, None, "pages/explain.py"))
    assert any(i.startswith("No trained run of this dataset yet") for i in infos(at))
    assert not at.get("progress")


def test_the_explain_page_fills_in_when_the_demo_run_is_done(open_app, ws: Workspace, tiny_bert_dir: Path) -> None:
    launch = B.ensure_training(ws, DATASET, tiny(tiny_bert_dir))
    pid = B.pid_of(ws, launch.run_id)
    os.killpg(pid, signal.SIGSTOP)  # still training while the page is read, however fast the machine
    try:
        at = no_errors(open_app(ws.root, None, "pages/explain.py"))
        assert any(i.startswith(f"Training the demo model on dataset syn (run {launch.run_id})…") for i in infos(at))
        assert not any("No trained run" in i for i in infos(at))
        assert len(progress_texts(at)) == 1
    finally:
        os.killpg(pid, signal.SIGCONT)
    deadline = time.monotonic() + TRAIN_S
    while run_record(ws, launch.run_id)["status"] == RUNNING:
        assert time.monotonic() < deadline, f"the demo run still trains after {TRAIN_S}s"
        time.sleep(0.5)
    assert run_record(ws, launch.run_id)["status"] == "done"
    at.run()  # what the panel's fragment asks for once the run has ended
    no_errors(at)
    assert not any(i.startswith("Training") for i in infos(at)) and not at.get("progress")
    assert at.selectbox(key="explain_run").value == launch.run_id
    assert any(title.startswith("Event timeline") for title in charts(at))


def test_a_demo_run_whose_process_is_gone_is_reported(open_app, ws: Workspace, tiny_bert_dir: Path) -> None:
    launch = B.ensure_training(ws, DATASET, tiny(tiny_bert_dir))
    assert B.stop(ws, launch.run_id, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while B.process_alive(B.pid_of(ws, launch.run_id), launch.run_id):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    at = open_app(ws.root, None, "pages/fusion.py")
    assert not at.exception
    warnings = [unescape(w.value) for w in at.warning]
    assert any(
        w.startswith(f"The training of run {launch.run_id} stopped without finishing") and str(launch.log) in w
        for w in warnings
    ), warnings
    assert any("Resume it under Saved runs on the Train page" in w for w in warnings), warnings
